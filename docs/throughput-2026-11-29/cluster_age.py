"""Does a Ray Train run right after the local cluster starts pay for the cluster's start-up
activity? The plain loop, then one-worker ZeRO-0 runs in a fresh cluster and in one 60 s old,
twice. Run from the repository root:
    PYTHONPATH=tests/bench .venv/bin/python docs/throughput-2026-11-29/cluster_age.py /tmp/age
Prints RESULT lines (tok/s, and the overhead against the plain loop)."""
import sys, time
from test_bench_train_overhead import plain_torch_tokens_per_second, BATCH
import shutil
from selfexplain.config import load_config, RayConfig
from selfexplain.jobs.generate import generate
from selfexplain.jobs.ray_session import ray_session
from selfexplain.train.mixture import corpus_sources
from selfexplain.train.order import load_examples
from selfexplain.train.trainer import as_dataset, encoded_examples, examples_with_role, train
out = sys.argv[1]
base = ["target=smollm2-135m", f"output_dir={out}", "generate.max_items=40", "generate.num_actors=1",
        "generate.held_out_fraction=0.1", f"train.batch_size={BATCH}", "train.epochs=1", "train.torch_threads=2"]
z = load_config("tiny", [*base, "name=zero0", "train.num_workers=1", "train.zero_stage=0"])
with ray_session(RayConfig(num_cpus=4)):
    generate(z)
    ex = load_examples(as_dataset(examples_with_role(encoded_examples(z, corpus_sources(z), z.target), "train")))
def ray_run(wait):
    for leftover in ("ray_train", "explainer", "train_metrics.json"):
        p = z.run_dir.local_path / leftover
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    with ray_session(RayConfig(num_cpus=4)):
        time.sleep(wait)
        generate(z); train(z)
    return (z.run_dir / "train_metrics.json").read_json()["tokens_per_second"]
for r in range(2):
    p = plain_torch_tokens_per_second(z, ex); a = ray_run(0); b = ray_run(60)
    print(f"RESULT round {r}: plain {p:.1f}  ray-fresh {a:.1f} ({p/a-1:+.0%})  ray-after-60s {b:.1f} ({p/b-1:+.0%})", flush=True)
