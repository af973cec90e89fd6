"""Input ablation: which input tokens does the next-token prediction depend on?

For a prompt of n tokens, remove each token in turn and run the model on the remaining n-1.
The ground truth is the original top-1 next token, the new one, the probability the original
token keeps, and whether the prediction changed. The explainer later sees the prompt and the
removed token and must answer in the paper's form (:mod:`selfexplain.tasks.change_answers`):
the output stays X, or changes to Y (the paper's input ablation task, token-level; its
hint-removal variant asks the same of a hint).

All n ablations of a prompt have the same length, so they run as one batch: one forward for
the original and one for all removals, instead of n+1.
"""

from __future__ import annotations

import pyarrow as pa
import torch

from selfexplain.corpus.families import prompt_families
from selfexplain.corpus.prompts import load_prompts
from selfexplain.corpus.schema import stable_id
from selfexplain.tasks import GroundTruthContext, QueryContext, QueryError, Rejected, ScoringContext
from selfexplain.tasks.change_answers import ChangeAnswer, ChangeTask, display_token

ABLATION_SCHEMA = pa.schema(
    [
        pa.field(
            "record_id",
            pa.string(),
            nullable=False,
            metadata={"doc": "hash of target model, task, prompt and removed position"},
        ),
        pa.field(
            "prompt_id", pa.string(), nullable=False, metadata={"doc": "hash of the prompt text"}
        ),
        pa.field(
            "family",
            pa.string(),
            nullable=False,
            metadata={
                "doc": "template family of the prompt (prompts a word or two apart; see "
                "corpus/families.py)"
            },
        ),
        pa.field(
            "split",
            pa.string(),
            nullable=False,
            metadata={"doc": "train or test (held out by generate.held_out_by: family or prompt)"},
        ),
        pa.field("target_model", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("num_tokens", pa.int32(), nullable=False),
        pa.field(
            "token_index",
            pa.int32(),
            nullable=False,
            metadata={"doc": "position of the removed token"},
        ),
        pa.field(
            "token", pa.string(), nullable=False, metadata={"doc": "the removed token, decoded"}
        ),
        pa.field("orig_top1_id", pa.int32(), nullable=False),
        pa.field("orig_top1", pa.string(), nullable=False),
        pa.field("orig_top1_prob", pa.float32(), nullable=False),
        pa.field("new_top1_id", pa.int32(), nullable=False),
        pa.field("new_top1", pa.string(), nullable=False),
        pa.field("new_top1_prob", pa.float32(), nullable=False),
        pa.field(
            "new_prob_of_orig",
            pa.float32(),
            nullable=False,
            metadata={"doc": "probability of the original top-1 token after the removal"},
        ),
        pa.field(
            "prob_change",
            pa.float32(),
            nullable=False,
            metadata={"doc": "new_prob_of_orig - orig_top1_prob"},
        ),
        pa.field(
            "changed", pa.bool_(), nullable=False, metadata={"doc": "new_top1_id != orig_top1_id"}
        ),
    ]
)


@torch.no_grad()
def ablate_prompt(model, tokenizer, prompt: str, target_name: str) -> list[dict]:
    """Ground-truth rows for every removable token of ``prompt`` (special tokens such as BOS
    stay)."""
    encoded = tokenizer(prompt, return_special_tokens_mask=True)
    ids = torch.tensor(encoded["input_ids"])
    special = encoded["special_tokens_mask"]
    positions = [i for i, is_special in enumerate(special) if not is_special]
    if len(ids) < 2 or not positions:
        return []
    device = next(model.parameters()).device

    orig_probs = _next_token_probs(model, ids.unsqueeze(0).to(device))[0]
    orig_id = int(orig_probs.argmax())
    keep = [torch.cat([ids[:i], ids[i + 1 :]]) for i in positions]
    new_probs = _next_token_probs(model, torch.stack(keep).to(device))

    rows = []
    prompt_id = stable_id(prompt)
    orig_token = tokenizer.decode([orig_id])
    for position, probs in zip(positions, new_probs):
        new_id = int(probs.argmax())
        rows.append(
            {
                "record_id": stable_id(target_name, "ablation", prompt, position),
                "prompt_id": prompt_id,
                "target_model": target_name,
                "prompt": prompt,
                "num_tokens": len(ids),
                "token_index": position,
                "token": tokenizer.decode([int(ids[position])]),
                "orig_top1_id": orig_id,
                "orig_top1": orig_token,
                "orig_top1_prob": float(orig_probs[orig_id]),
                "new_top1_id": new_id,
                "new_top1": tokenizer.decode([new_id]),
                "new_top1_prob": float(probs[new_id]),
                "new_prob_of_orig": float(probs[orig_id]),
                "prob_change": float(probs[orig_id] - orig_probs[orig_id]),
                "changed": new_id != orig_id,
            }
        )
    return rows


def _next_token_probs(model, input_ids: torch.Tensor) -> torch.Tensor:
    """Float[Tensor, "batch vocab"]: next-token distribution after each (unpadded) sequence."""
    logits = model(input_ids=input_ids, logits_to_keep=1).logits[:, -1, :]
    return torch.softmax(logits.float(), dim=-1).cpu()


class AblationTask(ChangeTask):
    name = "ablation"
    vector_input = False
    query_templates = 1
    held_out_by = ("family", "prompt")
    unit_name = "prompt families"
    query_fields = {"prompt": str, "token_index": int}
    rule_name = "last-token rule"

    def schema(self, d_model: int) -> pa.Schema:
        return ABLATION_SCHEMA

    def work_items(self, config, tokenizer) -> list[dict]:
        prompts = load_prompts(config.generate.prompts, config.generate.max_items)
        families = prompt_families(prompts)
        return [
            {"prompt": p, "groups": {"family": families[p], "prompt": stable_id(p)}}
            for p in prompts
        ]

    def ground_truth(self, item: dict, context: GroundTruthContext) -> list[dict]:
        prompt = item["prompt"]
        num_tokens = len(context.tokenizer(prompt)["input_ids"])
        if num_tokens > context.options.max_tokens:
            raise Rejected(
                f"prompt has {num_tokens} tokens, over "
                f"generate.max_tokens={context.options.max_tokens}"
            )
        rows = ablate_prompt(context.model, context.tokenizer, prompt, context.target_name)
        if not rows:
            raise Rejected("prompt has no removable token (empty, or only special tokens)")
        for row in rows:
            row["family"] = item["groups"]["family"]
        return rows

    def held_out_unit(self, row: dict) -> str:
        """The cluster a query is resampled with: its prompt's template family."""
        return row["family"]

    def format_query(self, row: dict) -> str:
        """The explainer's question about one ablation: the prompt, and which token is removed."""
        return (
            f"Text: <<<{row['prompt']}>>>\n"
            f"If token {row['token_index']} <<<{display_token(row['token'])}>>> were removed, how "
            f"would the output change?\n"
            "Answer:"
        )

    def query_row(self, query: dict, context: QueryContext) -> dict:
        ids = context.tokenizer(query["prompt"])["input_ids"]
        if not 0 <= query["token_index"] < len(ids):
            raise QueryError(
                f"token_index {query['token_index']} is outside the prompt's {len(ids)} tokens"
            )
        return {**query, "token": context.tokenizer.decode([ids[query["token_index"]]])}

    def rule_answer(self, row: dict, context: ScoringContext) -> ChangeAnswer:
        """Only removing the last token changes the next token (it is what the model continues
        from); the new token cannot be guessed, so a "changed" guess names none."""
        if row["token_index"] == row["num_tokens"] - 1:
            return ChangeAnswer(True, "")
        return ChangeAnswer(False, self.original_output(row))


ABLATION = AblationTask()
