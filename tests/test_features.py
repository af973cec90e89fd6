"""Feature sources: concept directions (fitting, quality, lexicon) and SAELens/Neuronpedia
import."""

import json
import math

import pytest
import torch

from selfexplain.config import ConfigError, load_config
from selfexplain.features.concepts import LexiconError, fit_direction, read_lexicon
from selfexplain.features.saelens import SAEFormatError, load_sae, read_explanations, write_saelens
from selfexplain.tasks import GroundTruthContext, Rejected
from selfexplain.tasks.features import FEATURES


def test_fit_direction_recovers_a_planted_direction_and_scores_noise_as_chance():
    torch.manual_seed(0)
    d = 16
    planted = torch.zeros(d)
    planted[3] = 1.0
    noise = lambda n: torch.randn(n, d) * 0.3  # noqa: E731
    fitted = fit_direction(noise(40) + 2 * planted, noise(40), noise(40) + 2 * planted, noise(40))
    assert fitted.accuracy == 1.0
    assert float(fitted.vector @ planted) > 0.95 and abs(fitted.vector.norm() - 1) < 1e-5
    assert abs(fitted.scale - 2.0) < 0.3
    chance = fit_direction(noise(40), noise(40), noise(400), noise(400))
    assert 0.35 < chance.accuracy < 0.65


def test_packaged_lexicon_is_large_and_varied():
    concepts = read_lexicon("concepts")
    assert len(concepts) >= 700  # 600 to train on and 100 held out, at the least
    kinds = {c.kind for c in concepts}
    assert {
        "places",
        "animals",
        "emotions",
        "syntax",
        "numbers",
        "code",
        "countries",
        "us-states",
        "words",
    } <= kinds
    word = next(c for c in concepts if c.kind == "words")  # token identity: one word, two casings
    assert (
        word.description == f"the word '{word.members[0]}'"
        and word.members[1] == word.members[0].capitalize()
    )
    assert all(c.description and len(c.members) >= 2 for c in concepts)


def test_bad_lexicon_lines_name_the_line(tmp_path):
    path = tmp_path / "lex.tsv"
    path.write_text("places\tfrance\tFrance\tParis|Lyon\nplaces\tjapan\tJapan\n")
    with pytest.raises(LexiconError, match=":2 has 3 tab-separated fields"):
        read_lexicon(str(path))


def _context(model, tokenizer, config):
    return GroundTruthContext(
        model,
        tokenizer,
        "tiny-llama",
        config.generate,
        config.generate.layers or list(range(model.config.num_hidden_layers)),
    )


@pytest.mark.parametrize("export_format", ["json", "jsonl"])
def test_saelens_and_neuronpedia_files_round_trip_into_feature_rows(
    tiny_llama, tmp_path, export_format
):
    model, tokenizer = tiny_llama
    d_model = model.config.hidden_size
    decoder = torch.randn(6, d_model)
    write_saelens(
        tmp_path / "sae",
        decoder,
        layer=2,
        model_name="tiny-llama",
        neuronpedia_id="tiny-llama/2-res-test",
    )
    explanations = [
        {
            "modelId": "tiny-llama",
            "layer": "2-res-test",
            "index": str(i),
            "description": f"feature {i} text",
        }
        for i in (0, 2, 5)
    ] + [{"modelId": "tiny-llama", "layer": "2-res-test", "index": "9", "description": "x"}]
    export = tmp_path / f"explanations.{export_format}"
    export.write_text(
        json.dumps(explanations)
        if export_format == "json"
        else "\n".join(json.dumps(e) for e in explanations)
    )

    sae = load_sae(str(tmp_path / "sae"))
    assert (
        sae.layer == 2
        and sae.sae_id == "tiny-llama/2-res-test"
        and torch.equal(sae.decoder, decoder)
    )
    assert read_explanations(str(export))[2] == "feature 2 text"

    config = load_config(
        "tiny",
        [
            "task=features",
            f"generate.features={tmp_path / 'sae'}",
            f"generate.explanations={export}",
        ],
    )
    items = FEATURES.work_items(config, tokenizer)
    assert [item["index"] for item in items] == [0, 2, 5, 9]
    context = _context(model, tokenizer, config)
    for item in items[:3]:
        (row,) = FEATURES.ground_truth(item, context)
        expected = decoder[item["index"]] / decoder[item["index"]].norm()
        assert torch.allclose(torch.as_tensor(row["vector"]), expected, atol=1e-6)
        assert row["description"] == f"feature {item['index']} text" and row["layer"] == 2
        assert row["feature_id"] == f"sae:tiny-llama/2-res-test:{item['index']}" and math.isnan(
            row["quality"]
        )
        assert len(row["top_contexts"]) == config.generate.top_contexts
        assert row["top_activations"] == sorted(row["top_activations"], reverse=True)
    with pytest.raises(Rejected, match="outside the SAE"):
        FEATURES.ground_truth(items[3], context)


def test_sae_import_errors_say_what_is_wrong(tmp_path, tiny_llama):
    _, tokenizer = tiny_llama
    write_saelens(tmp_path / "sae", torch.randn(3, 64), layer=1, model_name="m")
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    (tmp_path / "sae" / "cfg.json").write_text(
        json.dumps(dict(cfg, hook_name="blocks.1.attn.hook_z"))
    )
    with pytest.raises(SAEFormatError, match="not a residual-stream hook"):
        load_sae(str(tmp_path / "sae"))
    (tmp_path / "sae" / "cfg.json").write_text(json.dumps(cfg))
    config = load_config("tiny", ["task=features", f"generate.features={tmp_path / 'sae'}"])
    with pytest.raises(ConfigError, match="generate.explanations"):
        FEATURES.work_items(config, tokenizer)
    (tmp_path / "bad.jsonl").write_text('{"index": 1}\n')
    with pytest.raises(SAEFormatError, match="entry 1 needs"):
        read_explanations(str(tmp_path / "bad.jsonl"))


def test_concept_rows_keep_only_directions_that_generalize(tiny_llama):
    model, tokenizer = tiny_llama
    config = load_config(
        "tiny", ["task=features", "generate.max_items=12", "generate.min_probe_accuracy=0.75"]
    )
    context = _context(model, tokenizer, config)
    kept = rejected = 0
    for item in FEATURES.work_items(config, tokenizer):
        context.partial_rejects.clear()
        rows = FEATURES.ground_truth(item, context)
        # every layer is either kept or rejected with its measured accuracy, never dropped silently
        assert len(rows) + len(context.partial_rejects) == len(context.layers)
        assert all(
            "weak direction at layer" in reason and "min_probe_accuracy" in reason
            for reason in context.partial_rejects
        )
        kept, rejected = kept + len(rows), rejected + len(context.partial_rejects)
        for row in rows:
            assert row["quality"] >= 0.75 and row["description"] == item["description"]
            assert abs(float(torch.as_tensor(row["vector"]).norm()) - 1) < 1e-5
    assert kept > 0 and rejected > 0


def test_top_contexts_never_count_the_first_position(tiny_llama):
    from selfexplain.features.top_contexts import TextSetStreams
    from selfexplain.models.padding import padded_batch

    model, tokenizer = tiny_llama
    texts = ["The cat sat on the mat", "Salt and", "Once upon a"]
    streams = TextSetStreams(model, tokenizer, texts, [1])
    attended = padded_batch(tokenizer, texts, "cpu")["attention_mask"]
    first = attended.argmax(dim=1)  # the first attended column of each (left-padded) row
    mask = streams.masks[0]
    assert not mask[torch.arange(len(texts)), first].any()  # the attention sink never fires
    assert (
        mask.sum(dim=1).tolist() == (attended.sum(dim=1) - 1).tolist()
    )  # every token but the first
