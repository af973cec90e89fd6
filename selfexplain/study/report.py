"""The study's report: results.csv / results.json (long format), report.md, and a one-page
report.html with PNG plots (self vs other per task with intervals; data-scaling curves).

Everything is read back from the runs' own ``results.json``, so the report can be rebuilt from
a finished study folder alone.
"""

from __future__ import annotations

import html
import logging

import pandas as pd

from selfexplain.evaluate.report import markdown_table
from selfexplain.evaluate.systems import System
from selfexplain.storage import Location
from selfexplain.study.comparisons import Comparison, comparison_markdown, study_comparisons
from selfexplain.study.config import Stage, StudyConfig
from selfexplain.tasks import get_task

log = logging.getLogger(__name__)

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


VARIANT_LABELS = {"novector": "without the vector", "randproj": "random projection"}


def table_name(study: StudyConfig, stage: Stage) -> str:
    """The results table a stage's rows go to: its task, or the task with the roles swapped."""
    return f"{stage.task} (roles swapped: target {study.other_explainer})" if stage.swapped else stage.task


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
                name = system.study_label + (f" [{VARIANT_LABELS[stage.variant]}]" if stage.variant else "")
                for metric, value in metrics.items():
                    if metric.endswith("_ci"):
                        continue
                    low, high = metrics.get(f"{metric}_ci", (None, None))
                    rows.append({"task": table_name(study, stage), "task_name": stage.task, "query_set": query_set,
                                 "system": name, "role": stage.role, "kind": system.kind,
                                 "decoding": system.decoding, "variant": stage.variant, "swapped": stage.swapped,
                                 "data_fraction": stage.fraction, "train_examples": trained_on,
                                 "metric": metric, "value": value, "ci_low": low, "ci_high": high,
                                 "n": metrics.get("n")})
    return rows


def _training_examples(run_dir: Location) -> int | None:
    """How many rows the run's explainer trained on (None for a run trained before it was kept)."""
    metrics = run_dir / "train_metrics.json"
    return metrics.read_json().get("examples") if metrics.exists() else None


def system_order(rows: pd.DataFrame) -> list[str]:
    """The systems of long-format rows in display order: trained self, trained other, untrained
    self, untrained other, then the baselines."""
    systems = rows.drop_duplicates("system")
    key = pd.DataFrame({"kind": systems["kind"].map(KIND_ORDER),
                        "variant": systems["variant"] if "variant" in systems else "",
                        "other": (systems["role"] == "other") & (systems["kind"] != "baseline"),
                        "candidates": systems["decoding"] == "candidates" if "decoding" in systems else False,
                        "system": systems["system"]})
    return key.sort_values(["kind", "variant", "other", "candidates", "system"])["system"].tolist()


def _tables(frame: pd.DataFrame) -> dict[tuple[str, str], dict[str, dict]]:
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


def write_report(study: StudyConfig, seconds: dict[str, float]) -> dict:
    folder = Location(study.folder) / "report"
    rows = system_results(study)
    if not rows:
        raise FileNotFoundError(f"no scored runs under {study.folder}; run the study first")
    frame = pd.DataFrame(rows)
    (folder / "results.csv").write_text(frame.to_csv(index=False))
    comparisons = study_comparisons(study)
    (folder / "results.json").write_json({"study": study.name, "target": study.target,
                                          "other_explainer": study.other_explainer, "rows": rows,
                                          "comparisons": {c.title: c.rows for c in comparisons},
                                          "seconds": seconds})
    tables = _tables(frame)
    plots = {}
    if folder.is_local:
        from selfexplain.study.plots import plot_scaling, plot_self_vs_other

        out = folder.local_path
        main = frame[(frame["variant"] == "") & ~frame["swapped"] & (frame["decoding"] != "candidates")]
        scored = [task for task in study.tasks if task in set(main["task"])]  # a study under way has gaps
        plots = {"self_vs_other.png": plot_self_vs_other(main, scored, out / "self_vs_other.png"),
                 "scaling.png": plot_scaling(main, scored, out / "scaling.png")}
    (folder / "report.md").write_text(_markdown(study, tables, seconds, plots, comparisons))
    (folder / "report.html").write_text(_html(study, tables, seconds, plots, comparisons))
    log.info("study report written to %s", folder)
    return {"report": str(folder), "tables": {f"{t} / {q}": v for (t, q), v in tables.items()},
            "comparisons": {c.title: c.rows for c in comparisons}}


def _intro(study: StudyConfig, seconds: dict[str, float]) -> str:
    total = sum(seconds.values())
    return (f"Target `{study.target}` explained by itself (self) and by `{study.other_explainer}` (other), "
            f"both fine-tuned on the same corpus rows with the same batch size and epochs. "
            f"Held-out queries come from groups (prompts, concepts, entities) never seen in training; "
            f"in-distribution queries are unseen rows of seen groups. Brackets: 95% cluster-bootstrap intervals "
            f"that resample held-out units (prompt families, questions, entity pairs, features), not rows. "
            f"Stage wall time in all: {total / 60:.1f} min.")


def _headline_sections(comparisons: list[Comparison]) -> list[tuple[str, str, str]]:
    """(title, note, markdown table) of each paired comparison that has rows."""
    return [(f"Headline: {c.title}", c.note, comparison_markdown(c)) for c in comparisons]


def _markdown(study: StudyConfig, tables, seconds, plots, comparisons) -> str:
    parts = [f"# Study `{study.name}`: self vs other explanation\n", _intro(study, seconds) + "\n"]
    for title, note, table in _headline_sections(comparisons):
        parts.append(f"## {title}\n\n{note}\n\n{table}\n")
    for (task, query_set), table in tables.items():
        parts.append(f"## {task}: {query_set} queries (headline: {headline(task.split(' (')[0])})\n\n"
                     f"{markdown_table(table)}\n")
    for name in plots:
        parts.append(f"![{name}]({name})\n")
    parts.append("## Stage wall times (s)\n\n| stage | seconds |\n|---|---:|\n"
                 + "\n".join(f"| {k} | {v:.0f} |" for k, v in seconds.items()) + "\n")
    return "\n".join(parts)


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%}
h2{margin-top:1.5em;border-bottom:1px solid #ddd}.note{color:#555}"""


def _html_table(markdown: str) -> str:
    lines = [line.strip("|").split("|") for line in markdown.splitlines() if not line.startswith("|---")]
    head, *body = lines
    out = ["<table><tr>" + "".join(f"<th>{html.escape(c.strip())}</th>" for c in head) + "</tr>"]
    for cells in body:
        out.append("<tr>" + "".join(
            f"<td{' class=num' if i else ''}>{html.escape(c.strip())}</td>" for i, c in enumerate(cells)) + "</tr>")
    return "\n".join(out) + "</table>"


def _html(study: StudyConfig, tables, seconds, plots, comparisons) -> str:
    parts = [f"<!doctype html><html><head><meta charset=utf-8><title>selfexplain study {html.escape(study.name)}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>Study <code>{html.escape(study.name)}</code>: self vs other explanation</h1>",
             f"<p class=note>{html.escape(_intro(study, seconds)).replace('`', '')}</p>"]
    captions = {"self_vs_other.png": "Headline score per task and system, held-out and in-distribution, with 95% intervals.",
                "scaling.png": "Held-out headline score against the number of training examples (log scale), "
                               "with 95% intervals; grey lines: the baselines."}
    for title, note, table in _headline_sections(comparisons):
        parts.append(f"<h2>{html.escape(title)}</h2><p class=note>{html.escape(note)}</p>" + _html_table(table))
    for name in plots:
        parts.append(f"<figure><img src='{name}' alt='{name}'><figcaption>{captions[name]}</figcaption></figure>")
    for (task, query_set), table in tables.items():
        parts.append(f"<h2>{html.escape(task)}: {query_set} queries</h2>"
                     f"<p class=note>headline metric: {headline(task.split(' (')[0])}</p>"
                     f"{_html_table(markdown_table(table))}")
    parts.append("<h2>Stage wall times</h2>" + _html_table(
        "| stage | seconds |\n|---|---|\n" + "\n".join(f"| {k} | {v:.0f} |" for k, v in seconds.items())))
    parts.append("<p class=note>Data: <a href='results.csv'>results.csv</a>, <a href='results.json'>results.json</a>.</p>")
    return "\n".join(parts) + "</body></html>\n"
