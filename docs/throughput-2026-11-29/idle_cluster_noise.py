"""Eight plain training steps of SmolLM2-135M in this process: with no Ray cluster, beside an idle
local cluster as selfexplain starts it, and beside a lean one (no dashboard, no prestarted
workers); three rounds, interleaved.
    .venv/bin/python docs/throughput-2026-11-29/idle_cluster_noise.py"""
import os, time, torch, ray
from selfexplain.config import RayConfig
from selfexplain.jobs import ray_session as rs
from selfexplain.models import load_model
from selfexplain.train.examples import answer_only_loss
from common import random_batches
from selfexplain.train.loop import adamw
torch.set_num_threads(2)
batches = random_batches(8)
m, _ = load_model("smollm2-135m"); m.train(); opt = adamw(m.parameters(), 1e-5)
def steps():
    t = time.perf_counter()
    for b in batches:
        loss = answer_only_loss(m, b); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step(); opt.zero_grad()
    return time.perf_counter() - t
steps()
orig = ray.init
def lean_init(*a, **k):
    k["include_dashboard"] = False; k.pop("dashboard_host", None)
    k["_system_config"] = {"enable_worker_prestart": False, "prestart_worker_first_driver": False}
    return orig(*a, **k)
res = {"none": [], "default": [], "lean": []}
for r in range(3):
    for mode in ("none", "default", "lean"):
        if mode == "none":
            res[mode].append(steps()); continue
        rs.ray.init = lean_init if mode == "lean" else orig
        with rs.ray_session(RayConfig(num_cpus=4)):
            time.sleep(4)
            if mode == "lean": print("idle workers lean:", sum(1 for p in os.popen("pgrep -f ray::IDLE").read().split()), flush=True)
            res[mode].append(steps())
    print({k: [round(x, 1) for x in v] for k, v in res.items()}, flush=True)
base = sum(res["none"])
for k, v in res.items(): print(f"RESULT {k}: {sum(v):.1f}s  vs none {sum(v)/base - 1:+.1%}")
