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


def switch_intervals_in_worker(cfg):
    """The plain loop in a Ray Train worker at Python's switch interval of 5 ms and of 200 ms,
    alternating, after listing the worker's Python threads: is the GIL what slows it?"""
    import sys
    import threading

    import ray.train, torch
    from selfexplain.models import load_model
    from selfexplain.train.loop import adamw
    from selfexplain.train.order import load_examples
    torch.set_num_threads(2)
    ex = load_examples(ray.train.get_dataset_shard("train"))
    print("THREADS", [t.name for t in threading.enumerate()], flush=True)
    c = cfg["loop"].run
    model, tok = load_model(c.target); model.train(); opt = adamw(model.parameters(), 1e-5)
    for rnd, interval in enumerate([0.005, 0.2, 0.005, 0.2]):
        sys.setswitchinterval(interval)
        print(f"STEPSTATS plain-in-worker {rnd} switch {interval} {plain_epoch(model, opt, ex, c.seed, tok.pad_token_id)}",
              flush=True)
    raise SystemExit(0)
