"""A Ray Train loop function that runs the plain torch loop (no DeepSpeed) twice, at the worker's
priority and then at nice 0; used by ray_worker_vs_plain.py."""
import time, os
def plain_in_worker(cfg):
    import ray.train, torch
    from selfexplain.models import load_model
    from selfexplain.train.examples import answer_only_loss
    from selfexplain.train.loop import adamw, epoch_micro_batches, micro_batch_inputs
    from selfexplain.train.order import load_examples
    torch.set_num_threads(2)
    ex = load_examples(ray.train.get_dataset_shard("train"))
    c = cfg["loop"].run
    model, tok = load_model(c.target); model.train(); opt = adamw(model.parameters(), 1e-5)
    for rnd in range(2):
        stats = []
        for picked in epoch_micro_batches(ex, c.seed, 0, 8):
            w, cp = time.perf_counter(), time.process_time()
            b = micro_batch_inputs(ex, picked, c.seed, 0, tok.pad_token_id)
            loss = answer_only_loss(model, b); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); opt.zero_grad(); loss.item()
            stats.append((time.perf_counter() - w, time.process_time() - cp, int(b["attention_mask"].sum())))
        s = stats[1:]
        W = sum(x[0] for x in s); C = sum(x[1] for x in s); T = sum(x[2] for x in s)
        print(f"STEPSTATS plain-in-worker round {rnd} nice {os.getpriority(os.PRIO_PROCESS, 0)} steps {len(s)} wall {W:.1f} cpu {C:.1f} cpu/wall {C/W:.2f} tok/s {T/W:.1f}", flush=True)
        os.setpriority(os.PRIO_PROCESS, 0, 0)
    raise SystemExit(0)
