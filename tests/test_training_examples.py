"""Answer-only training examples: the fast loss equals the textbook one."""

import torch

from selfexplain.tasks.ablation import format_answer, format_query
from selfexplain.train.examples import IGNORE_INDEX, answer_only_loss, collate, encode_example

ROWS = [
    {"prompt": "The capital of France is", "token": " France", "token_index": 3, "changed": True, "new_top1": " the"},
    {"prompt": "Once upon a", "token": " a", "token_index": 2, "changed": False, "new_top1": " time"},
    {"prompt": "Salt and", "token": "Salt", "token_index": 0, "changed": True, "new_top1": " pepper and more"},
]


def test_answer_only_loss_equals_full_loss_on_right_padded_batch(tiny_llama):
    model, tokenizer = tiny_llama
    encoded = [encode_example(tokenizer, format_query(r), format_answer(r)) for r in ROWS]
    ids, starts = zip(*encoded)
    assert all(e[-1] == tokenizer.eos_token_id for e in ids)

    fast = answer_only_loss(model, collate(ids, starts, tokenizer.pad_token_id))

    # Reference: the plain HF loss, one unpadded example at a time, token-weighted.
    total, count = 0.0, 0
    for seq, start in encoded:
        labels = torch.tensor([IGNORE_INDEX] * start + seq[start:])
        n = len(seq) - start
        loss = model(input_ids=torch.tensor([seq]), labels=labels[None]).loss
        total, count = total + loss.item() * n, count + n
    torch.testing.assert_close(fast, torch.tensor(total / count), rtol=1e-5, atol=1e-5)


def test_collate_masks_queries_and_padding():
    batch = collate([[5, 6, 7, 8], [9, 10]], [2, 1], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8], [0, 0, 9, 10]]
    assert batch["labels"].tolist() == [[-100, -100, 7, 8], [-100, -100, -100, 10]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3], [0, 0, 0, 1]]
