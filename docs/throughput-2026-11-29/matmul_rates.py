"""GFLOP/s of torch's linear on 2 threads for the sweep's shapes (SmolLM2-135M: d_model 576,
MLP 1536, vocab 49,152) and a large square one. Run from the repository root:
    .venv/bin/python docs/throughput-2026-11-29/matmul_rates.py
"""
import torch, time
torch.set_num_threads(2)
print(torch.__config__.show()[:600])
for m,k,n in [(2048,2048,2048),(60,576,1536),(120,576,1536),(60,576,49152),(60,1536,576)]:
    a=torch.randn(m,k); w=torch.randn(n,k)
    torch.nn.functional.linear(a,w)
    reps=20 if m<1000 else 3
    t=time.perf_counter()
    for _ in range(reps): torch.nn.functional.linear(a,w)
    dt=(time.perf_counter()-t)/reps
    print(m,k,n, f"{2*m*k*n/dt/1e9:.1f} GFLOPS")
