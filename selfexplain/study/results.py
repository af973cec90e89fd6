"""The study's results in long format, read back from each run's ``results.json``: one row per
(stage, query set, system, metric), the display order of systems, and the per-task tables.
The report (:mod:`selfexplain.study.report`) and the plots (:mod:`selfexplain.study.plots`)
both build on these.
"""

from __future__ import annotations

import pandas as pd

from selfexplain.evaluate.systems import System
from selfexplain.storage import Location
from selfexplain.study.config import Stage, StudyConfig
from selfexplain.tasks import get_task

QUERY_SETS = {"held-out": "results", "in-distribution": "in_distribution"}
KIND_ORDER = {"trained": 0, "untrained": 1, "baseline": 2}


def headline(task: str) -> str:
    """The one number per task the plots show (the paper's: exact match for the change tasks);
    the tables show the others too."""
    return get_task(task).headline_metric


def _kept(system: System, stage: Stage) -> bool:
    """Every run's trained explainer; untrained explainers of full-data runs; baselines from one
    run only (the full-data self run: they do not depend on the explainer)."""
    if system.kind == "trained":
        return True
    if stage.fraction < 1.0 or stage.variant:
        return False
    return system.kind == "untrained" or stage.role == "self"


VARIANT_LABELS = {
    "novector": "without the vector",
    "randproj": "random projection",
    "lstsq": "pre-trained projection",
}


def table_name(study: StudyConfig, stage: Stage) -> str:
    """The results table a stage's rows go to: its task, or the task with the roles swapped."""
    return (
        f"{stage.task} (roles swapped: target {study.other_explainer})"
        if stage.swapped
        else stage.task
    )


def system_results(study: StudyConfig) -> list[dict]:
    """Long-format rows: one per (stage, query set, system, metric). ``task`` is the results
    table (a task, or a task with the roles swapped); ``variant`` names a control run."""
    rows = []
    for stage in study.stages():
        if stage.role is None:
            continue
        path = Location(study.folder) / stage.name / "results.json"
        if not path.exists():
            continue
        saved = path.read_json()
        trained_on = _training_examples(Location(study.folder) / stage.name)
        systems = {label: System.from_dict(record) for label, record in saved["systems"].items()}
        for query_set, key in QUERY_SETS.items():
            for label, metrics in saved.get(key, {}).items():
                system = systems[label]
                if not _kept(system, stage):
                    continue
                name = system.study_label + (
                    f" [{VARIANT_LABELS[stage.variant]}]" if stage.variant else ""
                )
                for metric, value in metrics.items():
                    if metric.endswith("_ci"):
                        continue
                    low, high = metrics.get(f"{metric}_ci", (None, None))
                    rows.append(
                        {
                            "task": table_name(study, stage),
                            "task_name": stage.task,
                            "query_set": query_set,
                            "system": name,
                            "role": stage.role,
                            "kind": system.kind,
                            "decoding": system.decoding,
                            "variant": stage.variant,
                            "swapped": stage.swapped,
                            "data_fraction": stage.fraction,
                            "train_examples": trained_on,
                            "metric": metric,
                            "value": value,
                            "ci_low": low,
                            "ci_high": high,
                            "n": metrics.get("n"),
                        }
                    )
    return rows


def _training_examples(run_dir: Location) -> int | None:
    """How many rows the run's explainer trained on (None for a run trained before it was kept)."""
    metrics = run_dir / "train_metrics.json"
    return metrics.read_json().get("examples") if metrics.exists() else None


def system_order(rows: pd.DataFrame) -> list[str]:
    """The systems of long-format rows in display order: trained self, trained other, untrained
    self, untrained other, then the baselines."""
    systems = rows.drop_duplicates("system")
    key = pd.DataFrame(
        {
            "kind": systems["kind"].map(KIND_ORDER),
            "variant": systems["variant"] if "variant" in systems else "",
            "other": (systems["role"] == "other") & (systems["kind"] != "baseline"),
            "candidates": systems["decoding"] == "candidates" if "decoding" in systems else False,
            "system": systems["system"],
        }
    )
    return key.sort_values(["kind", "variant", "other", "candidates", "system"])["system"].tolist()


def results_tables(frame: pd.DataFrame) -> dict[tuple[str, str], dict[str, dict]]:
    """(task, query set) -> {system: metrics with _ci}, full-data systems only, in display order."""
    tables = {}
    full = frame[frame["data_fraction"] == 1.0]
    for (task, query_set), part in full.groupby(["task", "query_set"], sort=False):
        order = system_order(part)
        systems = {}
        for system, rows in part.groupby("system", sort=False):
            metrics = {}
            for r in rows.itertuples():
                metrics[r.metric] = int(r.value) if r.metric in ("n", "groups") else r.value
                if r.ci_low is not None and r.ci_low == r.ci_low:
                    metrics[f"{r.metric}_ci"] = (r.ci_low, r.ci_high)
            systems[system] = metrics
        tables[(task, query_set)] = {s: systems[s] for s in order}
    return tables
