"""The study's summary: one row per task, query set and summary metric (the headline; for the
change tasks also has-changed F1), trained self minus each system that answers whether it
learned, each cell a paired difference with its interval.

It is a view of rows the paired comparisons (:mod:`selfexplain.study.comparisons`) already hold:
greedy decoding, the whole task (not a family), the roles as configured. Read across a row: does
the explainer beat the majority answer (change tasks), the untrained explainer and SelfIE, nearest
neighbour, the other explainer, and itself without the vector.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from selfexplain.study.comparisons import Comparison, interval_text, metrics_of


@dataclass(frozen=True)
class Column:
    """One column: its heading, the comparison its rows come from, and which of that
    comparison's rows (for one task) it reads."""

    heading: str
    comparison: str
    picks: Callable[[dict, str], bool]


def _baseline(name: str, prefix: bool = False) -> Callable[[dict, str], bool]:
    """A system by its name; SelfIE's name also carries its chosen scale, so by prefix."""

    def picks(row: dict, task: str) -> bool:
        found = row["baseline"]
        return row["task"] == task and (found.startswith(name) if prefix else found == name)

    return picks


COLUMNS = (
    Column("majority answer", "trained self - each baseline", _baseline("majority baseline")),
    Column("untrained self", "trained self - each baseline", _baseline("untrained explainer")),
    Column("SelfIE", "trained self - each baseline", _baseline("SelfIE", prefix=True)),
    Column(
        "nearest neighbour",
        "trained self - each baseline",
        _baseline("nearest-neighbour baseline"),
    ),
    Column("trained other", "self - other", lambda row, task: row["task"] == task),
    Column(
        "self without the vector",
        "gain from the vector",
        lambda row, task: row["task"] == f"{task}, self",
    ),
)

NOTE = (
    "Trained self minus each system, on the headline metric (greedy decoding) and, for the change "
    "tasks, has-changed F1 (does it tell which interventions change the output, whether or not it "
    "names the output right), paired on the same queries, with 95% cluster intervals; a dash "
    "where the study has no such run or the task no such baseline. The tables below give every "
    "metric, family and decoding."
)


def summary_rows(comparisons: list[Comparison], tasks: list[str]) -> list[dict]:
    """Per task, query set and summary metric: the trained self's score and, per column, its
    difference row."""
    by_title = {c.title: c.rows for c in comparisons}
    out = []
    for task in tasks:
        metrics = [m.name for m in metrics_of(task) if m.against_each]
        cells: dict[tuple[str, str], dict[str, dict]] = {}
        for column in COLUMNS:
            for row in by_title.get(column.comparison, []):
                if (
                    row["decoding"] == "greedy"
                    and row["metric"] in metrics
                    and column.picks(row, task)
                ):
                    cells.setdefault((row["query_set"], row["metric"]), {})[column.heading] = row
        for (query_set, metric), differences in sorted(
            cells.items(), key=lambda item: (item[0][0], metrics.index(item[0][1]))
        ):
            out.append(
                {
                    "task": task,
                    "query_set": query_set,
                    "metric": metric,
                    "trained self": next(iter(differences.values()))["first"],
                    "differences": differences,
                }
            )
    return out


def summary_markdown(rows: list[dict]) -> str:
    head = ["task", "query set", "metric", "trained self"] + [f"- {c.heading}" for c in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|---|---|---|" + "---:|" * (len(head) - 3)]
    for row in rows:
        cells = [row["task"], row["query_set"], row["metric"], f"{row['trained self']:.3f}"]
        for column in COLUMNS:
            found = row["differences"].get(column.heading)
            cells.append(
                "-" if found is None else f"{found['difference']:+.3f} {interval_text(found)}"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
