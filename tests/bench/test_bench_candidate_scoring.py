"""Scoring an untrained explainer's candidate answers (the change tasks' zero-shot system):
one forward per (query, answer) against the query's KV cache shared by its candidates, and
against that plus a stem shared by the candidates that open alike. Same scores first."""

import numpy as np
import torch
import torch.nn.functional as F
from timing import best_time

from selfexplain.evaluate.likelihood import candidate_log_likelihoods
from selfexplain.models import load_model
from selfexplain.tasks.ablation import ABLATION
from selfexplain.train.examples import collate, encode_example

PROMPTS = [
    "The capital of France is",
    "The opposite of big is",
    "Monday, Tuesday, Wednesday,",
    "The color of grass is",
    "She opened the door and walked into the",
    "Two plus two equals",
    "The theory of relativity was developed by Albert",
    "Don't count your chickens before they",
]
QUERIES = 16
BATCH = 32


def whole_sequences(model, tokenizer, queries, candidates) -> list[np.ndarray]:
    """The straightforward way: every (query, answer) as one sequence, BATCH to a forward."""
    pairs = [(query, answer) for query, options in zip(queries, candidates) for answer in options]
    flat = []
    with torch.no_grad():
        for start in range(0, len(pairs), BATCH):
            encoded = [encode_example(tokenizer, q, a) for q, a in pairs[start : start + BATCH]]
            batch = collate(*zip(*encoded), tokenizer.pad_token_id)
            logp = F.log_softmax(
                model(
                    input_ids=batch["input_ids"],
                    attention_mask=batch["attention_mask"],
                    position_ids=batch["position_ids"],
                )
                .logits[:, :-1]
                .float(),
                dim=-1,
            )
            labels = batch["labels"][:, 1:]
            picked = logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
            flat += (picked * (labels >= 0)).sum(dim=1).tolist()
    counts = np.cumsum([len(options) for options in candidates])[:-1]
    return np.split(np.array(flat), counts)


def test_candidate_scoring_speedup():
    torch.set_num_threads(2)
    model, tokenizer = load_model("smollm2-135m")
    model.eval()
    rows = [
        {
            "prompt": PROMPTS[i % len(PROMPTS)],
            "token": " " + PROMPTS[i % len(PROMPTS)].split()[i % 4],
            "token_index": i % 4,
        }
        for i in range(QUERIES)
    ]
    queries = [ABLATION.format_query(row) for row in rows]
    options = [
        " The most likely output would change to <<<" + new + ">>>." for new in (" the", " a", "\n")
    ]
    candidates = [
        [f" The output would remain unchanged from <<< {row['prompt'].split()[-1]}>>>.", *options]
        for row in rows
    ]

    def cached(share_stems: bool):
        return candidate_log_likelihoods(
            model, tokenizer, queries, candidates, BATCH, share_stems=share_stems
        )

    reference = whole_sequences(model, tokenizer, queries, candidates)
    gap = max(
        float(np.abs(np.concatenate(cached(share)) - np.concatenate(reference)).max())
        for share in (False, True)
    )
    assert gap < 1e-3  # same scores first: a fast wrong score is no speedup
    whole = best_time(lambda: whole_sequences(model, tokenizer, queries, candidates), repeats=1)
    per_query = best_time(lambda: cached(False), repeats=1)
    stems = best_time(lambda: cached(True), repeats=1)
    print(
        f"\ncandidate scoring, SmolLM2-135M, {QUERIES} queries x {len(candidates[0])} candidates, "
        f"2 threads "
        f"(max |score diff| {gap:.1e}):\n"
        f"  one forward per (query, answer)       {whole:6.2f}s  "
        f"stems shared {whole / stems:.2f}x faster\n"
        f"  candidates from the query's cache     {per_query:6.2f}s  "
        f"stems shared {per_query / stems:.2f}x faster\n"
        f"  and candidates from a shared stem     {stems:6.2f}s"
    )
