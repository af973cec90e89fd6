"""Put every thread of the local Ray cluster's other processes under SCHED_BATCH (no wakeup
preemption), to see whether the compute threads' preemptions are what costs. Used by
ray_worker_vs_plain.py when given `batch` (after `piw`):
    PYTHONPATH=docs/throughput-2026-11-29 .venv/bin/python docs/throughput-2026-11-29/ray_worker_vs_plain.py /tmp/rvp piw batch
"""
import os
from pathlib import Path


def batch_ray_processes(policy: int = os.SCHED_BATCH) -> int:
    own, count = os.getpid(), 0
    for process in Path("/proc").iterdir():
        if not process.name.isdigit() or int(process.name) == own:
            continue
        try:
            if b"ray" not in (process / "cmdline").read_bytes():
                continue
            for thread in (process / "task").iterdir():
                os.sched_setscheduler(int(thread.name), policy, os.sched_param(0))
                count += 1
        except OSError:  # a process or thread that ended meanwhile
            continue
    return count
