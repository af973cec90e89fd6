"""A Ray Train loop function that runs the plain torch loop (no DeepSpeed) twice, at the worker's
priority and then at nice 0; used by ray_worker_vs_plain.py."""
import os

from common import plain_epoch


def plain_in_worker(cfg):
    import ray.train, torch
    from selfexplain.models import load_model
    from selfexplain.train.loop import adamw
    from selfexplain.train.order import load_examples
    torch.set_num_threads(2)
    ex = load_examples(ray.train.get_dataset_shard("train"))
    c = cfg["loop"].run
    model, tok = load_model(c.target); model.train(); opt = adamw(model.parameters(), 1e-5)
    for rnd in range(2):
        stats = plain_epoch(model, opt, ex, c.seed, tok.pad_token_id)
        print(f"STEPSTATS plain-in-worker round {rnd} nice {os.getpriority(os.PRIO_PROCESS, 0)} {stats}", flush=True)
        os.setpriority(os.PRIO_PROCESS, 0, 0)
    raise SystemExit(0)
