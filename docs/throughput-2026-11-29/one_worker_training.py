"""One Ray Train + DeepSpeed ZeRO-0 run on one worker, the training-overhead bench's settings
(SmolLM2-135M, 40 ablation items, global batch 8, one epoch), from scratch on a kept corpus;
prints train_metrics.json. Extra arguments are config overrides. Run from the repository root:
    .venv/bin/python docs/throughput-2026-11-29/one_worker_training.py /tmp/rvp"""
import sys, shutil, time
from selfexplain.config import RayConfig, load_config
from selfexplain.jobs.ray_session import ray_session
from selfexplain.jobs.generate import generate
from selfexplain.train.trainer import train
out = sys.argv[1]
base = ["target=smollm2-135m", f"output_dir={out}", "generate.max_items=40", "generate.num_actors=1",
        "generate.held_out_fraction=0.1", "train.batch_size=8", "train.epochs=1", "train.torch_threads=2", "name=zero0", "train.num_workers=1", "train.zero_stage=0"] + sys.argv[2:]
c = load_config("tiny", base)
for leftover in ("ray_train", "explainer", "train_metrics.json"):
    p = c.run_dir.local_path / leftover
    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
with ray_session(RayConfig(num_cpus=4)):
    generate(c)
    print("TRAIN START", time.time(), flush=True)
    train(c)
print((c.run_dir / "train_metrics.json").read_json())
