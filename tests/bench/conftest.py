"""Benchmarks: run with `make bench` (not part of `make test`). Each prints a ratio against a
baseline measured in the same process, on the same inputs; none asserts a wall time."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# as the CLI does: no "Loading weights" or "Writing model shards" bar from every model load and
# export in the printed results (the Ray workers inherit it)
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
