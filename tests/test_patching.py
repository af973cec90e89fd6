"""Activation patching: the batched, prefix-reusing sweep equals one full forward per site, and
the task's rows say what patching each site does."""

import json
import random

import pytest
import torch

from selfexplain.config import load_config
from selfexplain.models.patching import capture_component, patch_one_site, patch_sweep
from selfexplain.tasks import GroundTruthContext, Rejected
from selfexplain.tasks.patching import PATCHING, PairFileError, patch_pair, read_pairs_file, templated_pairs


@pytest.mark.parametrize("component", ["residual", "attn", "mlp"])
def test_sweep_equals_a_full_forward_per_site(tiny_llama, component):
    model, tokenizer = tiny_llama
    ids = torch.tensor(tokenizer("the cat sat on the mat and").input_ids)
    cf_ids = torch.tensor(tokenizer("the mat sat on the cat and").input_ids)
    assert len(ids) == len(cf_ids)
    layers = list(range(model.config.num_hidden_layers))
    sources = capture_component(model, cf_ids, layers, component)
    positions = list(range(len(ids)))
    swept = patch_sweep(model, ids, sources, positions, component)
    rng = random.Random(0)
    for p_index, l_index in [(rng.randrange(len(positions)), rng.randrange(len(layers))) for _ in range(8)]:
        direct = patch_one_site(model, ids, layers[l_index], positions[p_index], sources[layers[l_index]][positions[p_index]],
                                component)
        assert (swept[p_index, l_index] - direct).abs().max() < 1e-4
    # a patch must matter somewhere, or the comparison above proves nothing
    clean = model(input_ids=ids[None], logits_to_keep=1).logits[0, -1]
    assert (swept - clean).abs().max() > 1e-3


def _context(model, tokenizer, **overrides):
    config = load_config("tiny", ["task=patching", *[f"generate.{k}={v}" for k, v in overrides.items()]])
    layers = config.generate.layers or list(range(model.config.num_hidden_layers))
    return GroundTruthContext(model, tokenizer, "tiny-llama", config.generate, layers)


def _usable_pair(model, tokenizer, context):
    for pair in templated_pairs(tokenizer, seed=0):
        pair.update(answer="", cf_answer="")  # a random model knows no facts: check patching mechanics only
        try:
            return pair, patch_pair(pair, context)
        except Rejected:
            continue
    pytest.fail("no templated pair with different next tokens")


def test_patch_pair_rows_record_the_counterfactual_vector_and_the_change(tiny_llama):
    model, tokenizer = tiny_llama
    context = _context(model, tokenizer)
    pair, rows = _usable_pair(model, tokenizer, context)
    n = len(tokenizer(pair["prompt"]).input_ids)
    assert len(rows) == n * model.config.num_hidden_layers
    assert len({r["record_id"] for r in rows}) == len(rows)
    sources = capture_component(model, torch.tensor(tokenizer(pair["counterfactual"]).input_ids), context.layers)
    cf_tokens = tokenizer(pair["counterfactual"]).input_ids
    orig_tokens = tokenizer(pair["prompt"]).input_ids
    first_diff = next(i for i, (a, b) in enumerate(zip(orig_tokens, cf_tokens)) if a != b)
    for row in rows:
        assert torch.allclose(torch.as_tensor(row["vector"]), sources[row["layer"]][row["position"]])
        assert row["changed"] == (row["new_top1_id"] != row["orig_top1_id"])
        if row["position"] < first_diff:  # identical prefix: the patch writes the value already there
            assert not row["changed"] and abs(row["logit_diff"] - row["clean_logit_diff"]) < 1e-4
    # patching the differing token in the last layer hands over the counterfactual's prediction
    last = max(context.layers)
    final = [r for r in rows if r["layer"] == last and r["position"] == n - 1]
    if first_diff == n - 1:
        assert final[0]["new_top1_id"] == final[0]["cf_top1_id"]
    # deterministic ids
    assert [r["record_id"] for r in patch_pair(pair, context)] == [r["record_id"] for r in rows]


def test_bad_pairs_are_rejected_with_a_reason(tiny_llama, tmp_path):
    model, tokenizer = tiny_llama
    context = _context(model, tokenizer)
    uneven = {"prompt": "the cat", "counterfactual": "the cat sat on the mat", "answer": "", "cf_answer": "",
              "relation": "user", "template": "", "entity": "a", "cf_entity": "b"}
    with pytest.raises(Rejected, match="different lengths"):
        patch_pair(uneven, context)
    wrong = dict(uneven, prompt="the cat sat on the mat and", counterfactual="the mat sat on the cat and", answer="zebra")
    with pytest.raises(Rejected, match="does not answer the original prompt correctly"):
        patch_pair(wrong, context)

    bad = tmp_path / "pairs.jsonl"
    bad.write_text(json.dumps({"prompt": "x"}) + "\n")
    with pytest.raises(PairFileError, match="counterfactual"):
        read_pairs_file(bad)
    with pytest.raises(PairFileError, match="not found"):
        read_pairs_file(tmp_path / "missing.jsonl")


def test_builtin_pairs_group_by_entity_template_and_relation(tiny_llama):
    _, tokenizer = tiny_llama
    config = load_config("tiny", ["task=patching", "generate.max_items=50"])
    items = PATCHING.work_items(config, tokenizer)
    assert len(items) == 50
    assert all(set(item["groups"]) == {"entity", "template", "relation"} for item in items)
    assert all(len(tokenizer(i["prompt"]).input_ids) == len(tokenizer(i["counterfactual"]).input_ids) for i in items)
    assert all(i["answer"] != i["cf_answer"] for i in items)
