"""The training-overhead bench with one compute thread instead of two, so a core is left for
Ray's own processes (as on a node with more cores than training workers): the plain torch loop
and a one-worker Ray Train + DeepSpeed ZeRO-0 run alternate, ROUNDS each, on the same corpus and
micro-batches. Run from the repository root (first argument: a scratch folder, reused):
    .venv/bin/python docs/throughput-2026-11-29/spare_core_overhead.py /tmp/spare [threads] [rounds]"""
import statistics
import sys

sys.path.insert(0, "tests/bench")
from test_bench_train_overhead import plain_torch_tokens_per_second, ray_tokens_per_second  # noqa: E402

from selfexplain.config import RayConfig, load_config  # noqa: E402
from selfexplain.jobs.generate import generate  # noqa: E402
from selfexplain.jobs.ray_session import ray_session  # noqa: E402
from selfexplain.train.mixture import corpus_sources  # noqa: E402
from selfexplain.train.order import load_examples  # noqa: E402
from selfexplain.train.trainer import as_dataset, encoded_examples, examples_with_role  # noqa: E402

out, threads, rounds = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1, int(sys.argv[3]) if len(sys.argv) > 3 else 3
config = load_config("tiny", ["target=smollm2-135m", f"output_dir={out}", "generate.max_items=40",
                              "generate.num_actors=1", "generate.held_out_fraction=0.1", "train.batch_size=8",
                              "train.epochs=1", f"train.torch_threads={threads}", "name=zero0",
                              "train.num_workers=1", "train.zero_stage=0"])
with ray_session(RayConfig(num_cpus=4)):
    generate(config)
    examples = load_examples(as_dataset(examples_with_role(
        encoded_examples(config, corpus_sources(config), config.target), "train")))


plains, rays = [], []
for round_ in range(rounds):
    plains.append(plain_torch_tokens_per_second(config, examples))
    rays.append(ray_tokens_per_second(config)["tokens_per_second"])
    print(f"round {round_ + 1}: plain {plains[-1]:.1f}  ray {rays[-1]:.1f}  overhead {plains[-1] / rays[-1] - 1:+.1%}",
          flush=True)
print(f"{threads} thread(s): plain median {statistics.median(plains):.1f}, ray median {statistics.median(rays):.1f}, "
      f"overhead {statistics.median(plains) / statistics.median(rays) - 1:+.1%}")
