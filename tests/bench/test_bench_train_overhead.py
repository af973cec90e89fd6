"""Training throughput through Ray Train + DeepSpeed against a plain single-process torch loop.

Same model (SmolLM2-135M), same encoded examples, same batch size, same answer-only loss, one
epoch each; then two Ray Train workers against one. Prints tokens/s and the ratios.

Both sides count steady state the same way: tokens/s from the end of the first optimizer step
(:class:`selfexplain.train.throughput.Throughput`), so neither pays its warm-up inside the ratio;
the Ray side's first step (data pipeline start-up included) is printed next to it. One worker
is measured at ZeRO-0 (with one rank there is nothing to partition: the right setting) and at
ZeRO-2, whose flat fp32 gradient and parameter partitions cost extra copies on a CPU.
"""


import torch

from selfexplain.config import load_config
from selfexplain.jobs.generate import generate
from selfexplain.models import load_model
from selfexplain.train.examples import answer_only_loss, collate
from selfexplain.train.loop import adamw
from selfexplain.train.mixture import corpus_sources
from selfexplain.train.throughput import Throughput
from selfexplain.train.trainer import encoded_examples, examples_with_role, train

BATCH = 8


def plain_torch_tokens_per_second(config, examples) -> float:
    torch.set_num_threads(2)
    model, tokenizer = load_model(config.target)
    model.train()
    optimizer = adamw(model.parameters(), config.train.learning_rate)  # the loop's own optimizer
    throughput = Throughput(world_size=1)
    for start in range(0, len(examples), BATCH):
        chunk = examples[start:start + BATCH]
        batch = collate([e["input_ids"] for e in chunk], [e["answer_start"] for e in chunk], tokenizer.pad_token_id)
        loss = answer_only_loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.gradient_clipping)
        optimizer.step()
        optimizer.zero_grad()
        throughput.step(int(batch["attention_mask"].sum()))
    return throughput.tokens_per_second


def test_ray_train_deepspeed_overhead(tmp_path):
    from selfexplain.config import RayConfig
    from selfexplain.jobs.ray_session import ray_session

    base = ["target=smollm2-135m", f"output_dir={tmp_path}", "generate.max_items=40", "generate.num_actors=1",
            "generate.held_out_fraction=0.1", f"train.batch_size={BATCH}", "train.epochs=1", "train.torch_threads=2"]
    with ray_session(RayConfig(num_cpus=4)):
        one = load_config("tiny", [*base, "name=one", "train.num_workers=1", "train.zero_stage=2"])
        generate(one)
        examples = examples_with_role(encoded_examples(one, corpus_sources(one), one.target),
                                      "train").take_all()
        train(one)
        one_metrics = (one.run_dir / "train_metrics.json").read_json()
        ray_one = one_metrics["tokens_per_second"]

        # ZeRO stage 0 on the same single worker: splits the overhead into Ray Train's and ZeRO-2's.
        zero0 = load_config("tiny", [*base, "name=zero0", "train.num_workers=1", "train.zero_stage=0"])
        generate(zero0)
        train(zero0)
        zero0_metrics = (zero0.run_dir / "train_metrics.json").read_json()
        ray_zero0 = zero0_metrics["tokens_per_second"]

        two = load_config("tiny", [*base, "name=two", "train.num_workers=2", "train.zero_stage=2",
                                   "train.torch_threads=1", f"train.batch_size={BATCH // 2}"])
        generate(two)
        train(two)
        ray_two = (two.run_dir / "train_metrics.json").read_json()["tokens_per_second"]

    plain = plain_torch_tokens_per_second(one, examples)
    print(f"\nSmolLM2-135M, {len(examples)} examples, global batch {BATCH}, 2 CPU cores, steady state:\n"
          f"  plain torch loop             {plain:8.1f} tok/s\n"
          f"  Ray Train + DeepSpeed ZeRO-0 {ray_zero0:8.1f} tok/s  (1 worker)   overhead {plain / ray_zero0 - 1:+.0%}"
          f"  (first step {zero0_metrics['first_step_seconds']:.1f} s)\n"
          f"  Ray Train + DeepSpeed ZeRO-2 {ray_one:8.1f} tok/s  (1 worker)   overhead {plain / ray_one - 1:+.0%}"
          f"  (first step {one_metrics['first_step_seconds']:.1f} s)\n"
          f"  Ray Train + DeepSpeed ZeRO-2 {ray_two:8.1f} tok/s  (2 workers)  2 vs 1: {ray_two / ray_one:.2f}x")
