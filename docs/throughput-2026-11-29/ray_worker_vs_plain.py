"""The plain torch loop run inside a Ray Train worker (`piw`), then in this process with Ray shut
down, on the same micro-batches. Run from the repository root:
    PYTHONPATH=docs/throughput-2026-11-29 .venv/bin/python docs/throughput-2026-11-29/ray_worker_vs_plain.py /tmp/rvp piw
Prints STEPSTATS lines: wall and CPU seconds of 21 steps and tokens/s (the first step left out),
page faults and context switches per step. With `batch` as well, the cluster's other processes
run under SCHED_BATCH (sched_batch.py); with `switch`, the worker alternates Python's switch
interval (plain_loop_in_worker.switch_intervals_in_worker)."""
import sys, shutil
from selfexplain.config import RayConfig, load_config
from selfexplain.jobs.ray_session import ray_session
from selfexplain.jobs.generate import generate
import selfexplain.train.trainer as tr
from selfexplain.train.mixture import corpus_sources
from selfexplain.train.order import load_examples
from plain_loop_in_worker import plain_in_worker, switch_intervals_in_worker

out = sys.argv[1]
base = ["target=smollm2-135m", f"output_dir={out}", "generate.max_items=40", "generate.num_actors=1",
        "generate.held_out_fraction=0.1", "train.batch_size=8", "train.epochs=1", "train.torch_threads=2", "name=zero0", "train.num_workers=1", "train.zero_stage=0"]
c = load_config("tiny", base)
for leftover in ("ray_train", "explainer"): shutil.rmtree(c.run_dir.local_path / leftover, ignore_errors=True)
with ray_session(RayConfig(num_cpus=4)):
    generate(c)
    if "batch" in sys.argv:
        from sched_batch import batch_ray_processes
        print(f"SCHED_BATCH on {batch_ray_processes()} threads", flush=True)
    ex = load_examples(tr.as_dataset(tr.examples_with_role(tr.encoded_examples(c, corpus_sources(c), c.target), "train")))
    if "piw" in sys.argv:
        try: tr.train(c, loop=switch_intervals_in_worker if "switch" in sys.argv else plain_in_worker)
        except Exception as e: print("ended", type(e))
import torch
from selfexplain.models import load_model
from selfexplain.train.loop import adamw
from common import plain_epoch
torch.set_num_threads(2)
model, tok = load_model(c.target); model.train(); opt = adamw(model.parameters(), 1e-5)
print(f"STEPSTATS plain {plain_epoch(model, opt, ex, c.seed, tok.pad_token_id)}", flush=True)
