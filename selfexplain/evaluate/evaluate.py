"""Score an explainer on held-out queries, next to its task's baselines and the untrained model.

Each explainer is decoded in its own Ray task, so the trained and the untrained explainer run
side by side (on a cluster, on GPU workers). What a query, an answer, a baseline and a score are
is the task's (:class:`selfexplain.tasks.Task`); this module reads the corpus once, decodes, and
writes ``results.json``, ``results.md`` and ``predictions.parquet`` (every query's answers and
outcomes, so a surprising number can be traced to the answers behind it, and two systems can be
compared query by query).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import ray
import torch
from transformers import AutoConfig

from selfexplain.config import ConfigError, GenerateConfig, RunConfig, from_dict
from selfexplain.corpus.io import read_corpus
from selfexplain.corpus.subsets import (
    in_distribution_key,
    in_distribution_keys,
    is_in_distribution_query,
    rows_trained_on,
)
from selfexplain.evaluate.generation import generate_answers
from selfexplain.evaluate.report import markdown_table
from selfexplain.evaluate.selfie import best_scale, selfie_answers
from selfexplain.evaluate.systems import System, baseline
from selfexplain.explainer.export import EXPORT_DIR, ExplainerInfo, has_export, load_explainer
from selfexplain.explainer.interface import INTERFACE, VectorInterface
from selfexplain.explainer.vectors import controlled_vectors, vector_batch, with_vector_input
from selfexplain.models.loading import load_tokenizer, resolve_model_dir
from selfexplain.provenance import versions
from selfexplain.storage import Location, parquet_bytes
from selfexplain.tasks import TASK_NAMES, ScoringContext, Task, get_task
from selfexplain.train.examples import LengthFilter
from selfexplain.train.mixture import corpus_sources

log = logging.getLogger(__name__)

QUERY_SETS = ("held-out", "in-distribution")
ANSWER_MARGIN = 4


@ray.remote
def explain_rows(
    task_name: str,
    model_ref: str,
    rows: list[dict],
    batch_size: int,
    max_new_tokens: int,
    use_gpu: bool,
    trust_remote_code: bool,
    interface: VectorInterface | None = None,
    candidates: list[list[str]] | None = None,
) -> dict[str, list[str]]:
    """The explainer's answer to each row's query, by decoding: ``greedy`` always, and with
    ``candidates`` also ``candidates``, the candidate answer it finds most likely. One model
    load serves both."""

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
        if interface is not None:  # a "without the vector" control withholds it in scoring too
            vectors = controlled_vectors(
                vectors, interface.vector_control, layers, [r["record_id"] for r in rows]
            )
    queries = [task.format_query(r) for r in rows]
    answers = {
        "greedy": generate_answers(
            model, tokenizer, queries, batch_size, max_new_tokens, vectors, layers
        )
    }
    if candidates is not None:
        from selfexplain.evaluate.likelihood import most_likely

        answers["candidates"] = most_likely(
            model, tokenizer, queries, candidates, batch_size, vectors, layers
        )
    return answers


class EmptyHeldOutSplit(ValueError):
    """A corpus has no held-out queries (too few items, or all held-out ones rejected)."""


@dataclass(frozen=True)
class ScoredCorpus:
    """One read of a corpus, and everything evaluation takes from it."""

    queries: dict[str, list[dict]]
    """The rows scored, by query set (:data:`QUERY_SETS`)."""
    train_rows: list[dict]
    """The rows the explainer was trained on (all a memorizing baseline may look at)."""
    table: pd.DataFrame
    """Every row of the corpus."""

    @property
    def rows(self) -> list[dict]:
        return [r for name in QUERY_SETS for r in self.queries[name]]


def training_rows(config: RunConfig, table, task: Task | None = None) -> list[dict]:
    """The rows of a corpus table (of ``task``, the run's own by default) that the run's
    explainer trained on (before the length filter)."""
    t = config.train
    train_split = table.filter(pc.equal(table["split"], "train"))
    keys = in_distribution_keys(task or get_task(config.task), train_split, t.in_distribution_by)
    return rows_trained_on(
        train_split, t.in_distribution_holdout, t.data_fraction, config.seed, keys
    ).to_pylist()


def read_scored_corpus(config: RunConfig, task: Task) -> ScoredCorpus:
    """The queries scored: the held-out split (new prompt families, concepts, entities), and
    training-split rows kept out of training (seen groups, unseen rows); each passes the training
    length filter, and is capped and sampled deterministically. Read once: the training rows and
    the whole table come from the same read."""

    table = read_corpus(config.corpus_dir)
    t = config.train
    train_rows = training_rows(config, table, task)
    corpus = table.to_pandas()
    corpus["templates"] = config.templates  # every system is asked in the explainer's phrasing
    length_filter = LengthFilter(config.target, task, t.max_length, config.trust_remote_code)
    records = corpus.to_dict("records")
    fits = pd.Series([length_filter.fits(row) for row in records], index=corpus.index)
    test = corpus[fits & (corpus["split"] == "test")]
    if test.empty:
        raise EmptyHeldOutSplit(
            f"the held-out split of {config.corpus_dir} is empty; raise "
            "generate.held_out_fraction or generate.max_items (more items, more groups)"
        )
    in_distribution = [
        row["split"] == "train"
        and is_in_distribution_query(
            in_distribution_key(task, row, t.in_distribution_by),
            t.in_distribution_holdout,
            config.seed,
        )
        for row in records
    ]
    seen = corpus[fits & pd.Series(in_distribution, index=corpus.index, dtype=bool)]
    queries = {}
    for name, frame in zip(QUERY_SETS, (test, seen)):
        if config.evaluate.max_examples and len(frame) > config.evaluate.max_examples:
            frame = frame.sample(n=config.evaluate.max_examples, random_state=config.seed)
        queries[name] = frame.sort_values("record_id").to_dict("records")
    return ScoredCorpus(queries, train_rows, corpus)


def evaluate_run(config: RunConfig) -> dict[str, dict[str, dict[str, float]]]:
    """Score a run's explainer on every corpus it trained on: ``{corpus run: held-out results}``,
    one entry for a run on one corpus, one per mixed corpus for a task mix (each written to
    ``<run>/evaluate/<corpus run>/``)."""
    if not config.train.mix:
        return {config.corpus_from or config.name: evaluate(config)}

    results = {}
    for source in corpus_sources(config):
        made_with = from_dict(GenerateConfig, source.manifest["config"]["generate"])
        # this run's explainer and settings, scored as if it were a run on that corpus alone
        alone = dataclasses.replace(
            config,
            task=source.task,
            corpus_from=source.run,
            generate=made_with,
            train=dataclasses.replace(config.train, mix={}),
        )
        log.info("scoring the mixed explainer on %s (%s)", source.run, source.task)
        try:
            results[source.run] = evaluate(alone, out_dir=config.run_dir / "evaluate" / source.run)
        except EmptyHeldOutSplit as err:  # the other corpora's scores are still worth having
            log.warning("not scored on %s: %s", source.run, err)
    if not results:
        raise EmptyHeldOutSplit(
            f"no corpus of train.mix has held-out queries ({', '.join(config.train.mix)})"
        )
    return results


def trained_export(config: RunConfig) -> Location:
    """The explainer scored: ``evaluate.explainer``, or the run's own export."""
    export = (
        Location(config.evaluate.explainer)
        if config.evaluate.explainer
        else config.run_dir / EXPORT_DIR
    )
    if not has_export(export):
        hint = (
            "check evaluate.explainer"
            if config.evaluate.explainer
            else "run `selfexplain train` first"
        )
        raise FileNotFoundError(f"no trained explainer at {export}; {hint}")
    return export


def check_trained_for(task: str, export: Location, local_export) -> None:
    """The export (read from its local copy) was trained for ``task``."""
    trained_for = ExplainerInfo.read(local_export, TASK_NAMES).tasks
    if task not in trained_for:
        raise ConfigError(
            f"the explainer at {export} was trained for {' and '.join(trained_for)}, not "
            f"{task!r}; score it on a corpus of {' or '.join(trained_for)}"
        )


def evaluate(config: RunConfig, out_dir: Location | None = None) -> dict[str, dict[str, float]]:
    """Write results.json, results.md and predictions.parquet to the run folder (or ``out_dir``);
    return the held-out results (``results.json`` also holds the in-distribution ones)."""
    task = get_task(config.task)
    export = trained_export(config)
    local_export = resolve_model_dir(export.uri)  # the driver's copy, for the small files
    check_trained_for(config.task, export, local_export)
    corpus = read_scored_corpus(config, task)
    rows = corpus.rows
    context = ScoringContext(
        config.seed,
        corpus.train_rows,
        corpus.table,
        target_layers(config),
        config.evaluate.candidate_outputs,
    )
    budget = config.evaluate.max_new_tokens or answer_budget(
        str(local_export), task, corpus.train_rows + rows, config.trust_remote_code
    )
    pending = _decode(config, task, export, local_export, rows, context, budget)
    log.info(
        "decoding %d queries (%s) with %d explainers",
        len(rows),
        ", ".join(f"{len(v)} {k}" for k, v in corpus.queries.items()),
        len(pending),
    )
    selfie = _start_selfie(config, task, rows, budget)
    texts = _collect(pending)
    if selfie is not None:
        texts.update(_best_selfie(task, ray.get(selfie), corpus.queries["held-out"]))
    answers = {baseline(name): parsed for name, parsed in task.baselines(rows, context).items()}
    answers.update(
        {system: [task.parse_answer(t) for t in decoded] for system, decoded in texts.items()}
    )

    results = _score_query_sets(task, corpus, answers, context)
    per_query = task.per_query(rows, {s.label: v for s, v in answers.items()})
    _save(config, task, out_dir or config.run_dir, corpus, texts, results, per_query, list(answers))
    return results["held-out"]


def _start_selfie(config: RunConfig, task: Task, rows: list[dict], budget: int):
    """The SelfIE baseline's Ray task (None where it does not apply): the untrained target reads
    its own vectors; baselines come from the self-explainer's run."""
    e = config.evaluate
    if not (
        task.selfie_baseline
        and e.untrained_baseline
        and e.selfie_scales
        and config.explainer_ref == config.target
    ):
        return None
    options = selfie_answers.options(num_cpus=1, num_gpus=1 if config.train.use_gpu else 0)
    return options.remote(config.target, rows, list(e.selfie_scales), e.batch_size, budget,
                          config.train.use_gpu, config.trust_remote_code)  # fmt: skip


def _score_query_sets(task: Task, corpus: ScoredCorpus, answers: dict, context) -> dict:
    """Each query set's scores per system (answers hold the query sets in :data:`QUERY_SETS`
    order)."""
    results, offset = {}, 0
    for name in QUERY_SETS:
        part = slice(offset, offset + len(corpus.queries[name]))
        offset += len(corpus.queries[name])
        if corpus.queries[name]:
            by_label = {system.label: parsed[part] for system, parsed in answers.items()}
            results[name] = task.score(corpus.queries[name], by_label, context)
    return results


def target_layers(config: RunConfig) -> int:
    """The target's depth (decoder blocks), from its config."""

    target_config = AutoConfig.from_pretrained(
        resolve_model_dir(config.target), trust_remote_code=config.trust_remote_code
    )
    return target_config.get_text_config().num_hidden_layers


def _decode(
    config: RunConfig,
    task: Task,
    export: Location,
    local_export,
    rows: list[dict],
    context: ScoringContext,
    budget: int,
) -> dict[tuple[str, str, str], ray.ObjectRef]:
    """The trained (and untrained) explainer's answers, each explainer decoded in its own Ray
    task, greedily and (for change tasks) by candidate choice among the same candidates."""
    role = "self" if config.train.explainer == "self" else "other"
    model = config.evaluate.explainer or config.explainer_ref
    # references, resolved by each task on its node (an s3:// export is copied there once)
    explainers = {"trained": (export.uri, model)}
    if config.evaluate.untrained_baseline:
        explainers["untrained"] = (config.explainer_ref, config.explainer_ref)
    candidates = None
    if config.evaluate.candidate_choice and not task.answers_are_free_text:
        candidates = task.candidate_answers(rows, context)
    interface_file = local_export / INTERFACE
    interface = VectorInterface.read(interface_file) if interface_file.is_file() else None
    use_gpu = config.train.use_gpu
    return {
        (kind, role, name): explain_rows.options(num_cpus=1, num_gpus=1 if use_gpu else 0).remote(
            config.task,
            reference,
            rows,
            config.evaluate.batch_size,
            budget,
            use_gpu,
            config.trust_remote_code,
            interface,
            candidates,
        )
        for kind, (reference, name) in explainers.items()
    }


def _collect(pending: dict) -> dict[System, list[str]]:
    """Each explainer's answers by decoding, as one system per (explainer, decoding)."""
    texts = {}
    for (kind, role, model), ref in pending.items():
        for decoding, answers in ray.get(ref).items():
            texts[System(kind, role, model, decoding=decoding)] = answers
    return texts


def _best_selfie(
    task: Task, by_scale: dict[float, list[str]], held: list[dict]
) -> dict[System, list[str]]:
    """SelfIE's answers at the scale with the best held-out headline score (an upper bound: the
    scale is chosen on the test queries; held-out queries come first in ``by_scale``'s lists)."""

    def held_out_score(answers: list[str]) -> float:
        parsed = [task.parse_answer(a) for a in answers[: len(held)]]
        column = task.per_query(held, {"selfie": parsed})[f"{task.per_query_metric}: selfie"]
        return float(pd.Series(column, dtype=float).mean())

    scale = best_scale(by_scale, held_out_score)
    return {
        baseline(f"SelfIE (untrained target, best scale x{scale:g}; upper bound)"): by_scale[scale]
    }


def answer_budget(
    tokenizer_dir: str, task: Task, rows: list[dict], trust_remote_code: bool = False
) -> int:
    """Tokens to decode per answer: the longest ground-truth answer of the corpus rows in the
    explainer's tokenizer, plus a margin, so no well-formed answer is cut (a long SAE description,
    or the change form in a small vocabulary) and no decode runs far past one."""

    tokenizer = load_tokenizer(tokenizer_dir, trust_remote_code)
    longest = max(
        len(tokenizer(task.format_answer(r), add_special_tokens=False)["input_ids"]) for r in rows
    )
    return longest + ANSWER_MARGIN


def predictions_frame(
    task: Task, corpus: ScoredCorpus, texts: dict[System, list[str]], per_query: dict[str, list]
) -> pd.DataFrame:
    """Every query: its text, truth, each explainer's answer and each system's per-query outcome."""
    rows = corpus.rows
    changed = [bool(r["changed"]) for r in rows] if "changed" in rows[0] else [None] * len(rows)
    answers = {
        f"answer: {system.label}": [t.strip() for t in decoded] for system, decoded in texts.items()
    }
    return pd.DataFrame({
        "record_id": [r["record_id"] for r in rows],
        "query_set": [name for name in QUERY_SETS for _ in corpus.queries[name]],
        "unit": [task.held_out_unit(r) for r in rows],
        "family": [task.family(r) for r in rows],
        "changed": changed,
        "query": [task.format_query(r) for r in rows],
        "truth": [task.format_answer(r).strip() for r in rows],
        **answers,
        **per_query,
    })  # fmt: skip


def _save(
    config: RunConfig,
    task: Task,
    run_dir: Location,
    corpus: ScoredCorpus,
    texts: dict[System, list[str]],
    results: dict,
    per_query: dict[str, list],
    systems: list[System],
) -> None:
    frame = predictions_frame(task, corpus, texts, per_query)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    (run_dir / "predictions.parquet").write_bytes(parquet_bytes(table))
    held_out = f"held out by {config.held_out_by}"
    (run_dir / "results.json").write_json(
        {
            "results": results["held-out"],
            "in_distribution": results.get("in-distribution", {}),
            "systems": {system.label: system.to_dict() for system in systems},
            "headline_metric": task.headline_metric,
            "split": f"test ({held_out})",
            "task": config.task,
            "target": config.target,
            "explainer": config.evaluate.explainer or config.explainer_ref,
            "train_data_fraction": config.train.data_fraction,
            "versions": versions(),
            "config_hash": config.fingerprint(),
        }
    )
    sections = [
        f"# {config.name}: {config.task}\n\nTarget `{config.target}`, explainer "
        f"`{config.explainer_ref}`. "
        f"Intervals are 95% cluster-bootstrap intervals over held-out units ({task.unit_name}).\n"
    ]
    titles = {
        "held-out": f"Held-out queries ({held_out}: groups never seen in training)",
        "in-distribution": "In-distribution queries ("
        + (
            f"whole {task.unit_name} of the training split, not trained on"
            if config.train.in_distribution_by == "group"
            else "groups seen in training, these rows not trained on"
        )
        + ")",
    }
    for name, table in results.items():
        sections.append(
            f"## {titles[name]}, n={len(corpus.queries[name])}\n\n{markdown_table(table)}\n"
        )
    (run_dir / "results.md").write_text("\n".join(sections))
