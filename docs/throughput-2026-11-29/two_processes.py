"""Two 1-thread processes at once against one alone: a cache-resident matmul (`compute`) and a
256 MB weight read (`memory`). Run from the repository root:
    for k in compute memory; do .venv/bin/python docs/throughput-2026-11-29/two_processes.py $k;
      (.venv/bin/python docs/throughput-2026-11-29/two_processes.py $k & .venv/bin/python docs/throughput-2026-11-29/two_processes.py $k; wait); done
"""
import torch, time, sys
torch.set_num_threads(1)
kind = sys.argv[1]
if kind == "compute":
    a = torch.randn(256, 256); f = lambda: a @ a
else:
    w = torch.randn(4096, 16384); x = torch.randn(1, 16384); f = lambda: torch.nn.functional.linear(x, w)  # 256 MB, bandwidth bound
f(); n = 0; t = time.perf_counter()
while time.perf_counter() - t < 6: f(); n += 1
print(kind, round(n / (time.perf_counter() - t), 1), "/s")
