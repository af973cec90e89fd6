"""The study's paired comparisons: two systems on identical queries, with cluster intervals.

Each comparison joins two predictions tables (two runs, or two systems of one run) on
``(record_id, query_set)``, checks that the join is one-to-one, and gives, per query set and
decoding, the difference of each headline metric with a 95% interval that resamples held-out
units for both systems at once:

- change tasks: exact match (the paper's headline), exact match on the rows whose output changed
  (an explainer that always says "unchanged" scores 0 there), and has-changed F1;
- features: similarity (the headline), word F1 and exact match.

The comparisons a study reports (:func:`study_comparisons`): self - other; trained self - each
other system of its run on the headline metric (and has-changed F1), and - the best of them on
every metric; gain from the vector (each explainer against itself trained and scored with the
vector withheld); self - self through a random projection; and self - other with the roles
swapped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from selfexplain.evaluate.systems import CANDIDATE_CHOICE
from selfexplain.scoring.intervals import paired_difference_interval
from selfexplain.scoring.metrics import has_changed_f1
from selfexplain.storage import Location
from selfexplain.study.config import Stage, StudyConfig
from selfexplain.study.paired import TRAINED, read_predictions
from selfexplain.tasks import get_task

KEYS = ["record_id", "query_set"]
DECODINGS = {"greedy": TRAINED, CANDIDATE_CHOICE: f"{TRAINED} ({CANDIDATE_CHOICE})"}


@dataclass(frozen=True)
class Metric:
    """A paired metric: its name, the per-query column it reads, its statistic, and whether it
    is taken over the changed rows only."""

    name: str
    column: str
    statistic: Callable[..., float]
    changed_rows_only: bool = False
    with_truth: bool = False
    """The statistic also takes the truth ("changed") column: has-changed F1."""
    against_each: bool = False
    """Reported against each baseline (the summary's metrics): the headline, and for the change
    tasks has-changed F1, which an explainer can win while it names outputs wrong."""


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


CHANGE_METRICS = (
    Metric("exact match", "exact", _mean, against_each=True),
    Metric("exact match (changed rows)", "exact", _mean, changed_rows_only=True),
    Metric(
        "has-changed F1",
        "said",
        lambda said, changed: has_changed_f1(said, changed.astype(bool)),
        with_truth=True,
        against_each=True,
    ),
)
FEATURE_METRICS = (
    Metric("similarity", "similarity", _mean, against_each=True),
    Metric("word F1", "word_f1", _mean),
    Metric("exact match", "exact", _mean),
)


def metrics_of(task: str) -> tuple[Metric, ...]:
    return FEATURE_METRICS if get_task(task).answers_are_free_text else CHANGE_METRICS


class PairedJoinError(ValueError):
    """Two predictions tables do not pair one-to-one."""


def paired_join(
    first: pd.DataFrame,
    second: pd.DataFrame,
    first_system: str,
    second_system: str,
    columns: list[str],
) -> pd.DataFrame:
    """The queries both systems answered, one row each: ``a <column>`` and ``b <column>`` per
    per-query column, with ``unit`` and (change tasks) ``changed``."""
    for name, frame in (("first", first), ("second", second)):
        duplicated = int(frame.duplicated(KEYS).sum())
        if duplicated:
            raise PairedJoinError(
                f"the {name} predictions table holds {duplicated} repeated queries; a paired "
                "comparison needs each query once"
            )
    extra = [c for c in ("unit", "changed") if c in first]
    left = first[KEYS + extra + [f"{c}: {first_system}" for c in columns]].rename(
        columns={f"{c}: {first_system}": f"a {c}" for c in columns}
    )
    right = second[KEYS + [f"{c}: {second_system}" for c in columns]].rename(
        columns={f"{c}: {second_system}": f"b {c}" for c in columns}
    )
    return left.merge(right, on=KEYS, how="inner", validate="one_to_one")


def compare(
    first: pd.DataFrame,
    second: pd.DataFrame,
    task: str,
    first_system: str,
    second_system: str,
    seed: int = 0,
) -> list[dict]:
    """Per query set and metric: first - second on the queries both answered, with its interval."""
    metrics = [
        m
        for m in metrics_of(task)
        if f"{m.column}: {first_system}" in first and f"{m.column}: {second_system}" in second
    ]
    joined = paired_join(
        first, second, first_system, second_system, sorted({m.column for m in metrics})
    )
    out = []
    for query_set, part in joined.groupby("query_set", sort=False):
        for metric in metrics:
            rows = part[part["changed"].astype(bool)] if metric.changed_rows_only else part
            a, b = (
                rows[f"a {metric.column}"].to_numpy(dtype=float),
                rows[f"b {metric.column}"].to_numpy(dtype=float),
            )
            defined = ~(np.isnan(a) | np.isnan(b))
            if not defined.any():
                continue
            a, b, units = a[defined], b[defined], rows["unit"].to_numpy()[defined]
            if metric.with_truth:
                truth = rows["changed"].to_numpy(dtype=bool)[defined]
                diff, low, high = paired_difference_interval(
                    metric.statistic, (a, truth), (b, truth), groups=list(units), seed=seed
                )
                first_value, second_value = metric.statistic(a, truth), metric.statistic(b, truth)
            else:
                diff, low, high = paired_difference_interval(
                    metric.statistic, a, b, groups=list(units), seed=seed
                )
                first_value, second_value = metric.statistic(a), metric.statistic(b)
            out.append(
                {
                    "query_set": query_set,
                    "metric": metric.name,
                    "first": first_value,
                    "second": second_value,
                    "difference": diff,
                    "ci_low": low,
                    "ci_high": high,
                    "n": int(defined.sum()),
                    "units": len(set(units)),
                }
            )
    return out


@dataclass(frozen=True)
class Comparison:
    """One headline table: ``first`` minus ``second`` per task, query set, decoding and metric."""

    title: str
    note: str
    first: str
    second: str
    rows: list[dict]


def _predictions(study: StudyConfig, stage: Stage) -> pd.DataFrame | None:
    return read_predictions(Location(study.folder) / stage.name)


def _label(study: StudyConfig, stage: Stage) -> str:
    return (
        f"{stage.task} (roles swapped: target {study.other_explainer})"
        if stage.swapped
        else stage.task
    )


def families(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """("", all rows), then each family of a task that reports several apart (features)."""
    out = [("", frame)]
    names = [f for f in frame["family"].unique() if f] if "family" in frame else []
    if len(names) > 1:
        out += [(name, frame[frame["family"] == name]) for name in sorted(names)]
    return out


def _between_runs(
    study: StudyConfig, pairs: list[tuple[Stage, Stage]], with_role: bool = False
) -> list[dict]:
    """The trained explainers of two runs, by each decoding both runs have, per family."""
    rows = []
    for first_stage, second_stage in pairs:
        first, second = _predictions(study, first_stage), _predictions(study, second_stage)
        if first is None or second is None:
            continue
        for family, subset in families(first):
            label = _label(study, first_stage) + (f" ({family})" if family else "")
            label += f", {first_stage.role}" if with_role else ""
            for decoding, system in DECODINGS.items():
                if not any(c.endswith(f": {system}") for c in subset.columns):
                    continue
                for row in compare(subset, second, first_stage.task, system, system):
                    rows.append({"task": label, "decoding": decoding, **row})
    return rows


def _versus_baselines(study: StudyConfig, stage: Stage, each: bool) -> list[dict]:
    """Trained self (each decoding) minus the systems of its run that are not a trained
    explainer, per query set: every one of them on the metrics marked ``against_each``
    (``each``), or the best of them, chosen by the headline metric after the fact (favouring
    it), on every metric."""
    frame = _predictions(study, stage)
    if frame is None:
        return []
    per_query_metric = get_task(stage.task).per_query_metric
    against_each = {m.name for m in metrics_of(stage.task) if m.against_each}
    rows = []
    for family, subset in families(frame):
        label = _label(study, stage) + (f" ({family})" if family else "")
        for query_set, part in subset.groupby("query_set", sort=False):
            if each:
                baselines = other_systems(part, per_query_metric)
            else:
                best = best_other_system(part, per_query_metric)
                baselines = [best] if best else []
            for baseline in baselines:
                for decoding, system in DECODINGS.items():
                    if f"{per_query_metric}: {system}" not in part:
                        continue
                    for row in compare(part, part, stage.task, system, baseline):
                        if not each or row["metric"] in against_each:
                            rows.append(
                                {"task": label, "decoding": decoding, "baseline": baseline, **row}
                            )
    return rows


def other_systems(part: pd.DataFrame, metric: str) -> list[str]:
    """The systems of a predictions table, other than the trained explainer, scored on
    ``metric``: the baselines, SelfIE and the untrained explainer."""
    prefix = f"{metric}: "
    return [
        c[len(prefix) :]
        for c in part.columns
        if c.startswith(prefix) and not c[len(prefix) :].startswith(TRAINED)
    ]


def best_other_system(part: pd.DataFrame, metric: str) -> str | None:
    """The system of a predictions table that is not a trained explainer with the highest mean
    per-query ``metric`` (picked after the fact, which favours it, never the trained explainer)."""
    prefix = f"{metric}: "
    others = other_systems(part, metric)
    means = (
        {name: float(np.nanmean(part[prefix + name].to_numpy(dtype=float))) for name in others}
        if len(part)
        else {}
    )
    means = {name: value for name, value in means.items() if value == value}
    return max(means, key=means.get) if means else None


NOTES = {
    "self - other": "Self minus other, paired: both trained explainers on the very same queries; "
    "the interval of the difference resamples held-out units for both at once.",
    "trained self - each baseline": "Trained self minus each system of its run that is not a "
    "trained explainer (the majority answer, nearest neighbour, the rules, SelfIE, the untrained "
    "explainer), on the headline metric (and has-changed F1 for the change tasks): does the "
    "explainer beat each of them on its own.",
    "trained self - best other system": "Trained self minus the strongest system of its run that "
    "is not a trained explainer (a baseline, SelfIE, the untrained explainer by either decoding), "
    "picked after the fact by the headline metric.",
    "gain from the vector": "Each explainer minus itself trained and scored with the vector "
    'withheld ({control}): what reading the vector adds (the paper\'s "- activation").',
    "self - self through a random projection": "The target reading its own vectors as they are, "
    "minus reading them through a fixed random orthogonal map: what the native basis adds.",
    "self - other, roles swapped": "The same comparison with {other} as target and self, and "
    "{target} as other.",
    "self - other with a pre-trained projection": "Self minus the other explainer whose projection "
    "starts as the least-squares map between the two models' token embeddings (the paper's "
    '"pre-trained projection"), not at random: how much of self - other an untrained projection '
    "explains.",
}


def study_comparisons(study: StudyConfig) -> list[Comparison]:
    """Every paired comparison the study has runs for, in the report's order."""
    full = [
        s
        for s in study.stages()
        if s.role and s.fraction == 1.0 and s.learning_rate is None  # not a sweep's run
    ]
    main = {(s.task, s.role, s.swapped): s for s in full if not s.variant}
    controls = [s for s in full if s.variant]
    pairs = {
        "self - other": [
            (main[(t, "self", False)], main[(t, "other", False)]) for t in study.tasks
        ],
        "gain from the vector": [
            (main[(s.task, s.role, False)], s) for s in controls if s.variant == "novector"
        ],
        "self - self through a random projection": [
            (main[(s.task, "self", False)], s) for s in controls if s.variant == "randproj"
        ],
        "self - other, roles swapped": [
            (main[(t, "self", True)], main[(t, "other", True)]) for t in study.swapped
        ],
        "self - other with a pre-trained projection": [
            (main[(s.task, "self", False)], s) for s in controls if s.variant == "lstsq"
        ],
    }
    names = {
        "self - other": ("self", "other"),
        "trained self - each baseline": ("trained self", "baseline"),
        "trained self - best other system": ("trained self", "best other"),
        "gain from the vector": ("with the vector", "without"),
        "self - self through a random projection": ("self", "random projection"),
        "self - other, roles swapped": ("self", "other"),
        "self - other with a pre-trained projection": ("self", "other, pre-trained projection"),
    }
    comparisons = []
    for title, (first, second) in names.items():
        if title.startswith("trained self - "):
            each = title == "trained self - each baseline"
            rows = [
                row
                for t in study.tasks
                for row in _versus_baselines(study, main[(t, "self", False)], each)
            ]
        else:
            with_role = title in ("gain from the vector", "self - self through a random projection")
            rows = _between_runs(study, pairs[title], with_role)
        note = NOTES[title].format(
            control=study.vector_control, other=study.other_explainer, target=study.target
        )
        comparisons.append(Comparison(title, note, first, second, rows))
    return [c for c in comparisons if c.rows]  # fmt: skip


def comparison_markdown(comparison: Comparison) -> str:
    baseline = any("baseline" in r for r in comparison.rows)
    head = ["task", "query set", "decoding", "metric", comparison.first]
    head += [f"{comparison.second} system", "its score"] if baseline else [comparison.second]
    head += [f"{comparison.first} - {comparison.second} [95% CI]", "queries", "units"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 4 + "---:|" * (len(head) - 4)]
    for r in comparison.rows:
        second = [r["baseline"], f"{r['second']:.3f}"] if baseline else [f"{r['second']:.3f}"]
        cells = [
            r["task"],
            r["query_set"],
            r["decoding"],
            r["metric"],
            f"{r['first']:.3f}",
            *second,
            f"{r['difference']:+.3f} " + interval_text(r),
            str(r["n"]),
            str(r["units"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def interval_text(row: dict) -> str:
    """The 95% interval, or why there is none (one unit cannot be resampled)."""
    if row["ci_low"] != row["ci_low"]:  # NaN
        return f"[no interval: {row['units']} unit]"
    return f"[{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]"
