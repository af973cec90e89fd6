"""When a training run's workers finish against when `fit()` returns (Ray Train's controller
polls every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S). Needs a finished `selfexplain run tiny
output_dir=/tmp/tiny2`. Run from the repository root, with the variable set or not:
    RAY_TRAIN_HEALTH_CHECK_INTERVAL_S=2 .venv/bin/python docs/throughput-2026-11-29/train_end_timing.py"""
import time, shutil
from selfexplain.config import RayConfig, load_config
from selfexplain.jobs.ray_session import ray_session
import selfexplain.train.trainer as tr
from selfexplain.train.loop import train_loop_per_worker

def timed_loop(cfg):
    import time, ray.train
    t = time.time(); print(f"WORKER start {t:.2f}", flush=True)
    orig_report = ray.train.report
    def report(*a, **k):
        t1 = time.time(); orig_report(*a, **k); print(f"WORKER report {t1:.2f} -> {time.time():.2f}", flush=True)
    ray.train.report = report
    train_loop_per_worker(cfg)
    print(f"WORKER end {time.time():.2f}", flush=True)

c = load_config("tiny", ["output_dir=/tmp/tiny2"])
for leftover in ("ray_train", "explainer", "train_metrics.json"):
    p = c.run_dir.local_path / leftover
    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
with ray_session(RayConfig(num_cpus=4)):
    import ray.train.torch
    orig_fit = ray.train.torch.TorchTrainer.fit
    def fit(self):
        t = time.time(); print(f"DRIVER fit start {t:.2f}", flush=True); r = orig_fit(self); print(f"DRIVER fit end {time.time():.2f}", flush=True); return r
    ray.train.torch.TorchTrainer.fit = fit
    t0 = time.time(); print(f"DRIVER train start {t0:.2f}", flush=True)
    tr.train(c, loop=timed_loop)
    print(f"DRIVER train end {time.time():.2f}", flush=True)
