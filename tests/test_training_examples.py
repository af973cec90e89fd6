"""Answer-only training examples: the fast loss equals the textbook one."""

import numpy as np
import pytest
import torch

from selfexplain.tasks.ablation import ABLATION
from selfexplain.train.examples import IGNORE_INDEX, answer_only_loss, collate, encode_example
from selfexplain.train.loop import ExplainerTraining, Progress, lr_factor, selection_note
from selfexplain.train.order import (
    epoch_order,
    example_columns,
    length_bucketed,
    rank_micro_batches,
)

format_query, format_answer = ABLATION.format_query, ABLATION.format_answer

ROWS = [
    {
        "prompt": "The capital of France is",
        "token": " France",
        "token_index": 3,
        "changed": True,
        "new_top1": " the",
    },
    {
        "prompt": "Once upon a",
        "token": " a",
        "token_index": 2,
        "changed": False,
        "new_top1": " time",
    },
    {
        "prompt": "Salt and",
        "token": "Salt",
        "token_index": 0,
        "changed": True,
        "new_top1": " pepper and more",
    },
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


def test_each_epoch_reads_a_fresh_global_order_shared_by_every_rank():
    # a corpus as written: 20 items (prompts, pairs) of 10 consecutive rows each
    record_ids = [f"item{i}-row{j}" for i in range(20) for j in range(10)]
    item_of = [rid.split("-")[0] for rid in record_ids]
    first, second = (
        epoch_order(record_ids, None, seed=0, epoch=0),
        epoch_order(record_ids, None, seed=0, epoch=1),
    )
    assert sorted(first) == list(range(200)) and not np.array_equal(first, second)
    assert np.array_equal(
        first, epoch_order(record_ids, None, seed=0, epoch=0)
    )  # a resume replays it
    batches = list(rank_micro_batches(first, rank=0, world=1, micro_batch=8))
    assert min(len({item_of[i] for i in batch}) for batch in batches[:-1]) >= 5  # batches mix items
    # two ranks: disjoint halves of one order, the same number of batches (their collectives match)
    ranks = [np.concatenate(list(rank_micro_batches(first[:199], r, 2, 8))) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 99 and not set(ranks[0]) & set(ranks[1])
    # a task mix's repeated rows are told apart by their copy number, so they land apart
    twice = epoch_order(["a", "a", "b"], [0, 1, 0], seed=0, epoch=0)
    assert sorted(twice) == [0, 1, 2]


def test_a_micro_batch_from_the_columns_holds_its_rows_as_encoded():
    import pandas as pd

    from selfexplain.train.loop import micro_batch_inputs

    # one phrasing each (held-out rows) and equal lengths: the case that must not collapse into a
    # 3-D array
    frame = pd.DataFrame(
        {
            "record_id": ["a", "b", "c"],
            "input_ids": [[5, 6, 7], [8, 9, 10], [11, 12, 13]],
            "answer_start": [1, 2, 1],
            "variant_ids": [[[5, 6, 7]], [[8, 9, 10]], [[11, 12]]],
            "variant_starts": [[1], [2], [1]],
            "vector": [np.full(4, i, dtype=np.float32) for i in range(3)],
            "layer": [3, 3, 5],
        }
    )
    columns = example_columns(frame)
    assert columns["vector"].shape == (3, 4) and columns["variant_ids"].shape == (3,)
    batch = micro_batch_inputs(columns, np.array([2, 0]), seed=0, epoch=0, pad_id=0)
    assert batch["input_ids"].tolist() == [[0, 11, 12], [5, 6, 7]]
    assert batch["labels"].tolist() == [[-100, -100, 12], [-100, 6, 7]]
    assert batch["vectors"][:, 0].tolist() == [2.0, 0.0] and batch["vector_layers"].tolist() == [
        5,
        3,
    ]


def test_length_buckets_cut_padding_and_keep_every_example_once():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 200, size=1000)
    order = epoch_order([f"r{i}" for i in range(1000)], None, seed=0, epoch=0)
    bucketed = length_bucketed(order, lengths, chunk=16, seed=0, epoch=0)
    assert sorted(bucketed) == list(range(1000))  # a regrouping: nothing lost or repeated
    assert np.array_equal(
        bucketed, length_bucketed(order, lengths, chunk=16, seed=0, epoch=0)
    )  # resumable
    assert not np.array_equal(bucketed, length_bucketed(order, lengths, chunk=16, seed=0, epoch=1))

    def padded_tokens(o):
        return sum(16 * lengths[o[i : i + 16]].max() for i in range(0, len(o), 16))

    assert padded_tokens(bucketed) < 0.7 * padded_tokens(order)
    batch_maxima = [lengths[bucketed[i : i + 16]].max() for i in range(0, 800, 16)]
    assert batch_maxima != sorted(batch_maxima)  # not run short to long: batches are shuffled


def test_lr_schedules_and_the_best_epoch_by_in_distribution_loss():
    assert [lr_factor("constant", 2, 20)(s) for s in (0, 1, 5, 9)] == [0.5, 1.0, 1.0, 1.0]
    # the warm-up is at most 10% of the run: 10 warm-up steps in a 30-step run become 3
    assert [lr_factor("constant", 10, 30)(s) for s in (0, 2, 3)] == [1 / 3, 1.0, 1.0]
    assert lr_factor("cosine", 2, 10)(9) < 0.1

    class Train:
        patience = 2

    run = ExplainerTraining.__new__(ExplainerTraining)  # only the bookkeeping, no model
    run.progress, run.world, run.rank, run.train = Progress(), 1, 0, Train()
    decisions, notes = [], []
    validations = [(10, 0, 0.9, 0.5), (20, 0, 0.7, 0.9), (30, 1, 0.8, 0.1), (40, 1, 0.75, 0.1)]
    for step, epoch, in_distribution, held_out in validations:
        run.progress.step = step
        losses = {"val_in_distribution": in_distribution, "val_held_out": held_out}
        decisions.append(run._new_best(losses, epoch))
        notes.append(selection_note(run.progress, decisions[-1], Train.patience))
    # each validation's console line says what selection made of it
    assert notes[1] == "  (lowest in-distribution loss so far: exported)"
    assert notes[2:] == [
        "  (best 0.7000 at step 20; 1 of 2 without a lower one)",
        "  (best 0.7000 at step 20; 2 of 2 without a lower one)",
    ]
    # the held-out loss, lowest at steps 30 and 40, never chooses; two validations in a row
    # without a new best stop training
    assert decisions == [True, True, False, False]
    progress = run.progress
    assert (progress.best_step, progress.best_epoch, progress.best_loss) == (20, 1, 0.7)
    assert progress.stopped_early


def test_candidate_answers_are_ranked_by_their_log_likelihood(tiny_llama):
    """Candidates continue from their query's cache, and candidates with a common opening from
    its stem's; the scores equal one full forward per (query, answer), across queries of
    different lengths and candidate counts, a candidate that is another's opening included."""
    from selfexplain.evaluate.likelihood import candidate_log_likelihoods, most_likely

    model, tokenizer = tiny_llama
    queries = [
        format_query(ROWS[0]),
        format_query(ROWS[1]) + " and some more words to pad",
        format_query(ROWS[2]),
    ]
    options = [
        " The output would remain unchanged from <<<a>>>.",
        " The most likely output would change to <<<the>>>.",
        " The most likely output would change to <<<cat sat>>>.",
        " The most likely output would change to <<<cat sat>>>. Or not",
    ]
    candidates = [options, options[:1], options[1:]]
    scores = candidate_log_likelihoods(model, tokenizer, queries, candidates, batch_size=2)
    assert [len(s) for s in scores] == [4, 1, 3]
    with torch.no_grad():
        for query, answers, got in zip(queries, candidates, scores):
            for option, score in zip(answers, got):
                ids, start = encode_example(tokenizer, query, option)
                logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0], -1)
                expected = sum(float(logp[t - 1, ids[t]]) for t in range(start, len(ids)))
                assert abs(float(score) - expected) < 1e-3
    assert most_likely(model, tokenizer, queries, candidates, batch_size=4) == [
        answers[int(np.argmax(got))] for answers, got in zip(candidates, scores)
    ]


@pytest.mark.parametrize(
    "rows, expected",
    [
        # one query: the two sharing 5 tokens form a stem; the third runs whole
        (
            [(0, [1, 2, 3, 4, 5, 6, 9]), (0, [1, 2, 3, 4, 5, 7, 9]), (0, [1, 8, 9])],
            [(0, [1, 2, 3, 4, 5], [0, 1]), (0, [1, 8, 9], [2])],
        ),
        # a candidate that is the others' opening: the stem stops a token short of it
        ([(0, [1, 2, 3, 4, 9]), (0, [1, 2, 3, 4, 9, 5, 9])], [(0, [1, 2, 3, 4], [0, 1])]),
        # fewer than 4 shared tokens: not worth a forward of its own
        (
            [(0, [1, 2, 3, 9]), (0, [1, 2, 3, 8, 9])],
            [(0, [1, 2, 3, 8, 9], [1]), (0, [1, 2, 3, 9], [0])],
        ),
        # never across queries; a duplicate still has an ending of its own
        (
            [(0, [1, 2, 3, 4, 5, 9]), (1, [1, 2, 3, 4, 5, 9]), (1, [1, 2, 3, 4, 5, 9])],
            [(0, [1, 2, 3, 4, 5, 9], [0]), (1, [1, 2, 3, 4, 5], [1, 2])],
        ),
    ],
)
def test_candidates_share_the_stems_they_open_with(rows, expected):
    from selfexplain.evaluate.likelihood import stems_of

    assert [(stem.query, stem.ids, stem.members) for stem in stems_of(rows)] == expected


def test_each_epoch_asks_a_query_in_a_phrasing_of_its_own():
    from selfexplain.train.loop import phrased
    from selfexplain.train.order import epoch_variant

    ids = [f"row{i}" for i in range(200)]
    first = [epoch_variant(i, 0, 0, 6) for i in ids]
    assert set(first) == set(range(6)) and first != [epoch_variant(i, 0, 1, 6) for i in ids]
    batch = {
        "record_id": np.array(["row0", "row1"]),
        "variant_ids": np.array([[[1, 2], [3, 4, 5]], [[6, 7]]], dtype=object),
        "variant_starts": np.array([[1, 2], [1]], dtype=object),
    }
    chosen, starts = phrased(batch, seed=0, epoch=0)
    v = epoch_variant("row0", 0, 0, 2)
    assert chosen[0] == [[1, 2], [3, 4, 5]][v] and starts == [[1, 2][v], 1] and chosen[1] == [6, 7]
