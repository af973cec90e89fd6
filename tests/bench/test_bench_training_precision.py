"""What makes an explainer's CPU training step faster: bf16 autocast (fp32 master weights, bf16
matmuls on a CPU with avx512_bf16) and LoRA (the paper's r=128 and a small r=16), against today's
fp32 full fine-tuning.

Same model (SmolLM2-135M), the same micro-batches of the same lengths, the same answer-only loss
and optimizer; each variant runs ``STEPS`` optimizer steps after one warm-up step, and the
variants alternate for ``ROUNDS`` rounds so that the 2-core machine's drift falls on all of them.
Prints tokens/s and the ratio to fp32 full fine-tuning (medians over rounds). Speed only: the
held-out quality of a variant comes from a study run, not from here.
"""

from __future__ import annotations

import statistics
import time
from contextlib import nullcontext

import torch

from selfexplain.config import load_config
from selfexplain.models import load_model
from selfexplain.train.examples import IGNORE_INDEX, answer_only_loss
from selfexplain.train.loop import adamw
from selfexplain.train.lora import with_lora

BATCH, QUERY_TOKENS, ANSWER_TOKENS, STEPS, ROUNDS = 8, 120, 16, 4, 2
VARIANTS = {
    "fp32, full fine-tuning": (0, False),
    "bf16 autocast, full fine-tuning": (0, True),
    "fp32, LoRA r=128": (128, False),
    "fp32, LoRA r=16": (16, False),
    "bf16 autocast, LoRA r=16": (16, True),
}


def batches(vocab: int, seed: int = 0) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(STEPS + 1):
        ids = torch.randint(10, vocab, (BATCH, QUERY_TOKENS + ANSWER_TOKENS), generator=generator)
        labels = torch.full_like(ids, IGNORE_INDEX)
        labels[:, -ANSWER_TOKENS:] = ids[:, -ANSWER_TOKENS:]
        positions = torch.arange(ids.shape[1]).expand_as(ids)
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids),
                    "position_ids": positions, "labels": labels})  # fmt: skip
    return out


def tokens_per_second(rank: int, bf16: bool, data: list[dict]) -> float:
    model, _ = load_model("smollm2-135m")
    if rank:
        model = with_lora(model, load_config("demo", [f"train.lora_rank={rank}"]).train)
    model.train()
    optimizer = adamw([p for p in model.parameters() if p.requires_grad], 5e-5)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
    started = None
    for step, batch in enumerate(data):
        if step == 1:
            started = time.perf_counter()  # after one warm-up step
        with autocast:
            loss = answer_only_loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return STEPS * BATCH * (QUERY_TOKENS + ANSWER_TOKENS) / (time.perf_counter() - started)


def test_training_step_precision_and_lora():
    torch.set_num_threads(2)
    data = batches(vocab=49152)
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(ROUNDS):
        for name, (rank, bf16) in VARIANTS.items():
            rates[name].append(tokens_per_second(rank, bf16, data))
    baseline = statistics.median(rates["fp32, full fine-tuning"])
    print(f"\nSmolLM2-135M training step, batch {BATCH} x {QUERY_TOKENS + ANSWER_TOKENS} tokens")
    print("| variant | tokens/s | vs fp32 full |\n|---|---:|---:|")
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"| {name} | {rate:.0f} | {rate / baseline:.2f}x |")
