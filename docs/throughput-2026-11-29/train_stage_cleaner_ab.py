"""The tiny run's train stage with and without Ray Train's placement-group cleaner, alternating,
each in a fresh process and a fresh local cluster (the corpus generated once, then kept):
    .venv/bin/python docs/throughput-2026-11-29/train_stage_cleaner_ab.py /tmp/tiny_ab 3"""
import shutil
import subprocess
import sys
import time

out, rounds = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3
if len(sys.argv) > 3:  # one train stage, in a child process
    import selfexplain.train.trainer as trainer_module
    from selfexplain.config import load_config
    from selfexplain.pipeline import run_generate, run_train

    config = load_config("tiny", [f"output_dir={out}"])
    run_generate(config)
    for leftover in ("ray_train", "explainer", "train_metrics.json"):
        path = config.run_dir.local_path / leftover
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    if sys.argv[3] == "cleaner":  # Ray Train's own trainer, as before stop 26
        trainer_module.started_local_cluster = lambda: False
    start = time.perf_counter()
    run_train(config)
    print(f"RESULT {sys.argv[3]} {time.perf_counter() - start:.1f}", flush=True)
    sys.exit()
for _ in range(rounds):
    for variant in ("cleaner", "no-cleaner"):
        run = subprocess.run([sys.executable, __file__, out, "1", variant], capture_output=True, text=True)
        print(*[line for line in run.stdout.splitlines() if line.startswith("RESULT")], flush=True)
