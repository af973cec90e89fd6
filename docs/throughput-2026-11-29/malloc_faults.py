"""The plain loop's page faults per step, and whether glibc malloc settings that keep freed
memory in the heap (so a step's activations reuse pages instead of faulting fresh ones in)
make it faster. Run from the repository root, alternating:
    PYTHONPATH=docs/throughput-2026-11-29 .venv/bin/python docs/throughput-2026-11-29/malloc_faults.py default
    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=536870912 \
        PYTHONPATH=docs/throughput-2026-11-29 .venv/bin/python docs/throughput-2026-11-29/malloc_faults.py tuned
"""
import sys, time, resource, torch
from common import random_batches
from selfexplain.models import load_model
from selfexplain.train.examples import answer_only_loss
from selfexplain.train.loop import adamw
torch.set_num_threads(2)
model, tok = load_model("smollm2-135m"); model.train(); opt = adamw(model.parameters(), 1e-5)
batches = random_batches(14)
def step(b):
    loss = answer_only_loss(model, b); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); opt.zero_grad(); loss.item()
step(batches[0]); step(batches[1])
r0 = resource.getrusage(resource.RUSAGE_SELF); t = time.perf_counter(); c = time.process_time()
for b in batches[2:]: step(b)
r1 = resource.getrusage(resource.RUSAGE_SELF); wall = time.perf_counter() - t
toks = sum(int(b["attention_mask"].sum()) for b in batches[2:])
print(f"{sys.argv[1]:<8} tok/s {toks / wall:6.1f}  cpu/wall {(time.process_time() - c) / wall:.2f}  minflt/step {(r1.ru_minflt - r0.ru_minflt) / 12:.0f}  sys s {r1.ru_stime - r0.ru_stime:.1f}", flush=True)
