"""Batched input ablation (one forward for all removals of a prompt) vs one forward per token."""

import torch
from timing import best_time

from selfexplain.models import load_model
from selfexplain.tasks.ablation import ablate_prompt

PROMPTS = [
    "The capital of France is",
    "The theory of relativity was developed by Albert",
    "She opened the door and walked into the",
    "Monday, Tuesday, Wednesday,",
]


def naive_ablation(model, tokenizer, prompt):
    ids = tokenizer(prompt)["input_ids"]
    with torch.no_grad():
        orig = model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()
        return [
            (
                int(orig),
                int(model(input_ids=torch.tensor([ids[:i] + ids[i + 1 :]])).logits[0, -1].argmax()),
            )
            for i in range(len(ids))
        ]


def test_batched_ablation_speedup():
    torch.set_num_threads(2)
    model, tokenizer = load_model("smollm2-135m")
    for prompt in PROMPTS:  # same answers first: a fast wrong answer is no speedup
        rows = ablate_prompt(model, tokenizer, prompt, "smollm2-135m")
        assert [r["new_top1_id"] for r in rows] == [
            new for _, new in naive_ablation(model, tokenizer, prompt)
        ]
    batched = best_time(
        lambda: [ablate_prompt(model, tokenizer, p, "smollm2-135m") for p in PROMPTS]
    )
    naive = best_time(lambda: [naive_ablation(model, tokenizer, p) for p in PROMPTS])
    print(
        f"\nablation, SmolLM2-135M, {len(PROMPTS)} prompts: naive {naive:.3f}s  batched "
        f"{batched:.3f}s  "
        f"speedup {naive / batched:.2f}x"
    )
