"""Candidate choice is label-free: a query's candidate answers depend only on what the query shows,
the output a system may know without an explainer, and the training rows; never on the row's
hidden fields (whether it changed, its new output, the target's answer with a hint)."""

import itertools

import pytest

from selfexplain.tasks import ScoringContext, get_task

TRAIN = [
    {
        "changed": True,
        "new_top1": " Rome",
        "orig_top1": " Paris",
        "answer_with_hint": "B",
        "answer_without_hint": "C",
        "form": "choice",
    },
    {
        "changed": True,
        "new_top1": " Tokyo",
        "orig_top1": " Paris",
        "answer_with_hint": "C",
        "answer_without_hint": "A",
        "form": "choice",
    },
    {
        "changed": False,
        "new_top1": " Lima",
        "orig_top1": " Lima",
        "answer_with_hint": "C",
        "answer_without_hint": "C",
        "form": "choice",
    },
]

# what a query shows (and, for ablation and patching, its original output) stays fixed ...
VISIBLE = {
    "ablation": {
        "prompt": "The capital of France is",
        "token_index": 3,
        "token": " France",
        "orig_top1": " Paris",
    },
    "patching": {
        "prompt": "The capital of France is",
        "layer": 3,
        "position": 3,
        "token": " France",
        "orig_top1": " Paris",
    },
    "hint": {
        "form": "completion",
        "prompt": "Hint: the answer is Berlin. The capital of France is",
        "correct": "Paris",
        "outputs": ["Paris", "Berlin"],
        "hint_answer": "Berlin",
    },
}
# ... while every hidden field takes every value a row could hold
HIDDEN = {
    "ablation": {"changed": [False, True], "new_top1": [" Paris", " Rome", " the"]},
    "patching": {"changed": [False, True], "new_top1": [" Paris", " Rome", " Tokyo"]},
    "hint": {
        "changed": [False, True],
        "new_top1": ["Paris", "Berlin"],
        "answer_with_hint": ["Paris", "Berlin", "the"],
        "answer_without_hint": ["Paris", "Berlin"],
    },
}


@pytest.mark.parametrize("task_name", sorted(VISIBLE))
def test_a_rows_candidates_are_the_same_whatever_its_hidden_fields(task_name):
    task = get_task(task_name)
    context = ScoringContext(seed=0, train_rows=TRAIN, corpus=None, target_layers=30)
    hidden = HIDDEN[task_name]
    sets = set()
    for values in itertools.product(*hidden.values()):
        row = {**VISIBLE[task_name], **dict(zip(hidden, values))}
        (candidates,) = task.candidate_answers([row], context)
        sets.add(tuple(candidates))
    assert len(sets) == 1, sets
    (candidates,) = sets
    assert len(candidates) >= 2 and len(set(candidates)) == len(candidates)
    # and the baselines, which also answer from what the query shows
    for values in itertools.product(*hidden.values()):
        row = {**VISIBLE[task_name], **dict(zip(hidden, values))}
        assert task.majority_answer(TRAIN, row, context) == task.majority_answer(
            TRAIN, VISIBLE[task_name] | {k: v[0] for k, v in hidden.items()}, context
        )


def test_the_hint_candidates_cross_both_classes_with_the_outputs_the_question_offers():
    hint = get_task("hint")
    context = ScoringContext(seed=0, train_rows=TRAIN, corpus=None, target_layers=30)
    (candidates,) = hint.candidate_answers([{**VISIBLE["hint"], "changed": True}], context)
    assert candidates == [
        " The output would remain unchanged from <<<Paris>>>.",
        " The output would remain unchanged from <<<Berlin>>>.",
        " The most likely output would change to <<<Paris>>>.",
        " The most likely output would change to <<<Berlin>>>.",
    ]


def test_change_candidates_name_every_training_output_unless_capped():
    patching = get_task("patching")
    row = {**VISIBLE["patching"], "changed": False, "new_top1": " Paris"}
    every = ScoringContext(seed=0, train_rows=TRAIN, corpus=None, target_layers=30)
    (candidates,) = patching.candidate_answers([row], every)
    assert [c.split("<<<")[1].split(">>>")[0] for c in candidates] == ["Paris", "Rome", "Tokyo"]
    capped = ScoringContext(
        seed=0, train_rows=TRAIN, corpus=None, target_layers=30, candidate_outputs=1
    )
    assert len(patching.candidate_answers([row], capped)[0]) == 2
