"""Score an explainer on the held-out split, next to the majority and untrained baselines.

Each explainer is decoded in its own Ray task, so the trained and the untrained explainer run
side by side (on a cluster, on GPU workers). Per-example predictions are kept in
``predictions.parquet``, so a surprising number can be traced to the answers behind it.
"""

from __future__ import annotations

import json
import logging

import pandas as pd
import pyarrow as pa
import ray

from selfexplain.config import RunConfig
from selfexplain.corpus.io import read_corpus
from selfexplain.corpus.schema import stable_id
from selfexplain.evaluate.baselines import majority_answer, nearest_neighbour_answers
from selfexplain.evaluate.metrics import score_change_predictions, score_descriptions
from selfexplain.explainer.export import INTERFACE
from selfexplain.evaluate.report import markdown_table
from selfexplain.models.loading import cache_root, resolve_model_dir
from selfexplain.provenance import versions
from selfexplain.storage import parquet_bytes
from selfexplain.tasks import get_task
from selfexplain.train.trainer import export_location, is_trained

log = logging.getLogger(__name__)


@ray.remote
def explain_rows(task_name: str, model_dir: str, rows: list[dict], batch_size: int,
                 max_new_tokens: int, use_gpu: bool, trust_remote_code: bool, interface: dict | None = None) -> list[str]:
    import torch

    from selfexplain.evaluate.generation import generate_answers
    from selfexplain.explainer.export import load_explainer
    from selfexplain.explainer.vectors import vector_batch
    from selfexplain.train.loop import with_vector_input

    device = "cuda" if use_gpu and torch.cuda.is_available() else "cpu"
    model, tokenizer = load_explainer(model_dir, device=device, trust_remote_code=trust_remote_code)
    task = get_task(task_name)
    vectors = layers = None
    if task.vector_input:
        if interface is not None and not hasattr(model, "interface"):
            # the untrained base model reads vectors through the same interface, untrained
            # (SelfIE/Patchscopes-style zero-shot reading)
            torch.manual_seed(0)
            model = with_vector_input(model, tokenizer, interface).to(device).eval()
        vectors, layers = vector_batch(rows)
    return generate_answers(model, tokenizer, [task.format_query(r) for r in rows], batch_size, max_new_tokens,
                            vectors, layers)


def held_out_rows(config: RunConfig) -> list[dict]:
    test = read_corpus(config.run_dir / "corpus", split="test").to_pandas()
    if test.empty:
        raise ValueError("the held-out split is empty; raise generate.held_out_fraction or add prompts")
    if config.evaluate.max_examples and len(test) > config.evaluate.max_examples:
        test = test.sample(n=config.evaluate.max_examples, random_state=config.seed)
    return test.sort_values("record_id").to_dict("records")


def evaluate(config: RunConfig) -> dict[str, dict[str, float]]:
    """Write results.json, results.md and predictions.parquet to the run folder; return the results."""
    task = get_task(config.task)
    export = export_location(config)
    if not is_trained(config):
        raise FileNotFoundError(f"no trained explainer at {export}; run `selfexplain train` first")
    rows = held_out_rows(config)
    local_export = export.download_dir(cache_root() / "downloads" / stable_id(export.uri))
    interface_file = local_export / INTERFACE
    interface = json.loads(interface_file.read_text()) if interface_file.is_file() else None
    explainers = {"trained explainer": str(local_export)}
    if config.evaluate.untrained_baseline:
        explainers["untrained explainer"] = str(resolve_model_dir(config.explainer_ref))
    use_gpu = config.train.use_gpu
    pending = {
        name: explain_rows.options(num_cpus=1, num_gpus=1 if use_gpu else 0).remote(
            config.task, folder, rows, config.evaluate.batch_size, config.evaluate.max_new_tokens, use_gpu,
            config.trust_remote_code, interface)
        for name, folder in explainers.items()
    }
    log.info("decoding %d held-out queries with %d explainers", len(rows), len(pending))
    answers = {name: ray.get(ref) for name, ref in pending.items()}

    results = (_score_descriptions if config.task == "features" else _score_changes)(config, task, rows, answers)

    _save(config, rows, answers, results)
    return results


def _score_changes(config: RunConfig, task, rows: list[dict], answers: dict[str, list[str]]) -> dict:
    train_rows = read_corpus(config.run_dir / "corpus", split="train", columns=["split", "changed", "new_top1"]).to_pylist()
    true_changed = [bool(r["changed"]) for r in rows]
    true_tokens = [r["new_top1"] for r in rows]
    majority = majority_answer(train_rows)
    results = {"majority baseline": score_change_predictions([majority] * len(rows), true_changed, true_tokens)}
    for name, texts in answers.items():
        results[name] = score_change_predictions([task.parse_answer(t) for t in texts], true_changed, true_tokens)
    return results


def _score_descriptions(config: RunConfig, task, rows: list[dict], answers: dict[str, list[str]]) -> dict:
    train = read_corpus(config.run_dir / "corpus", split="train", columns=["split", "vector", "description"])
    references = [r["description"] for r in rows]
    neighbours = nearest_neighbour_answers(train, [r["vector"] for r in rows])
    results = {"nearest-neighbour baseline": score_descriptions(neighbours, references)}
    for name, texts in answers.items():
        results[name] = score_descriptions([task.parse_answer(t) for t in texts], references)
    return results


def _save(config: RunConfig, rows: list[dict], answers: dict[str, list[str]], results: dict) -> None:
    run_dir = config.run_dir
    task = get_task(config.task)
    frame = pd.DataFrame(
        {"record_id": [r["record_id"] for r in rows], "query": [task.format_query(r) for r in rows],
         "truth": [task.format_answer(r).strip() for r in rows],
         **{f"answer: {name}": [t.strip() for t in texts] for name, texts in answers.items()}}
    )
    (run_dir / "predictions.parquet").write_bytes(parquet_bytes(pa.Table.from_pandas(frame, preserve_index=False)))
    (run_dir / "results.json").write_json({"results": results, "split": f"test (held out by {config.held_out_by})", "task": config.task,
                       "target": config.target, "explainer": config.explainer_ref,
                       "versions": versions(), "config_hash": config.fingerprint()})
    table = markdown_table(results)
    (run_dir / "results.md").write_text(
        f"# {config.name}: {config.task} on held-out queries (held out by {config.held_out_by})\n\n"
        f"Target `{config.target}`, explainer `{config.explainer_ref}`, {len(rows)} held-out queries.\n\n"
        f"{table}\n"
    )
