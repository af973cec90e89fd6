"""The patching sweep with and without merged positions, per pair, alternating (the bench's
3 pairs, sites after the shared prefix; the first column without the clean run, the second with
it). Run from the repository root:
    .venv/bin/python docs/throughput-2026-11-29/patching_merge_ab.py
"""
import sys, time, torch
sys.path.insert(0, "tests/bench")
from selfexplain.models import load_model
from selfexplain.models.patching import capture_component, sweep, clean_run
from test_bench_patching import PAIRS, naive_sweep
torch.set_num_threads(2)
model, tok = load_model("smollm2-135m")
layers = list(range(model.config.num_hidden_layers))
cases = []
for p, c in PAIRS + [("The mother tongue of Danielle Darrieux is", "The mother tongue of Barack Obama is")]:
    ids = torch.tensor(tok(p).input_ids); cf = torch.tensor(tok(c).input_ids)
    if len(ids) != len(cf): print("skip", p); continue
    first = int((ids != cf).nonzero()[0, 0])
    cases.append((ids, capture_component(model, cf, layers), list(range(first, len(ids)))))
    print(len(ids), first)
def run(merge, with_clean=True):
    for ids, s, pos in cases:
        cl = None if with_clean else clean_run(model, ids)
        t = time.perf_counter()
        torch.no_grad()(sweep)(model, ids, [s[l] for l in layers], [[l] for l in layers], pos, "residual",
              from_their_layer=True, skip_noops=True, merge_positions=merge, clean=cl)
        yield time.perf_counter() - t
for ids, s, pos in cases:
    a = torch.no_grad()(sweep)(model, ids, [s[l] for l in layers], [[l] for l in layers], pos, "residual", from_their_layer=True, skip_noops=True, merge_positions=True)
    b = naive_sweep(model, ids, s, pos)
    print("diff", float((a-b).abs().max()))
list(run(True)); list(run(False))
for r in range(3):
    for merge in (True, False):
        print(merge, [round(x, 3) for x in run(merge, with_clean=False)], [round(x, 3) for x in run(merge, with_clean=True)])
