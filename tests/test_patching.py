"""Activation patching: the batched, prefix-reusing sweep equals one full forward per site, and
the task's rows say what patching each site does."""

import json

import pytest
import torch

from selfexplain.config import load_config
from selfexplain.models.patching import (
    _position_groups,
    capture_component,
    patch_one_site,
    patch_sweep,
)
from selfexplain.tasks import GroundTruthContext, Rejected
from selfexplain.tasks.patching import (
    PATCHING,
    PairFileError,
    layer_blocks,
    patch_pair,
    read_pairs_file,
    templated_pairs,
)


@pytest.mark.parametrize("component", ["residual", "attn", "mlp"])
def test_sweep_equals_a_full_forward_per_site(tiny_llama, component):
    model, tokenizer = tiny_llama
    ids = torch.tensor(tokenizer("the cat sat on the mat and").input_ids)
    cf_ids = torch.tensor(tokenizer("the mat sat on the cat and").input_ids)
    assert len(ids) == len(cf_ids)
    layers = list(range(model.config.num_hidden_layers))
    sources = capture_component(model, cf_ids, layers, component)
    positions = list(range(len(ids)))
    swept = patch_sweep(
        model, ids, sources, positions, component
    )  # every position in one merged batch
    for p_index, position in enumerate(positions):
        for l_index, layer in enumerate(layers):
            direct = patch_one_site(
                model, ids, layer, position, sources[layer][position], component
            )
            assert (swept[p_index, l_index] - direct).abs().max() < 1e-4, (position, layer)
    # a patch must matter somewhere, or the comparison above proves nothing
    clean = model(input_ids=ids[None], logits_to_keep=1).logits[0, -1]
    assert (swept - clean).abs().max() > 1e-3


@pytest.mark.parametrize(
    ("rows_at", "groups"),
    [
        ({3: 30, 4: 30}, [[3, 4]]),  # one more token for 30 rows beats a second forward
        ({3: 30, 4: 30, 5: 30}, [[3, 4], [5]]),  # two more tokens for 30 rows does not
        ({0: 2, 7: 2, 30: 2}, [[0, 7], [30]]),
        ({5: 1}, [[5]]),
    ],
)
def test_nearby_positions_share_a_batch_while_the_recomputed_tokens_cost_less_than_a_forward(
    rows_at, groups
):
    assert _position_groups(rows_at, pass_cost=48) == groups


def test_sites_of_the_shared_prefix_are_answered_by_the_clean_run_without_a_forward(tiny_llama):
    """Before the first differing token the counterfactual's activation is the clean one: those
    sites cost no forward beyond the one clean run, and their logits are its logits."""
    model, tokenizer = tiny_llama
    ids = torch.tensor(tokenizer("the cat sat on the mat").input_ids)
    cf_ids = torch.tensor(tokenizer("the cat sat on the hat").input_ids)
    first_difference = int((ids != cf_ids).nonzero()[0, 0])
    layers = list(range(model.config.num_hidden_layers))
    sources = capture_component(model, cf_ids, layers)
    runs = []
    handle = model.model.layers[0].register_forward_pre_hook(lambda *_: runs.append(1))
    try:
        swept = patch_sweep(model, ids, sources, list(range(first_difference + 1)))
    finally:
        handle.remove()
    assert len(runs) == 2  # the clean run, and one batch for the first differing position
    clean = model(input_ids=ids[None], logits_to_keep=1).logits[0, -1]
    assert torch.allclose(
        swept[:first_difference], clean.expand(first_difference, len(layers), -1), atol=1e-5
    )
    assert (swept[first_difference] - clean).abs().max() > 1e-3


def test_sweep_leaves_the_blocks_as_it_found_them(tiny_llama):
    """The residual sweep swaps each block's forward while it runs; a forward another tool had put
    on a block (nnsight does) is back afterwards, and a plain block has no instance forward left."""
    model, tokenizer = tiny_llama
    blocks = model.model.layers
    calls = []
    wrapped = blocks[1].forward

    def tool_forward(*args, **kwargs):
        calls.append(1)
        return wrapped(*args, **kwargs)

    blocks[1].forward = tool_forward
    try:
        ids = torch.tensor(tokenizer("the cat sat on the mat").input_ids)
        sources = capture_component(model, ids.flip(0), [0, 1])
        patch_sweep(model, ids, sources, [0, 2])
        assert blocks[1].forward is tool_forward and "forward" not in blocks[0].__dict__
        model(input_ids=ids[None])
        assert calls  # the tool's forward still runs
    finally:
        del blocks[1].forward


def test_block_patching_writes_the_blocks_mean_into_each_of_its_layers(tiny_llama):
    model, tokenizer = tiny_llama
    context = _context(model, tokenizer, layer_blocks=2)
    pair, rows = _usable_pair(model, tokenizer, context)
    assert layer_blocks([0, 1, 2, 3], 2) == [[0, 1], [2, 3]] and layer_blocks([0, 1, 2], 2) == [
        [0, 1],
        [2],
    ]
    assert {tuple(r["layers"]) for r in rows} == {(0, 1), (2, 3)} and {
        r["layer"] for r in rows
    } == {0, 2}
    ids = torch.tensor(tokenizer(pair["prompt"]).input_ids)
    captured = capture_component(
        model, torch.tensor(tokenizer(pair["counterfactual"]).input_ids), [0, 1, 2, 3]
    )
    for row in rows[:4]:
        mean = (captured[row["layers"][0]] + captured[row["layers"][1]])[row["position"]] / 2
        assert torch.allclose(torch.as_tensor(row["vector"]), mean, atol=1e-6)
        direct = patch_one_site(model, ids, row["layers"], row["position"], mean)
        assert int(direct.argmax()) == row["new_top1_id"]
    assert "layer 0-1" in PATCHING.format_query(rows[0]) or "layer 2-3" in PATCHING.format_query(
        rows[0]
    )
    assert f"(position {rows[0]['position']})" in PATCHING.format_query(rows[0])


def _context(model, tokenizer, **overrides):
    config = load_config(
        "tiny", ["task=patching", *[f"generate.{k}={v}" for k, v in overrides.items()]]
    )
    layers = config.generate.layers or list(range(model.config.num_hidden_layers))
    return GroundTruthContext(model, tokenizer, "tiny-llama", config.generate, layers)


def _usable_pair(model, tokenizer, context):
    for pair in templated_pairs(tokenizer, seed=0):
        pair.update(
            answer="", cf_answer=""
        )  # a random model knows no facts: check patching mechanics only
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
    cf_tokens = tokenizer(pair["counterfactual"]).input_ids
    orig_tokens = tokenizer(pair["prompt"]).input_ids
    first_diff = next(i for i, (a, b) in enumerate(zip(orig_tokens, cf_tokens)) if a != b)
    # sites before the first difference would write the clean value back: not emitted
    assert len(rows) == (n - first_diff) * model.config.num_hidden_layers
    assert len({r["record_id"] for r in rows}) == len(rows)
    sources = capture_component(model, torch.tensor(cf_tokens), context.layers)
    clean = capture_component(model, torch.tensor(orig_tokens), context.layers)
    for row in rows:
        assert torch.allclose(
            torch.as_tensor(row["vector"]), sources[row["layer"]][row["position"]]
        )
        assert not torch.allclose(
            torch.as_tensor(row["vector"]), clean[row["layer"]][row["position"]]
        )
        assert row["changed"] == (row["new_top1_id"] != row["orig_top1_id"])
        # what the row says patching does is what one full forward with that patch does (the
        # clean run shares a forward with the counterfactual's; the sweep starts from its cache)
        direct = patch_one_site(
            model,
            torch.tensor(orig_tokens),
            row["layer"],
            row["position"],
            sources[row["layer"]][row["position"]],
        )
        assert int(direct.argmax()) == row["new_top1_id"]
        assert (
            abs(float(direct[row["orig_top1_id"]] - direct[row["cf_top1_id"]]) - row["logit_diff"])
            < 1e-4
        )
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
    uneven = {
        "prompt": "the cat",
        "counterfactual": "the cat sat on the mat",
        "answer": "",
        "cf_answer": "",
        "relation": "user",
        "template": "",
        "entity": "a",
        "cf_entity": "b",
    }
    with pytest.raises(Rejected, match="different lengths"):
        patch_pair(uneven, context)
    wrong = dict(
        uneven,
        prompt="the cat sat on the mat and",
        counterfactual="the mat sat on the cat and",
        answer="zebra",
    )
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
    assert all(item["groups"]["entity"] == [item["entity"], item["cf_entity"]] for item in items)
    assert all(
        len(tokenizer(i["prompt"]).input_ids) == len(tokenizer(i["counterfactual"]).input_ids)
        for i in items
    )
    assert all(i["answer"] != i["cf_answer"] for i in items)


@pytest.mark.parametrize("length", [6, 12])  # inside, and past, the sliding window of 8
def test_gemma3_sweep_equals_a_full_forward_per_site_inside_and_past_its_sliding_window(length):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from selfexplain.models.patching import reaches_sliding_window

    config = Gemma3TextConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        sliding_window=8,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(config).eval()
    assert reaches_sliding_window(model, length) == (length >= 8)
    ids, cf_ids = torch.randint(0, 128, (length,)), torch.randint(0, 128, (length,))
    layers = [0, 1, 2]
    sources = capture_component(model, cf_ids, layers)
    positions = list(range(length))
    swept = patch_sweep(model, ids, sources, positions)
    for p_index, l_index in [(0, 0), (length // 2, 1), (length - 1, 2), (length - 2, 0)]:
        direct = patch_one_site(
            model, ids, layers[l_index], p_index, sources[layers[l_index]][p_index]
        )
        assert (swept[p_index, l_index] - direct).abs().max() < 1e-4
