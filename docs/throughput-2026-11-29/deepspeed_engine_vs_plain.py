"""One process, no Ray: a DeepSpeed engine (ZeRO-0, one rank over gloo, all-reduce off as in
train/loop.py) and a plain torch loop on two copies of SmolLM2-135M, alternating step by step on
the same 11 batches. `--profile` adds a cProfile of the engine's steps.
    .venv/bin/python docs/throughput-2026-11-29/deepspeed_engine_vs_plain.py"""
import os, time, sys, cProfile, pstats
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29533", RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
import torch, torch.distributed as dist
torch.set_num_threads(2)
dist.init_process_group("gloo", rank=0, world_size=1)
from selfexplain.models import load_model
from selfexplain.train.examples import answer_only_loss
from common import random_batches
from selfexplain.train.loop import adamw
from selfexplain.config import load_config
from selfexplain.train.deepspeed_config import deepspeed_config
import deepspeed
batches = random_batches(12)
def tok(b): return int(b["attention_mask"].sum())
cfg = load_config("tiny", ["target=smollm2-135m", "train.zero_stage=0", "train.batch_size=8"])
print("zero", cfg.train.zero, "clip", cfg.train.gradient_clipping)
m1, _ = load_model("smollm2-135m"); m1.train()
opt1 = adamw(m1.parameters(), 1e-5)
m2, _ = load_model("smollm2-135m"); m2.train()
opt2 = adamw(m2.parameters(), 1e-5, cfg.train.weight_decay)
sched = torch.optim.lr_scheduler.LambdaLR(opt2, lambda s: 1.0)
engine, _, _, _ = deepspeed.initialize(model=m2, optimizer=opt2, lr_scheduler=sched, config=deepspeed_config(cfg.train, False), dist_init_required=False)
engine.enable_backward_allreduce = False
def plain(b):
    loss = answer_only_loss(m1, b); loss.backward()
    torch.nn.utils.clip_grad_norm_(m1.parameters(), cfg.train.gradient_clipping)
    opt1.step(); opt1.zero_grad(); return loss.item()
def ds(b):
    loss = answer_only_loss(engine, b); engine.backward(loss); engine.step(); return loss.item()
plain(batches[0]); ds(batches[0])
tp = td = 0.0
for b in batches[1:]:
    t = time.perf_counter(); plain(b); tp += time.perf_counter() - t
    t = time.perf_counter(); ds(b); td += time.perf_counter() - t
print(f"plain {tp:.2f}s  ds {td:.2f}s  overhead {td/tp-1:+.1%}")
if "--profile" in sys.argv:
    pr = cProfile.Profile(); pr.enable()
    for b in batches[1:6]: ds(b)
    pr.disable(); pstats.Stats(pr).sort_stats("tottime").print_stats(25)
