"""Does the driver's own history slow the one-worker Ray run? The overhead bench runs the plain
loop in its own (pytest) process, then a Ray Train run from it; quiet_cluster_ab.py runs Ray from
a fresh process. Variants, each in a fresh process, alternating, with 20 s of steady training
sampled from /proc (quiet_cluster_ab.py's sampler):
  fresh       the Ray run only
  afterplain  the bench's plain loop first (2 threads), then the Ray run, in the same process
Run from the repository root:
    .venv/bin/python docs/throughput-2026-12-05/driver_state_ab.py /tmp/driver_ab fresh,afterplain 2"""
import os, subprocess, sys

here = os.path.dirname(os.path.abspath(__file__))
out, variants, rounds = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
if len(sys.argv) > 4:  # a child
    sys.path.insert(0, os.path.join(here, "..", "..", "tests", "bench"))
    from test_bench_train_overhead import BATCH, plain_torch_tokens_per_second, ray_tokens_per_second
    from selfexplain.config import RayConfig, load_config
    from selfexplain.jobs.generate import generate
    from selfexplain.jobs.ray_session import ray_session
    from selfexplain.train.mixture import corpus_sources
    from selfexplain.train.order import example_columns
    from selfexplain.train.trainer import encoded_examples, examples_with_role
    config = load_config("tiny", ["target=smollm2-135m", f"output_dir={out}", "generate.max_items=40",
                                  "generate.num_actors=1", "generate.held_out_fraction=0.1",
                                  f"train.batch_size={BATCH}", "train.epochs=1", "train.torch_threads=2",
                                  "name=zero0", "train.num_workers=1", "train.zero_stage=0"])
    with ray_session(RayConfig(num_cpus=4)):
        generate(config)
    if sys.argv[2] == "afterplain":
        examples = example_columns(examples_with_role(encoded_examples(config, corpus_sources(config), config.target), "train"))
        print(f"PLAIN {plain_torch_tokens_per_second(config, examples):.1f}", flush=True)
    sampler = subprocess.Popen([sys.executable, os.path.join(here, "..", "throughput-2026-11-29", "quiet_cluster_ab.py"),
                                out, sys.argv[2], "0", "sample"])
    print(f"RESULT {sys.argv[2]} {ray_tokens_per_second(config)['tokens_per_second']:.1f}", flush=True)
    sampler.wait()
    sys.exit()
os.makedirs(out, exist_ok=True)
for round_ in range(rounds):
    for variant in variants:
        log = f"{out}/{variant}{round_}.log"
        subprocess.run([sys.executable, __file__, out, variant, "1", "child"], stdout=open(log, "w"), stderr=subprocess.STDOUT)
        print(variant, round_, *[l.strip()[:160] for l in open(log) if l.startswith(("PLAIN", "RESULT", "SAMPLE"))], flush=True)
