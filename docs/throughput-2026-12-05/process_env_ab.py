"""The plain torch loop (SmolLM2-135M, 2 threads, random batches of 8 x 40-80 tokens) in fresh
processes that differ in one thing a Ray worker differs in from the driver, alternating:
  base     this process's environment
  omp1     OMP_NUM_THREADS=1 at start (Ray sets it for a 1-CPU worker), torch.set_num_threads(2) after
  nice15   os.nice(15) before training (a Ray worker's priority)
  thread   the loop in a non-main thread (Ray Train runs the train function in one)
Run from the repository root:
    .venv/bin/python docs/throughput-2026-12-05/process_env_ab.py base,omp1,nice15,thread 2"""
import os, subprocess, sys, threading

here = os.path.dirname(os.path.abspath(__file__))
if len(sys.argv) > 3:  # a child: one measurement
    variant = sys.argv[1]
    if variant == "nice15":
        os.nice(15)
    sys.path.insert(0, os.path.join(here, "..", "throughput-2026-11-29"))
    import time, torch
    from common import random_batches
    from selfexplain.models import load_model
    from selfexplain.train.examples import answer_only_loss
    from selfexplain.train.loop import adamw
    torch.set_num_threads(2)
    model, _ = load_model("smollm2-135m"); model.train()
    optimizer = adamw(model.parameters(), 1e-5)
    batches = random_batches(12)
    result = {}
    def loop():
        tokens, start = 0, None
        for index, batch in enumerate(batches):
            loss = answer_only_loss(model, batch); loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step(); optimizer.zero_grad(); loss.item()
            if index == 0:
                start = time.perf_counter()
            else:
                tokens += int(batch["attention_mask"].sum())
        result["tok/s"] = tokens / (time.perf_counter() - start)
    if variant == "thread":
        worker = threading.Thread(target=loop); worker.start(); worker.join()
    else:
        loop()
    print(f"RESULT {variant} {result['tok/s']:.1f}", flush=True)
    sys.exit()
variants, rounds = sys.argv[1].split(","), int(sys.argv[2])
results = {v: [] for v in variants}
for _ in range(rounds):
    for variant in variants:
        env = dict(os.environ, **({"OMP_NUM_THREADS": "1"} if variant == "omp1" else {}))
        out = subprocess.run([sys.executable, __file__, variant, "x", "child"], env=env, capture_output=True, text=True)
        line = [l for l in out.stdout.splitlines() if l.startswith("RESULT")]
        results[variant].append(float(line[0].split()[2]) if line else float("nan"))
        print(line or out.stderr[-2000:], flush=True)
for variant, values in results.items():
    print(f"{variant:8s} " + " ".join(f"{v:.1f}" for v in values))
