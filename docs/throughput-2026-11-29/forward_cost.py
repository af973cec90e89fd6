"""What one SmolLM2-135M forward costs on 2 threads by batch rows and tokens: the fixed part
(reading every weight) and the part per row-token; the patching sweep's PASS_COST_ROW_TOKENS.
Run from the repository root:
    .venv/bin/python docs/throughput-2026-11-29/forward_cost.py
"""
import time, torch
from selfexplain.models import load_model
torch.set_num_threads(2)
model, tok = load_model("smollm2-135m")
@torch.no_grad()
def t(rows, toks, reps=5):
    ids = torch.randint(100, 1000, (rows, toks))
    model(input_ids=ids, logits_to_keep=1)
    best = 9
    for _ in range(reps):
        s = time.perf_counter(); model(input_ids=ids, logits_to_keep=1); best = min(best, time.perf_counter() - s)
    return best
for rows, toks in [(1,1),(1,5),(1,20),(8,2),(15,2),(30,1),(30,2),(30,3),(60,2),(60,3),(120,2)]:
    print(rows, toks, f"{t(rows,toks)*1000:.1f} ms")
