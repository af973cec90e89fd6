"""Feature descriptions (the paper's task 1): a direction in the target's stream and what it
encodes.

Two sources. ``concepts`` (the offline default) fits a direction per concept and layer from the
packaged lexicon (:mod:`selfexplain.features.concepts`), with the concept's description as ground
truth and its held-out probe accuracy as quality. A SAELens SAE directory takes decoder rows as
directions and Neuronpedia descriptions as ground truth (:mod:`selfexplain.features.saelens`).
Every feature also records its top-activating contexts from a shared text set.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from selfexplain.corpus.schema import schema_field, stable_id, vector_type
from selfexplain.errors import ConfigError
from selfexplain.explainer.templates import render, templates
from selfexplain.features import concepts as lexicon
from selfexplain.features.saelens import is_sae_dir, load_sae, read_explanations
from selfexplain.features.top_contexts import TextSetStreams, text_set
from selfexplain.models.architectures import hidden_size
from selfexplain.scoring.baselines import nearest_training_rows
from selfexplain.scoring.embeddings import (
    detection_auroc,
    negative_contexts,
    retrieval_hits,
    similarity,
)
from selfexplain.scoring.metrics import description_outcomes, score_descriptions
from selfexplain.tasks import GroundTruthContext, QueryContext, QueryError, Rejected, ScoringContext


def features_schema(d_model: int) -> pa.Schema:
    return pa.schema(
        [
            schema_field(
                "record_id", pa.string(), "hash of target model, task, feature id and layer"
            ),
            schema_field("feature_id", pa.string(), "concept:<name> or sae:<sae id>:<index>"),
            schema_field("split", pa.string(), "train or test (held out by generate.held_out_by)"),
            schema_field("target_model", pa.string()),
            schema_field("source", pa.string(), "concepts or saelens"),
            schema_field(
                "kind", pa.string(), "concept kind (places, emotions, code...) or the SAE id"
            ),
            schema_field("name", pa.string(), "concept name or feature index"),
            schema_field(
                "layer", pa.int32(), "decoder block whose output stream the direction lives in"
            ),
            schema_field("vector", vector_type(d_model), "unit-norm feature direction"),
            schema_field(
                "scale",
                pa.float32(),
                "norm of the raw direction (difference of means, or decoder row)",
            ),
            schema_field("description", pa.string(), "the ground-truth description"),
            schema_field(
                "quality",
                pa.float32(),
                "held-out probe accuracy of a concept direction (NaN for SAE features)",
                nullable=True,
            ),
            schema_field(
                "top_contexts",
                pa.list_(pa.string()),
                "texts from the text set where the feature fires most",
            ),
            schema_field(
                "top_activations",
                pa.list_(pa.float32()),
                "max projection on the direction over each context's tokens",
            ),
        ],
        metadata={"d_model": str(d_model)},
    )


def _text_streams(context: GroundTruthContext, layers: list[int]) -> TextSetStreams:
    key = ("text_set", tuple(layers))
    if key not in context.cache:
        concepts = lexicon.read_lexicon("concepts")
        context.cache[key] = TextSetStreams(
            context.model, context.tokenizer, text_set(concepts, 0), layers
        )
    return context.cache[key]


def _negatives(
    context: GroundTruthContext, source: str
) -> tuple[list[tuple[str, str, bool]], dict[int, torch.Tensor]]:
    """The shared negative pool and its streams (fit frames then held-out frames per member)."""
    key = ("negatives", source)
    if key not in context.cache:
        pool = lexicon.negative_pool(lexicon.read_lexicon(source), seed=0)
        texts = [
            t
            for _, member, _ in pool
            for t in lexicon.contexts(member, lexicon.FIT_FRAMES + lexicon.HELD_OUT_FRAMES)
        ]
        streams = lexicon.last_position_streams(
            context.model, context.tokenizer, texts, context.layers
        )
        context.cache[key] = (pool, streams)
    return context.cache[key]


def _negative_rows(pool, concept: str, per_member: int) -> tuple[list[int], list[int]]:
    """Rows of the negatives' streams, other concepts only: (fit rows, in fit members and fit
    frames; held-out rows, every frame of a held-out member)."""
    neg_fit, neg_test = [], []
    for index, (name, _member, held_out) in enumerate(pool):
        if name == concept:
            continue
        rows = range(index * per_member, (index + 1) * per_member)
        if held_out:
            neg_test.extend(rows)
        else:
            neg_fit.extend(r for r in rows if r % per_member < len(lexicon.FIT_FRAMES))
    return neg_fit, neg_test


def concept_rows(item: dict, context: GroundTruthContext) -> list[dict]:
    concept = lexicon.Concept(
        item["kind"], item["name"], item["description"], tuple(item["members"])
    )
    fit_members, held_members = concept.split_members()
    frames = lexicon.FIT_FRAMES + lexicon.HELD_OUT_FRAMES
    members = fit_members + held_members
    texts = [t for member in members for t in lexicon.contexts(member, frames)]
    # A context is a fit example only when both its member and its frame are fit ones.
    is_fit = torch.tensor(
        [m in fit_members and f in lexicon.FIT_FRAMES for m in members for f in frames]
    )
    streams = lexicon.last_position_streams(context.model, context.tokenizer, texts, context.layers)

    pool, pool_streams = _negatives(context, item["source"])
    neg_fit, neg_test = _negative_rows(pool, concept.name, len(frames))
    text_streams = _text_streams(context, context.layers)
    out = []
    for layer in context.layers:
        positives = streams[layer]
        if not torch.isfinite(positives).all():
            raise Rejected(f"non-finite activation at layer {layer}")
        fitted = lexicon.fit_direction(
            positives[is_fit],
            pool_streams[layer][neg_fit],
            positives[~is_fit],
            pool_streams[layer][neg_test],
        )
        if fitted.accuracy < context.options.min_probe_accuracy:
            context.reject_part(
                f"weak direction at layer {layer} (held-out probe accuracy {fitted.accuracy:.2f} "
                f"< generate.min_probe_accuracy={context.options.min_probe_accuracy})"
            )
            continue
        top_texts, top_values = text_streams.top(layer, fitted.vector, context.options.top_contexts)
        out.append(
            _row(
                context,
                "concepts",
                f"concept:{concept.name}",
                concept.kind,
                concept.name,
                layer,
                fitted.vector,
                fitted.scale,
                concept.description,
                fitted.accuracy,
                top_texts,
                top_values,
            )
        )
    return out


def sae_rows(item: dict, context: GroundTruthContext) -> list[dict]:
    key = ("sae", item["sae"])
    if key not in context.cache:
        context.cache[key] = load_sae(item["sae"])
    sae = context.cache[key]
    index = item["index"]
    if not 0 <= index < sae.decoder.shape[0]:
        raise Rejected(f"feature index {index} is outside the SAE (d_sae={sae.decoder.shape[0]})")
    d_model = hidden_size(context.model)
    if sae.decoder.shape[1] != d_model:
        raise Rejected(
            f"SAE width {sae.decoder.shape[1]} does not match the target's hidden size {d_model}"
        )
    raw = sae.decoder[index]
    if not torch.isfinite(raw).all():
        raise Rejected("non-finite decoder row")
    scale = float(raw.norm())
    vector = raw / max(scale, 1e-12)
    top_texts, top_values = _text_streams(context, [sae.layer]).top(
        sae.layer, vector, context.options.top_contexts
    )
    return [
        _row(
            context,
            "saelens",
            f"sae:{sae.sae_id}:{index}",
            sae.sae_id,
            str(index),
            sae.layer,
            vector,
            scale,
            item["description"],
            math.nan,
            top_texts,
            top_values,
        )
    ]


def _row(
    context,
    source,
    feature_id,
    kind,
    name,
    layer,
    vector,
    scale,
    description,
    quality,
    top_texts,
    top_values,
):
    return {
        "record_id": stable_id(context.target_name, "features", feature_id, layer),
        "feature_id": feature_id,
        "target_model": context.target_name,
        "source": source,
        "kind": kind,
        "name": name,
        "layer": layer,
        "vector": vector.float().numpy(),
        "scale": scale,
        "description": description,
        "quality": quality,
        "top_contexts": top_texts,
        "top_activations": [float(v) for v in top_values],
    }


# Concept kinds of the lexicon `make data` builds, each reported apart from the hand-written ones.
GENERATED_FAMILIES = ("words", "countries", "us-states")

# Retrieval picks the description's feature out of this many candidates (chance: 1 in 5).
RETRIEVAL_CANDIDATES = 5
SAME_FAMILY = "same-family baseline (another concept's description)"


def same_family_descriptions(rows: list[dict], train_rows: list[dict]) -> list[str]:
    """Per query, the description of a training feature of the same kind but another concept
    (picked by a hash of the query, so the same in every run): the floor that a family's shared
    wording gives any description of it (two countries' descriptions are alike), which a
    nearest neighbour collects without reading the vector."""
    by_kind: dict[str, list[str]] = {}
    for row in train_rows:
        by_kind.setdefault(row["kind"], []).append(row["description"])
    pools = {kind: sorted(set(texts)) for kind, texts in by_kind.items()}
    everything = sorted({row["description"] for row in train_rows})
    out = []
    for row in rows:
        pool = [
            text for text in pools.get(row["kind"], everything) if text != row["description"]
        ] or everything
        out.append(pool[int(stable_id(row["record_id"], "same-family"), 16) % len(pool)])
    return out


class FeaturesTask:
    name = "features"
    vector_input = True
    query_templates = len(templates("features"))
    held_out_by = ("feature", "kind")
    unit_name = "features"
    query_fields = {"vector": (list, str, np.ndarray), "layer": int}
    headline_metric = "similarity"
    per_query_metric = "similarity"
    answers_are_free_text = True
    selfie_baseline = True  # the untrained target reading its own vector (SelfIE) is a baseline

    def schema(self, d_model: int) -> pa.Schema:
        return features_schema(d_model)

    def work_items(self, config, tokenizer) -> list[dict]:
        source = config.generate.features
        if is_sae_dir(source):
            sae = load_sae(source)  # fail on the driver, before any actor starts
            if not config.generate.explanations:
                raise ConfigError(
                    f"generate.features={source} is an SAE; set generate.explanations to its "
                    "Neuronpedia export (.json/.jsonl) so each feature has a description"
                )
            descriptions = read_explanations(config.generate.explanations)
            items = [
                {
                    "sae": str(sae.path.resolve()),
                    "index": index,
                    "description": text,
                    "groups": {"feature": f"sae:{sae.sae_id}:{index}", "kind": sae.sae_id},
                }
                for index, text in sorted(descriptions.items())
            ]
        else:
            items = [
                {
                    "source": source,
                    "kind": c.kind,
                    "name": c.name,
                    "description": c.description,
                    "members": list(c.members),
                    "groups": {"feature": f"concept:{c.name}", "kind": c.kind},
                }
                for c in lexicon.read_lexicon(source)
            ]
        return items[: config.generate.max_items] if config.generate.max_items else items

    def ground_truth(self, item: dict, context: GroundTruthContext) -> list[dict]:
        return sae_rows(item, context) if "sae" in item else concept_rows(item, context)

    def held_out_unit(self, row: dict) -> str:
        """The cluster a query is resampled with: its feature (one row per layer)."""
        return row["feature_id"]

    def family(self, row: dict) -> str:
        """Token-identity words, the generated place families, or the hand-written lexicon's
        categories (``make data``; an SAE's features are one family)."""
        return (
            row["kind"]
            if row["kind"] in GENERATED_FAMILIES
            else "categories"
            if row["source"] == "concepts"
            else "sae"
        )

    def format_query(self, row: dict) -> str:
        return render("features", row, layer=row["layer"])

    def format_answer(self, row: dict) -> str:
        return f" {row['description']}"

    def parse_answer(self, text: str) -> str:
        """The description: the first line of the answer."""
        return text.strip().split("\n", 1)[0].strip()

    def query_row(self, query: dict, context: QueryContext) -> dict:
        """The vector, checked: finite, non-zero, of the target's width, at a trained layer."""
        vector = query["vector"]
        if isinstance(vector, str):
            path = Path(vector)
            if not path.is_file():
                raise QueryError(
                    f"vector file {path} not found; give a .npy file holding one 1-D vector"
                )
            try:
                vector = np.load(path, allow_pickle=False)  # never unpickle a user file
            except (ValueError, OSError) as err:
                raise QueryError(
                    f"vector file {path} is not a .npy array ({err}); save it with numpy.save"
                ) from None
        try:
            vector = np.asarray(vector, dtype=np.float32)
        except (TypeError, ValueError):
            raise QueryError("'vector' must be a list of numbers or a .npy path") from None
        if vector.ndim != 1 or (context.width and vector.shape[0] != context.width):
            raise QueryError(
                f"'vector' has shape {tuple(vector.shape)}; this explainer reads vectors of "
                f"{context.width} numbers (the target's hidden size)"
            )
        if not np.isfinite(vector).all():
            raise QueryError("'vector' holds NaN or infinite values; give a finite direction")
        if not np.any(vector):
            raise QueryError("'vector' is all zeros: a zero direction has nothing to describe")
        if context.layers and query["layer"] not in context.layers:
            raise QueryError(
                f"'layer' {query['layer']!r}: this explainer was trained on layers "
                f"{list(context.layers)}"
            )
        return {**query, "vector": vector}

    def baselines(self, rows: list[dict], context: ScoringContext) -> dict[str, list]:
        """The description of the nearest training vector (of the same layer), as the paper's."""
        if not context.train_rows:
            raise ValueError(
                "the training split is empty; the nearest-neighbour baseline needs training rows"
            )
        nearest = nearest_training_rows(self, context.train_rows, rows)
        return {
            "nearest-neighbour baseline": [context.train_rows[i]["description"] for i in nearest],
            SAME_FAMILY: same_family_descriptions(rows, context.train_rows),
        }

    def candidate_answers(self, rows: list[dict], context: ScoringContext) -> None:
        return None  # an untrained explainer describes in free text

    def score(
        self, rows: list[dict], answers: dict[str, list], context: ScoringContext
    ) -> dict[str, dict]:
        """Word-level and meaning-level scores; detection uses the rows' top-activating contexts
        against contexts of the other features in the same query set."""
        references = [r["description"] for r in rows]
        positives = [[] if r.get("top_contexts") is None else list(r["top_contexts"]) for r in rows]
        negatives = negative_contexts(
            [r["feature_id"] for r in rows],
            positives,
            per_query=max(map(len, positives)),
            seed=context.seed,
        )
        # distractors for retrieval: every feature description of the corpus, seen in training or
        # not
        distractors = list(context.corpus["description"])
        units = [self.held_out_unit(r) for r in rows]
        results = {}
        for name, predicted in answers.items():
            semantic = {
                "similarity": similarity(predicted, references),
                "retrieval_accuracy": retrieval_hits(
                    predicted,
                    references,
                    k=RETRIEVAL_CANDIDATES,
                    seed=context.seed,
                    distractors=distractors,
                ),
            }
            if any(positives):
                semantic["detection_auroc"] = detection_auroc(predicted, positives, negatives)
            results[name] = score_descriptions(
                predicted, references, semantic, groups=units, intervals=True, seed=context.seed
            )
        return results

    def per_query(self, rows: list[dict], answers: dict[str, list]) -> dict[str, list]:
        references = [r["description"] for r in rows]
        columns = {}
        for name, predicted in answers.items():
            outcomes = description_outcomes(predicted, references)
            columns[f"similarity: {name}"] = similarity(predicted, references).tolist()
            columns[f"word_f1: {name}"] = outcomes["word_f1"].tolist()
            columns[f"exact: {name}"] = outcomes["exact"].astype(float).tolist()
        return columns


FEATURES = FeaturesTask()
