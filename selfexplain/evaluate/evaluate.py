"""Score an explainer on the held-out split, next to the majority and untrained baselines.

Each explainer is decoded in its own Ray task, so the trained and the untrained explainer run
side by side (on a cluster, on GPU workers). Per-example predictions are kept in
``predictions.parquet``, so a surprising number can be traced to the answers behind it.
"""

from __future__ import annotations

import json
import logging
from collections import Counter

import pandas as pd
import pyarrow as pa
import ray

from selfexplain.config import ConfigError, RunConfig
from selfexplain.corpus.io import read_corpus
from selfexplain.corpus.subsets import is_in_distribution_query, rows_trained_on
from selfexplain.evaluate.baselines import (RULE_NAMES, majority_answer, nearest_rows, neighbour_answer,
                                            original_output, rule_answer)
from selfexplain.evaluate.embeddings import detection_auroc, embed, negative_contexts, retrieval_hits, similarity
from selfexplain.evaluate.metrics import change_outcomes, score_change_predictions, score_descriptions
from selfexplain.explainer.interface import INTERFACE, VectorInterface
from selfexplain.evaluate.report import markdown_table
from selfexplain.evaluate.selfie import best_scale, selfie_answers
from selfexplain.models.loading import resolve_model_dir
from selfexplain.provenance import versions
from selfexplain.storage import Location, parquet_bytes
from selfexplain.tasks import get_task
from selfexplain.tasks.change_answers import ChangeAnswer, format_change, truth_of
from selfexplain.train.loop import EXPLAINER_INFO
from selfexplain.train.trainer import export_location, has_export

log = logging.getLogger(__name__)

# Retrieval picks the description's feature out of this many candidates (chance: 1 in 5).
RETRIEVAL_CANDIDATES = 5


@ray.remote
def explain_rows(task_name: str, model_ref: str, rows: list[dict], batch_size: int,
                 max_new_tokens: int, use_gpu: bool, trust_remote_code: bool, interface: VectorInterface | None = None,
                 candidates: list[list[str]] | None = None) -> list[str]:
    """The explainer's answer to each row's query: decoded greedily, or with ``candidates`` the
    candidate answer it finds most likely."""
    import torch

    from selfexplain.evaluate.generation import generate_answers
    from selfexplain.explainer.export import load_explainer
    from selfexplain.explainer.vectors import vector_batch
    from selfexplain.train.loop import with_vector_input

    device = "cuda" if use_gpu and torch.cuda.is_available() else "cpu"
    model, tokenizer = load_explainer(model_ref, device=device, trust_remote_code=trust_remote_code)
    task = get_task(task_name)
    vectors = layers = None
    if task.vector_input:
        if interface is not None and not hasattr(model, "interface"):
            # the untrained base model reads vectors through the same interface, untrained
            # (SelfIE/Patchscopes-style zero-shot reading)
            torch.manual_seed(0)
            model = with_vector_input(model, tokenizer, interface).to(device).eval()
        vectors, layers = vector_batch(rows)
    queries = [task.format_query(r) for r in rows]
    if candidates is not None:
        from selfexplain.evaluate.likelihood import most_likely

        return most_likely(model, tokenizer, queries, candidates, batch_size, vectors, layers)
    return generate_answers(model, tokenizer, queries, batch_size, max_new_tokens, vectors, layers)


QUERY_SETS = ("held-out", "in-distribution")
# What one held-out unit is, per task (the clusters the intervals resample; see Task.held_out_unit).
UNIT_NAMES = {"ablation": "prompt families", "hint": "questions", "patching": "entity pairs", "features": "features"}


class EmptyHeldOutSplit(ValueError):
    """A corpus has no held-out queries (too few items, or all held-out ones rejected)."""


def query_rows(config: RunConfig) -> dict[str, list[dict]]:
    """The queries scored: the held-out split (new prompt families, concepts, entities), and
    training-split rows that were kept out of training (seen groups, unseen rows); each passes
    the training length filter, and is capped and sampled deterministically."""
    from selfexplain.train.examples import LengthFilter

    corpus = read_corpus(config.corpus_dir).to_pandas()
    length_filter = LengthFilter(config.target, get_task(config.task),
                                 config.train.max_length, config.trust_remote_code)
    corpus = corpus[[length_filter.fits(row) for row in corpus.to_dict("records")]]
    test = corpus[corpus["split"] == "test"]
    if test.empty:
        raise EmptyHeldOutSplit(f"the held-out split of {config.corpus_dir} is empty; raise "
                                "generate.held_out_fraction or generate.max_items (more items, more groups)")
    holdout = config.train.in_distribution_holdout
    seen = corpus[(corpus["split"] == "train") & corpus["record_id"].map(
        lambda i: is_in_distribution_query(i, holdout, config.seed))]
    sets = {}
    for name, frame in zip(QUERY_SETS, (test, seen)):
        if config.evaluate.max_examples and len(frame) > config.evaluate.max_examples:
            frame = frame.sample(n=config.evaluate.max_examples, random_state=config.seed)
        sets[name] = frame.sort_values("record_id").to_dict("records")
    return sets


def training_rows(config: RunConfig) -> list[dict]:
    """The rows the explainer was trained on (what the memorizing baselines may look at)."""
    t = config.train
    return rows_trained_on(read_corpus(config.corpus_dir, split="train"), t.in_distribution_holdout,
                           t.data_fraction, config.seed).to_pylist()


def evaluate_run(config: RunConfig) -> dict[str, dict[str, dict[str, float]]]:
    """Score a run's explainer on every corpus it trained on: ``{task: held-out results}`` for one
    corpus; for a task mix ``{run: held-out results}``, one scoring per mixed corpus, each written
    to ``<run>/evaluate/<corpus run>/``."""
    if not config.train.mix:
        return {config.task: evaluate(config)}
    import dataclasses

    from selfexplain.config import GenerateConfig, from_dict
    from selfexplain.train.mixture import corpus_sources

    results = {}
    for source in corpus_sources(config):
        made_with = from_dict(GenerateConfig, source.manifest["config"]["generate"])
        # this run's explainer and settings, scored as if it were a run on that corpus alone
        alone = dataclasses.replace(config, task=source.task, corpus_from=source.run, generate=made_with,
                                    train=dataclasses.replace(config.train, mix={}))
        log.info("scoring the mixed explainer on %s (%s)", source.run, source.task)
        try:
            results[source.run] = evaluate(alone, out_dir=config.run_dir / "evaluate" / source.run)
        except EmptyHeldOutSplit as err:  # the other corpora's scores are still worth having
            log.warning("not scored on %s: %s", source.run, err)
    if not results:
        raise EmptyHeldOutSplit(f"no corpus of train.mix has held-out queries ({', '.join(config.train.mix)})")
    return results


def evaluate(config: RunConfig, out_dir: Location | None = None) -> dict[str, dict[str, float]]:
    """Write results.json, results.md and predictions.parquet to the run folder (or ``out_dir``);
    return the held-out results (``results.json`` also holds the in-distribution ones)."""
    task = get_task(config.task)
    export = Location(config.evaluate.explainer) if config.evaluate.explainer else export_location(config)
    if not has_export(export):
        hint = "check evaluate.explainer" if config.evaluate.explainer else "run `selfexplain train` first"
        raise FileNotFoundError(f"no trained explainer at {export}; {hint}")
    local_export = resolve_model_dir(export.uri)  # the driver's copy, for the small files
    info_file = local_export / EXPLAINER_INFO
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    trained_for = info.get("tasks") or ([info["task"]] if "task" in info else [])
    if trained_for and config.task not in trained_for:
        raise ConfigError(f"the explainer at {export} was trained for {' and '.join(trained_for)}, not "
                         f"{config.task!r}; score it on a corpus of {' or '.join(trained_for)}")
    sets = query_rows(config)
    rows = [r for name in QUERY_SETS for r in sets[name]]
    interface_file = local_export / INTERFACE
    interface = VectorInterface.read(interface_file) if interface_file.is_file() else None
    # references, resolved by each task on its node (an s3:// export is copied there once)
    explainers = {"trained explainer": export.uri}
    if config.evaluate.untrained_baseline:
        explainers["untrained explainer"] = config.explainer_ref
    use_gpu = config.train.use_gpu
    train_rows = training_rows(config)
    # the untrained model picks among well-formed answers (free text from it never parses)
    untrained_candidates = None if config.task == "features" else candidate_answers(train_rows, rows)
    budget = config.evaluate.max_new_tokens or answer_budget(str(local_export), task, train_rows + rows,
                                                             config.trust_remote_code)
    pending = {
        name: explain_rows.options(num_cpus=1, num_gpus=1 if use_gpu else 0).remote(
            config.task, folder, rows, config.evaluate.batch_size, budget, use_gpu,
            config.trust_remote_code, interface, untrained_candidates if name == "untrained explainer" else None)
        for name, folder in explainers.items()
    }
    log.info("decoding %d queries (%s) with %d explainers", len(rows),
             ", ".join(f"{len(v)} {k}" for k, v in sets.items()), len(pending))
    selfie = None
    if (task.name == "features" and config.evaluate.untrained_baseline and config.evaluate.selfie_scales
            and config.explainer_ref == config.target):
        # the untrained target reads its own vectors (baselines come from the self-explainer's run)
        selfie = selfie_answers.options(num_cpus=1, num_gpus=1 if use_gpu else 0).remote(
            config.target, rows, list(config.evaluate.selfie_scales),
            config.evaluate.batch_size, budget, use_gpu, config.trust_remote_code)
    texts = {name: ray.get(ref) for name, ref in pending.items()}
    if selfie is not None:
        texts.update(_best_selfie(ray.get(selfie), sets))
    baseline_answers = (_description_baselines if config.task == "features" else _change_baselines)(
        config, task, train_rows, rows)
    parsed = {**baseline_answers, **{name: [task.parse_answer(t) for t in answers] for name, answers in texts.items()}}

    results, offset = {}, 0
    for name in QUERY_SETS:
        part = slice(offset, offset + len(sets[name]))
        offset += len(sets[name])
        if sets[name]:
            score = _score_descriptions if config.task == "features" else _score_changes
            results[name] = score(config, sets[name], {k: v[part] for k, v in parsed.items()})
    _save(config, out_dir or config.run_dir, rows, sets, texts, results, _per_query(config, rows, parsed))
    return results["held-out"]


def _per_query(config: RunConfig, rows: list[dict], answers: dict[str, list]) -> dict[str, list]:
    """Per-query outcomes of every system, kept in predictions.parquet so that systems scored on
    the same queries (self and other in a study) can be compared pair by pair."""
    if config.task == "features":
        references = [r["description"] for r in rows]
        return {f"similarity: {name}": similarity(predicted, references).tolist() for name, predicted in answers.items()}
    truth = [truth_of(r) for r in rows]
    columns = {}
    for name, predicted in answers.items():
        outcomes = change_outcomes(predicted, truth)
        for metric in ("exact", "content", "correct"):
            columns[f"{metric}: {name}"] = outcomes[metric].tolist()
    return columns


def _best_selfie(by_scale: dict[float, list[str]], sets: dict[str, list[dict]]) -> dict[str, list[str]]:
    """SelfIE at the scale with the best held-out similarity (an upper bound: chosen on the test)."""
    held = len(sets["held-out"])
    references = [r["description"] for r in sets["held-out"]]
    scale = best_scale(by_scale, lambda answers: float(similarity(
        [a.strip().split("\n", 1)[0] for a in answers[:held]], references).mean()))
    return {f"SelfIE (untrained target, best scale x{scale:g}; upper bound)": by_scale[scale]}


def answer_budget(tokenizer_dir: str, task, rows: list[dict], trust_remote_code: bool = False) -> int:
    """Tokens to decode per answer: the longest ground-truth answer of the corpus rows in the
    explainer's tokenizer, plus a margin, so no well-formed answer is cut (a long SAE description,
    or the change form in a small vocabulary) and no decode runs far past one."""
    from selfexplain.models.loading import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir, trust_remote_code)
    longest = max(len(tokenizer(task.format_answer(r), add_special_tokens=False)["input_ids"]) for r in rows)
    return longest + ANSWER_MARGIN


ANSWER_MARGIN = 4
CANDIDATE_OUTPUTS = 3


def candidate_answers(train_rows: list[dict], rows: list[dict]) -> list[list[str]]:
    """Per query: "unchanged from <<<its original output>>>" and "change to <<<Y>>>" for the
    most common new outputs of changed training rows (the untrained explainer's choices)."""
    common = Counter(truth_of(r).output for r in train_rows if r["changed"])
    outputs = [output for output, _ in common.most_common(CANDIDATE_OUTPUTS)]
    answers = []
    for row in rows:
        original = original_output(row)
        options = [ChangeAnswer(False, original)] + [ChangeAnswer(True, y) for y in outputs if y != original]
        answers.append([format_change(option) for option in options])
    return answers


def _change_baselines(config: RunConfig, task, train_rows: list[dict], rows: list[dict]) -> dict[str, list]:
    """Majority, nearest training example (by vector, among rows of the same layer, or by the
    query's meaning for text tasks), and the task's rule where it has one."""
    if not train_rows:
        raise ValueError("the training split is empty; the baselines need training rows")
    baselines = {"majority baseline": [majority_answer(train_rows, r) for r in rows]}
    if task.vector_input:
        nearest = nearest_rows([r["vector"] for r in train_rows], [r["vector"] for r in rows],
                               [r["layer"] for r in train_rows], [r["layer"] for r in rows])
    else:
        nearest = nearest_rows(embed([task.format_query(r) for r in train_rows]), embed([task.format_query(r) for r in rows]))
    baselines["nearest-neighbour baseline"] = [neighbour_answer(train_rows[i], r) for i, r in zip(nearest, rows)]
    num_layers = 1 + max((r.get("layer", 0) for r in train_rows), default=0)
    if config.task in RULE_NAMES:
        baselines[RULE_NAMES[config.task]] = [rule_answer(config.task, r, num_layers) for r in rows]
    return baselines


def _description_baselines(config: RunConfig, task, train_rows: list[dict], rows: list[dict]) -> dict[str, list]:
    if not train_rows:
        raise ValueError("the training split is empty; the nearest-neighbour baseline needs training rows")
    nearest = nearest_rows([r["vector"] for r in train_rows], [r["vector"] for r in rows],
                           [r["layer"] for r in train_rows], [r["layer"] for r in rows])
    return {"nearest-neighbour baseline": [train_rows[i]["description"] for i in nearest]}


def _score_changes(config: RunConfig, rows: list[dict], answers: dict[str, list]) -> dict:
    truth = [truth_of(r) for r in rows]
    groups = _units(config, rows)
    return {name: score_change_predictions(predicted, truth, groups, intervals=True, seed=config.seed)
            for name, predicted in answers.items()}


def _units(config: RunConfig, rows: list[dict]) -> list[str]:
    task = get_task(config.task)
    return [task.held_out_unit(r) for r in rows]


def _score_descriptions(config: RunConfig, rows: list[dict], answers: dict[str, list[str]]) -> dict:
    """Word-level and meaning-level scores; detection uses the rows' top-activating contexts against
    contexts of the other features in the same query set."""
    references = [r["description"] for r in rows]
    positives = [[] if r.get("top_contexts") is None else list(r["top_contexts"]) for r in rows]
    negatives = negative_contexts([r["feature_id"] for r in rows], positives, per_query=max(map(len, positives)),
                                  seed=config.seed)
    # distractors for retrieval: every feature description of the corpus, seen in training or not
    distractors = read_corpus(config.corpus_dir, columns=["description"])["description"].to_pylist()
    results = {}
    for name, predicted in answers.items():
        semantic = {"similarity": similarity(predicted, references),
                    "retrieval_accuracy": retrieval_hits(predicted, references, k=RETRIEVAL_CANDIDATES,
                                                         seed=config.seed, distractors=distractors)}
        if any(positives):
            semantic["detection_auroc"] = detection_auroc(predicted, positives, negatives)
        results[name] = score_descriptions(predicted, references, semantic, groups=_units(config, rows),
                                           intervals=True, seed=config.seed)
    return results


def _save(config: RunConfig, run_dir: Location, rows: list[dict], sets: dict, texts: dict[str, list[str]],
          results: dict, per_query: dict[str, list]) -> None:
    task = get_task(config.task)
    frame = pd.DataFrame(
        {"record_id": [r["record_id"] for r in rows],
         "query_set": [name for name in QUERY_SETS for _ in sets[name]],
         "unit": _units(config, rows),
         "changed": [bool(r["changed"]) for r in rows] if "changed" in rows[0] else [None] * len(rows),
         "query": [task.format_query(r) for r in rows],
         "truth": [task.format_answer(r).strip() for r in rows],
         **{f"answer: {name}": [t.strip() for t in answers] for name, answers in texts.items()},
         **per_query}
    )
    (run_dir / "predictions.parquet").write_bytes(parquet_bytes(pa.Table.from_pandas(frame, preserve_index=False)))
    held_out = f"held out by {config.held_out_by}"
    (run_dir / "results.json").write_json({
        "results": results["held-out"], "in_distribution": results.get("in-distribution", {}),
        "split": f"test ({held_out})", "task": config.task, "target": config.target,
        "explainer": config.evaluate.explainer or config.explainer_ref, "train_data_fraction": config.train.data_fraction,
        "versions": versions(), "config_hash": config.fingerprint()})
    sections = [f"# {config.name}: {config.task}\n\nTarget `{config.target}`, explainer `{config.explainer_ref}`. "
                f"Intervals are 95% cluster-bootstrap intervals over held-out units ({UNIT_NAMES[config.task]}).\n"]
    titles = {"held-out": f"Held-out queries ({held_out}: groups never seen in training)",
              "in-distribution": "In-distribution queries (groups seen in training, these rows not trained on)"}
    for name, table in results.items():
        sections.append(f"## {titles[name]}, n={len(sets[name])}\n\n{markdown_table(table)}\n")
    (run_dir / "results.md").write_text("\n".join(sections))
