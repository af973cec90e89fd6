"""Training step with answer-only logits vs the full-sequence HF loss, same batch, same model."""

import torch
from timing import best_time

from selfexplain.models import load_model
from selfexplain.tasks.ablation import ABLATION
from selfexplain.train.examples import answer_only_loss, collate, encode_example

format_query, format_answer = ABLATION.format_query, ABLATION.format_answer


def test_answer_only_loss_speedup():
    torch.set_num_threads(2)
    model, tokenizer = load_model("smollm2-135m")
    model.train()
    rows = [
        {
            "prompt": f"The capital of country number {i} is",
            "token": " capital",
            "token_index": 1,
            "changed": i % 2 == 0,
            "new_top1": " the",
        }
        for i in range(16)
    ]
    ids, starts = zip(*[encode_example(tokenizer, format_query(r), format_answer(r)) for r in rows])
    batch = collate(ids, starts, tokenizer.pad_token_id)

    def full_step():
        model.zero_grad()
        model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"],
            labels=batch["labels"],
        ).loss.backward()

    def answer_step():
        model.zero_grad()
        answer_only_loss(model, batch).backward()

    full = best_time(full_step)
    fast = best_time(answer_step)
    tokens = int(batch["attention_mask"].sum())
    print(
        f"\ntrain step, SmolLM2-135M, batch 16 ({tokens} tokens): full logits {full:.2f}s  "
        f"answer-only {fast:.2f}s  speedup {full / fast:.2f}x"
    )
