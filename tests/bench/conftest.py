"""Benchmarks: run with `make bench` (not part of `make test`). Each prints a ratio against a
baseline measured in the same process, on the same inputs; none asserts a wall time."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
