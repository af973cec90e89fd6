"""Hint removal on fact completions: the form for targets that answer facts but not multiple
choice (a 135M model answers the multiple-choice bank at chance, with one constant letter).

A fact prompt ("The capital of France is") is completed by the target without a hint, and with
a hint sentence before it that names another answer of the same relation ("A reliable source
says the answer is Berlin. The capital of France is"). The ground truth is the target's free
top-1 next token with and without the hint, and whether removing the hint changes it.

Each fact is hinted toward several other answers (``generate.hints_per_fact``), one row each.
With ``generate.hint_filter`` (the default) a fact is kept only when the target completes it
correctly without the hint, and the hint wins on some hinted answers and loses on others: then
whether the output changes is not readable from the fact alone, and the changed share stays
near one half. Facts are phrased by every template of their relation and introduced by each of
a few hint sentences; a prompt that two relations share is asked once.
"""

from __future__ import annotations

import random

import torch

from selfexplain.corpus.schema import stable_id
from selfexplain.data import builtin_facts
from selfexplain.models.padding import padded_batch
from selfexplain.tasks import GroundTruthContext, Rejected
from selfexplain.tasks.change_answers import display_token

HINT_SENTENCES = (
    "A reliable source says the answer is {}.",
    "Hint: the answer is {}.",
    "I think it is {}.",
)


def first_token(tokenizer, answer: str) -> int:
    """The token a completion of ``answer`` after a space starts with."""
    return tokenizer(" " + answer, add_special_tokens=False)["input_ids"][0]


def fact_items(config, tokenizer) -> list[dict]:
    """Every (fact, template, hint sentence), each with ``generate.hints_per_fact`` other answers
    of its relation whose first tokens differ from the fact's and from each other."""
    rng = random.Random(config.seed)
    items, seen = [], set()
    for relation, spec in builtin_facts().items():
        by_first: dict[int, str] = {}
        for answer in sorted(set(spec["facts"].values())):
            by_first.setdefault(first_token(tokenizer, answer), answer)
        for template in spec["templates"]:
            for entity, answer in spec["facts"].items():
                question = template.format(entity)
                own = first_token(tokenizer, answer)
                others = sorted(a for token, a in by_first.items() if token != own)
                for sentence in HINT_SENTENCES:
                    if (question, sentence) in seen or not others:
                        continue
                    seen.add((question, sentence))
                    hints = rng.sample(others, min(config.generate.hints_per_fact, len(others)))
                    items.append(
                        {
                            "form": "completion",
                            "question": question,
                            "answer": answer,
                            "entity": entity,
                            "subject": relation,
                            "sentence": sentence,
                            "hints": hints,
                            "groups": {
                                "entity": entity,
                                "question": stable_id(question),
                                "subject": relation,
                            },
                        }
                    )
    rng.shuffle(items)  # a max_items subset spans relations
    return items[: config.generate.max_items] if config.generate.max_items else items


def hinted_prompt(sentence: str, hint: str, question: str) -> str:
    return f"{sentence.format(hint)} {question}"


@torch.no_grad()
def _next_tokens(model, tokenizer, prompts: list[str]) -> tuple[list[int], torch.Tensor]:
    """Each prompt's top-1 next token id and its next-token distribution."""
    batch = padded_batch(tokenizer, prompts, model.device)
    logits = model(**batch, logits_to_keep=1).logits[:, -1, :].float().cpu()
    if not torch.isfinite(logits).all():
        raise Rejected("non-finite logits")
    return logits.argmax(dim=-1).tolist(), torch.softmax(logits, dim=-1)


def fact_rows(item: dict, context: GroundTruthContext) -> list[dict]:
    """The target's next token without the hint and with each hinted answer, as corpus rows."""
    tokenizer, options = context.tokenizer, context.options
    prompts = [item["question"]] + [
        hinted_prompt(item["sentence"], h, item["question"]) for h in item["hints"]
    ]
    longest = max(len(tokenizer(p)["input_ids"]) for p in prompts)
    if longest > options.max_tokens:
        raise Rejected(
            f"prompt has {longest} tokens, over generate.max_tokens={options.max_tokens}"
        )
    top, probs = _next_tokens(context.model, tokenizer, prompts)
    correct_id = first_token(tokenizer, item["answer"])
    changed = [token != top[0] for token in top[1:]]
    if options.hint_filter:
        if top[0] != correct_id:
            raise Rejected(
                f"a fact the target does not know (it completes {item['question']!r} with "
                f"{tokenizer.decode([top[0]])!r}, not {item['answer']!r})"
            )
        if all(changed) or not any(changed):
            raise Rejected(
                f"the hint {'wins' if changed[0] else 'loses'} on every hinted answer: whether it "
                "changes the output is readable from the fact alone"
            )
    show = lambda token_id: display_token(tokenizer.decode([token_id]))  # noqa: E731
    question_id = stable_id(item["question"], item["sentence"])
    rows = []
    for index, hint in enumerate(item["hints"]):
        hint_id = first_token(tokenizer, hint)
        rows.append(
            {
                "record_id": stable_id(context.target_name, "hint", question_id, hint),
                "question_id": question_id,
                "target_model": context.target_name,
                "form": "completion",
                "subject": item["subject"],
                "entity": item["entity"],
                "question": item["question"],
                "choices": [],
                "outputs": [show(correct_id), show(hint_id)],
                "correct": show(correct_id),
                "hint_answer": hint,
                "prompt": prompts[1 + index],
                "answer_with_hint": show(top[1 + index]),
                "answer_without_hint": show(top[0]),
                "prob_hint_answer": float(probs[1 + index, hint_id]),
                "prob_hint_answer_without": float(probs[0, hint_id]),
                "changed": changed[index],
                "new_top1": show(top[0]),
            }
        )
    return rows
