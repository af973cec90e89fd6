"""The plain torch loop run inside a Ray Train worker (`piw`), then in this process with Ray shut
down, on the same micro-batches. Run from the repository root:
    PYTHONPATH=docs/throughput-2026-11-29 .venv/bin/python docs/throughput-2026-11-29/ray_worker_vs_plain.py /tmp/rvp piw
Prints STEPSTATS lines: wall and CPU seconds of 21 steps and tokens/s (the first step left out)."""
import sys, time, shutil
from selfexplain.config import RayConfig, load_config
from selfexplain.jobs.ray_session import ray_session
from selfexplain.jobs.generate import generate
import selfexplain.train.trainer as tr
from selfexplain.train.mixture import corpus_sources
from selfexplain.train.order import load_examples
from plain_loop_in_worker import plain_in_worker

out = sys.argv[1]
base = ["target=smollm2-135m", f"output_dir={out}", "generate.max_items=40", "generate.num_actors=1",
        "generate.held_out_fraction=0.1", "train.batch_size=8", "train.epochs=1", "train.torch_threads=2", "name=zero0", "train.num_workers=1", "train.zero_stage=0"]
c = load_config("tiny", base)
for leftover in ("ray_train", "explainer"): shutil.rmtree(c.run_dir.local_path / leftover, ignore_errors=True)
with ray_session(RayConfig(num_cpus=4)):
    generate(c)
    ex = load_examples(tr.examples_with_role(tr.encoded_examples(c, corpus_sources(c), c.target), "train"))
    if "piw" in sys.argv:
        try: tr.train(c, loop=plain_in_worker)
        except Exception as e: print("ended", type(e))
import torch
from selfexplain.models import load_model
from selfexplain.train.examples import answer_only_loss
from selfexplain.train.loop import adamw, epoch_micro_batches, micro_batch_inputs
torch.set_num_threads(2)
model, tok = load_model(c.target); model.train(); opt = adamw(model.parameters(), 1e-5)
stats = []
for picked in epoch_micro_batches(ex, c.seed, 0, 8):
    w, cp = time.perf_counter(), time.process_time()
    b = micro_batch_inputs(ex, picked, c.seed, 0, tok.pad_token_id)
    loss = answer_only_loss(model, b); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); opt.zero_grad(); loss.item()
    stats.append((time.perf_counter() - w, time.process_time() - cp, int(b["attention_mask"].sum())))
s = stats[1:]
W = sum(x[0] for x in s); C = sum(x[1] for x in s); T = sum(x[2] for x in s)
print(f"STEPSTATS plain steps {len(s)} wall {W:.1f} cpu {C:.1f} cpu/wall {C/W:.2f} tok/s {T/W:.1f}", flush=True)
