"""Feature descriptions (the paper's task 1): a direction in the target's stream and what it encodes.

Two sources. ``concepts`` (the offline default) fits a direction per concept and layer from the
packaged lexicon (:mod:`selfexplain.features.concepts`), with the concept's description as ground
truth and its held-out probe accuracy as quality. A SAELens SAE directory takes decoder rows as
directions and Neuronpedia descriptions as ground truth (:mod:`selfexplain.features.saelens`).
Every feature also records its top-activating contexts from a shared text set.
"""

from __future__ import annotations

import math

import torch

from selfexplain.config import ConfigError
from selfexplain.corpus.schema import features_schema, stable_id
from selfexplain.explainer.templates import render, templates
from selfexplain.features import concepts as lexicon
from selfexplain.features.saelens import is_sae_dir, load_sae, read_explanations
from selfexplain.features.top_contexts import TextSetStreams, text_set
from selfexplain.tasks import GroundTruthContext, Rejected


def _text_streams(context: GroundTruthContext, layers: list[int]) -> TextSetStreams:
    key = ("text_set", tuple(layers))
    if key not in context.cache:
        concepts = lexicon.read_lexicon("concepts")
        context.cache[key] = TextSetStreams(context.model, context.tokenizer, text_set(concepts, 0), layers)
    return context.cache[key]


def _negatives(context: GroundTruthContext, source: str) -> tuple[list[tuple[str, str, bool]], dict[int, torch.Tensor]]:
    """The shared negative pool and its streams (fit frames then held-out frames per member)."""
    key = ("negatives", source)
    if key not in context.cache:
        pool = lexicon.negative_pool(lexicon.read_lexicon(source), seed=0)
        texts = [t for _, member, _ in pool for t in lexicon.contexts(member, lexicon.FIT_FRAMES + lexicon.HELD_OUT_FRAMES)]
        streams = lexicon.last_position_streams(context.model, context.tokenizer, texts, context.layers)
        context.cache[key] = (pool, streams)
    return context.cache[key]


def concept_rows(item: dict, context: GroundTruthContext) -> list[dict]:
    concept = lexicon.Concept(item["kind"], item["name"], item["description"], tuple(item["members"]))
    fit_members, held_members = concept.split_members()
    frames = lexicon.FIT_FRAMES + lexicon.HELD_OUT_FRAMES
    members = fit_members + held_members
    texts = [t for member in members for t in lexicon.contexts(member, frames)]
    # A context is a fit example only when both its member and its frame are fit ones.
    is_fit = torch.tensor([m in fit_members and f in lexicon.FIT_FRAMES for m in members for f in frames])
    streams = lexicon.last_position_streams(context.model, context.tokenizer, texts, context.layers)

    pool, pool_streams = _negatives(context, item["source"])
    per_member = len(frames)
    neg_fit, neg_test = [], []
    for index, (name, _member, held_out) in enumerate(pool):
        if name == concept.name:
            continue
        rows = range(index * per_member, (index + 1) * per_member)
        if held_out:
            neg_test.extend(rows)
        else:
            neg_fit.extend(r for r in rows if r % per_member < len(lexicon.FIT_FRAMES))

    text_streams = _text_streams(context, context.layers)
    out = []
    for layer in context.layers:
        positives = streams[layer]
        if not torch.isfinite(positives).all():
            raise Rejected(f"non-finite activation at layer {layer}")
        fitted = lexicon.fit_direction(positives[is_fit], pool_streams[layer][neg_fit],
                                       positives[~is_fit], pool_streams[layer][neg_test])
        if fitted.accuracy < context.options.min_probe_accuracy:
            context.reject_part(f"weak direction at layer {layer} (held-out probe accuracy {fitted.accuracy:.2f} "
                                f"< generate.min_probe_accuracy={context.options.min_probe_accuracy})")
            continue
        top_texts, top_values = text_streams.top(layer, fitted.vector, context.options.top_contexts)
        out.append(_row(context, "concepts", f"concept:{concept.name}", concept.kind, concept.name, layer,
                        fitted.vector, fitted.scale, concept.description, fitted.accuracy, top_texts, top_values))
    return out


def sae_rows(item: dict, context: GroundTruthContext) -> list[dict]:
    key = ("sae", item["sae"])
    if key not in context.cache:
        context.cache[key] = load_sae(item["sae"])
    sae = context.cache[key]
    index = item["index"]
    if not 0 <= index < sae.decoder.shape[0]:
        raise Rejected(f"feature index {index} is outside the SAE (d_sae={sae.decoder.shape[0]})")
    d_model = context.model.config.hidden_size
    if sae.decoder.shape[1] != d_model:
        raise Rejected(f"SAE width {sae.decoder.shape[1]} does not match the target's hidden size {d_model}")
    raw = sae.decoder[index]
    if not torch.isfinite(raw).all():
        raise Rejected("non-finite decoder row")
    scale = float(raw.norm())
    vector = raw / max(scale, 1e-12)
    top_texts, top_values = _text_streams(context, [sae.layer]).top(sae.layer, vector, context.options.top_contexts)
    return [_row(context, "saelens", f"sae:{sae.sae_id}:{index}", sae.sae_id, str(index), sae.layer, vector,
                 scale, item["description"], math.nan, top_texts, top_values)]


def _row(context, source, feature_id, kind, name, layer, vector, scale, description, quality, top_texts, top_values):
    return {
        "record_id": stable_id(context.target_name, "features", feature_id, layer),
        "feature_id": feature_id, "target_model": context.target_name, "source": source, "kind": kind,
        "name": name, "layer": layer, "vector": vector.float().numpy(), "scale": scale,
        "description": description, "quality": quality, "top_contexts": top_texts,
        "top_activations": [float(v) for v in top_values],
    }


def format_query(row: dict) -> str:
    return render("features", row["record_id"], row.get("template_variant"), layer=row["layer"])


def format_answer(row: dict) -> str:
    return f" {row['description']}"


def parse_answer(text: str) -> str:
    """The description: the first line of the answer."""
    return text.strip().split("\n", 1)[0].strip()


class FeaturesTask:
    name = "features"
    vector_input = True
    query_templates = len(templates("features"))
    format_query = staticmethod(format_query)
    format_answer = staticmethod(format_answer)
    parse_answer = staticmethod(parse_answer)

    def schema(self, d_model: int):
        return features_schema(d_model)

    def work_items(self, config, tokenizer) -> list[dict]:
        source = config.generate.features
        if is_sae_dir(source):
            sae = load_sae(source)  # fail on the driver, before any actor starts
            if not config.generate.explanations:
                raise ConfigError(f"generate.features={source} is an SAE; set generate.explanations to its "
                                  "Neuronpedia export (.json/.jsonl) so each feature has a description")
            descriptions = read_explanations(config.generate.explanations)
            items = [{"sae": str(sae.path.resolve()), "index": index, "description": text,
                      "groups": {"feature": f"sae:{sae.sae_id}:{index}", "kind": sae.sae_id}}
                     for index, text in sorted(descriptions.items())]
        else:
            items = [{"source": source, "kind": c.kind, "name": c.name, "description": c.description,
                      "members": list(c.members), "groups": {"feature": f"concept:{c.name}", "kind": c.kind}}
                     for c in lexicon.read_lexicon(source)]
        return items[: config.generate.max_items] if config.generate.max_items else items

    def ground_truth(self, item: dict, context: GroundTruthContext) -> list[dict]:
        return sae_rows(item, context) if "sae" in item else concept_rows(item, context)

    def held_out_unit(self, row: dict) -> str:
        """The cluster a query is resampled with: its feature (one row per layer)."""
        return row["feature_id"]


FEATURES = FeaturesTask()
