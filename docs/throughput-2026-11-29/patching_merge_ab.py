"""The patching sweep with and without merged positions, per pair, alternating (the bench's
3 pairs, sites after the shared prefix; the first list without the clean run, the second with
it). Run from the repository root:
    PYTHONPATH=docs/throughput-2026-11-29:tests/bench .venv/bin/python docs/throughput-2026-11-29/patching_merge_ab.py
"""
import time

from common import patching_cases, sweep_after_prefix
from selfexplain.models.patching import clean_run
from test_bench_patching import naive_sweep

model, layers, cases = patching_cases()


def run(merge, with_clean=True):
    for ids, sources, positions in cases:
        clean = None if with_clean else clean_run(model, ids)
        started = time.perf_counter()
        sweep_after_prefix(model, layers, ids, sources, positions, merge_positions=merge, clean=clean)
        yield time.perf_counter() - started


for ids, sources, positions in cases:
    swept = sweep_after_prefix(model, layers, ids, sources, positions)
    print("max |logit diff| vs the per-site loop", float((swept - naive_sweep(model, ids, sources, positions)).abs().max()))
list(run(True)); list(run(False))
for _ in range(3):
    for merge in (True, False):
        print("merged" if merge else "per position", [round(t, 3) for t in run(merge, with_clean=False)],
              [round(t, 3) for t in run(merge, with_clean=True)])
