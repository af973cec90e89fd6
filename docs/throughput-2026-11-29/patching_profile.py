"""Where the patching sweep spends its time on the sites after the shared prefix (torch profiler,
clean runs precomputed). Run from the repository root:
    PYTHONPATH=docs/throughput-2026-11-29:tests/bench .venv/bin/python docs/throughput-2026-11-29/patching_profile.py
"""
from torch.profiler import profile

from common import patching_cases, sweep_after_prefix
from selfexplain.models.patching import clean_run

model, layers, cases = patching_cases()
cleans = [clean_run(model, ids) for ids, *_ in cases]


def run():
    for (ids, sources, positions), clean in zip(cases, cleans):
        sweep_after_prefix(model, layers, ids, sources, positions, clean=clean)


run()
with profile() as prof:
    run()
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))
