"""Where the patching sweep spends its time on the sites after the shared prefix (torch profiler,
clean runs precomputed). Run from the repository root:
    .venv/bin/python docs/throughput-2026-11-29/patching_profile.py
"""
import sys, torch
sys.path.insert(0, "tests/bench")
from selfexplain.models import load_model
from selfexplain.models.patching import capture_component, sweep, clean_run
from test_bench_patching import PAIRS
torch.set_num_threads(2)
model, tok = load_model("smollm2-135m")
layers = list(range(model.config.num_hidden_layers))
cases = []
for p, c in PAIRS:
    ids = torch.tensor(tok(p).input_ids); cf = torch.tensor(tok(c).input_ids)
    first = int((ids != cf).nonzero()[0, 0])
    cases.append((ids, capture_component(model, cf, layers), list(range(first, len(ids))), clean_run(model, ids)))
def run():
    for ids, s, pos, cl in cases:
        torch.no_grad()(sweep)(model, ids, [s[l] for l in layers], [[l] for l in layers], pos, "residual",
              from_their_layer=True, skip_noops=True, clean=cl)
run()
from torch.profiler import profile
with profile() as prof: run()
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))
