"""Training throughput through Ray Train + DeepSpeed against a plain single-process torch loop.

Same model (SmolLM2-135M), same examples in the same micro-batches (the loop's own epoch order,
length buckets and phrasings: padding costs time and counts no tokens, so a different batching
would be a different workload), same answer-only loss, one epoch each; then two Ray Train
workers against one. Prints tokens/s and the ratios.

Every measurement runs in a fresh process, as a stage of `selfexplain run` starts from a driver
that has trained nothing: a Ray run started from a process that had just run the plain loop was
9% slower in two alternating rounds than one started fresh, so
running both sides in the pytest process charged part of the plain loop's history to Ray.

Both sides count steady state the same way: tokens/s from the end of the first optimizer step
(:class:`selfexplain.train.throughput.Throughput`), so neither pays its warm-up inside the ratio;
the Ray side's first step (fetching the examples included) is printed next to it. This 2-core
machine drifts by about 10% between identical runs, so the plain loop and the one-worker ZeRO-0
run (with one rank there is nothing to partition: the default) alternate, ``ROUNDS`` times each,
and the overhead is taken between their medians. ZeRO-2 on one worker, whose flat fp32 gradient
and parameter partitions cost extra copies on a CPU, and two workers run once.

The same pair also runs with one compute thread on each side, alternating with the two-thread
rounds. Two threads fill both cores, so every wake-up of one of the local cluster's own
processes (about fifteen: raylet, GCS, the dashboard agent, the log monitor, Ray Train's
controller and helpers, idle workers) stops one training thread and makes the other wait for
it. With one thread a core is left for them, as on a node with more cores than training
workers; what remains is the cost of Ray Train and DeepSpeed on the step itself.
"""

import multiprocessing
import shutil
import statistics
from concurrent.futures import ProcessPoolExecutor

import torch

from selfexplain.config import load_config
from selfexplain.jobs.generate import generate
from selfexplain.models import load_model
from selfexplain.train.examples import answer_only_loss
from selfexplain.train.loop import adamw, epoch_micro_batches, micro_batch_inputs
from selfexplain.train.mixture import corpus_sources
from selfexplain.train.order import example_columns
from selfexplain.train.throughput import Throughput
from selfexplain.train.trainer import encoded_examples, examples_with_role, train

BATCH = 8
ROUNDS = 2


def plain_torch_tokens_per_second(config, examples: dict) -> float:
    torch.set_num_threads(config.train.torch_threads)
    model, tokenizer = load_model(config.target)
    model.train()
    optimizer = adamw(model.parameters(), config.train.learning_rate)  # the loop's own optimizer
    throughput = Throughput(world_size=1)
    for picked in epoch_micro_batches(
        examples, config.seed, 0, BATCH, length_buckets=config.train.length_buckets
    ):
        batch = micro_batch_inputs(examples, picked, config.seed, 0, tokenizer.pad_token_id)
        loss = answer_only_loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.gradient_clipping)
        optimizer.step()
        optimizer.zero_grad()
        throughput.step(int(batch["attention_mask"].sum()))
    return throughput.tokens_per_second


def ray_tokens_per_second(config) -> dict:
    """One training run of ``config`` from scratch (its corpus kept), in a fresh local Ray
    session."""
    from selfexplain.config import RayConfig
    from selfexplain.jobs.ray_session import ray_session

    for leftover in ("ray_train", "explainer", "train_metrics.json"):
        path = config.run_dir.local_path / leftover
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    with ray_session(RayConfig(num_cpus=4)):
        generate(config)  # a no-op once the corpus is there
        train(config)
    return (config.run_dir / "train_metrics.json").read_json()


def in_fresh_process(function, *args):
    """``function(*args)`` in a new interpreter (spawned, so it inherits no threads or heap)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def test_ray_train_deepspeed_overhead(tmp_path):
    from selfexplain.config import RayConfig
    from selfexplain.jobs.ray_session import ray_session

    base = [
        "target=smollm2-135m",
        f"output_dir={tmp_path}",
        "generate.max_items=40",
        "generate.num_actors=1",
        "generate.held_out_fraction=0.1",
        f"train.batch_size={BATCH}",
        "train.epochs=1",
        "train.torch_threads=2",
    ]
    zero0 = load_config("tiny", [*base, "name=zero0", "train.num_workers=1", "train.zero_stage=0"])
    with ray_session(RayConfig(num_cpus=4)):
        generate(zero0)
        examples = example_columns(
            examples_with_role(
                encoded_examples(zero0, corpus_sources(zero0), zero0.target), "train"
            )
        )
    one_thread = load_config(
        "tiny",
        [*base, "name=zero0", "train.num_workers=1", "train.zero_stage=0", "train.torch_threads=1"],
    )  # same run name: the same corpus
    plain, ray_zero0, plain_one, ray_one = [], [], [], []
    for _ in range(ROUNDS):
        plain.append(in_fresh_process(plain_torch_tokens_per_second, zero0, examples))
        ray_zero0.append(in_fresh_process(ray_tokens_per_second, zero0))
        plain_one.append(in_fresh_process(plain_torch_tokens_per_second, one_thread, examples))
        ray_one.append(in_fresh_process(ray_tokens_per_second, one_thread))
    zero2 = in_fresh_process(
        ray_tokens_per_second,
        load_config("tiny", [*base, "name=zero2", "train.num_workers=1", "train.zero_stage=2"]),
    )
    two = in_fresh_process(
        ray_tokens_per_second,
        load_config(
            "tiny",
            [
                *base,
                "name=two",
                "train.num_workers=2",
                "train.zero_stage=2",
                "train.torch_threads=1",
                f"train.batch_size={BATCH // 2}",
            ],
        ),
    )

    plain_rate = statistics.median(plain)
    first_step = f"first step {ray_zero0[0]['first_step_seconds']:.1f} s"
    print(
        f"\nSmolLM2-135M, {len(examples['record_id'])} examples, global batch {BATCH}, 2 CPU "
        f"cores, steady state:\n"
        f"{overhead_lines(plain, ray_zero0, first_step)}"
        f"  with a core left for Ray's own processes (1 compute thread on each side):\n"
        f"{overhead_lines(plain_one, ray_one)}"
        f"  Ray Train + DeepSpeed ZeRO-2 {zero2['tokens_per_second']:8.1f} tok/s  (1 worker)"
        f"   overhead {plain_rate / zero2['tokens_per_second'] - 1:+.0%}\n"
        f"  Ray Train + DeepSpeed ZeRO-2 {two['tokens_per_second']:8.1f} tok/s  (2 workers)"
        f"  2 vs 1: {two['tokens_per_second'] / zero2['tokens_per_second']:.2f}x"
    )


def overhead_lines(plain: list[float], ray: list[dict], note: str = "") -> str:
    """The medians of alternating plain-loop and one-worker ZeRO-0 rounds, the overhead between
    them, and each round's pair."""
    plain_rate = statistics.median(plain)
    ray_rate = statistics.median(metrics["tokens_per_second"] for metrics in ray)
    rounds = "  ".join(f"{p:.1f}/{m['tokens_per_second']:.1f}" for p, m in zip(plain, ray))
    return (
        f"  plain torch loop             {plain_rate:8.1f} tok/s  (median of {len(plain)})\n"
        f"  Ray Train + DeepSpeed ZeRO-0 {ray_rate:8.1f} tok/s  (1 worker, median of {len(ray)})"
        f"   overhead {plain_rate / ray_rate - 1:+.0%}{'  (' + note + ')' if note else ''}\n"
        f"    rounds, plain/ZeRO-0 tok/s: {rounds}\n"
    )
