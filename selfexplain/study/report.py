"""The study's report: results.csv / results.json (long format), report.md, and a one-page
report.html with PNG plots (self vs other per task with intervals; data-scaling curves; each main
run's validation losses).

Everything is read back from the runs' own ``results.json``, so the report can be rebuilt from
a finished study folder alone.
"""

from __future__ import annotations

import html
import logging

import pandas as pd

from selfexplain.evaluate.report import markdown_table
from selfexplain.storage import Location
from selfexplain.study.comparisons import Comparison, comparison_markdown, study_comparisons
from selfexplain.study.config import Stage, StudyConfig
from selfexplain.study.plots import plot_scaling, plot_self_vs_other, plot_training_curves
from selfexplain.study.results import headline, results_tables, system_results
from selfexplain.study.summary import NOTE as SUMMARY_NOTE
from selfexplain.study.summary import summary_markdown, summary_rows
from selfexplain.study.training_runs import NOTE as RUNS_NOTE
from selfexplain.study.training_runs import held_out_at_best, training_runs_markdown

log = logging.getLogger(__name__)


def write_report(study: StudyConfig, seconds: dict[str, float]) -> dict:
    folder = Location(study.folder) / "report"
    rows = system_results(study)
    if not rows:
        raise FileNotFoundError(f"no scored runs under {study.folder}; run the study first")
    frame = pd.DataFrame(rows)
    (folder / "results.csv").write_text(frame.to_csv(index=False))
    comparisons = study_comparisons(study)
    summary = summary_rows(comparisons, list(study.tasks))
    (folder / "results.json").write_json(
        {
            "study": study.name,
            "target": study.target,
            "other_explainer": study.other_explainer,
            "rows": rows,
            "summary": summary,
            "comparisons": {c.title: c.rows for c in comparisons},
            "seconds": seconds,
        }
    )
    tables = results_tables(frame)
    sections = _headline_sections(summary, comparisons)
    appendix = _training_sections(study)
    plots = {}
    if folder.is_local:
        out = folder.local_path
        main = frame[
            (frame["variant"] == "") & ~frame["swapped"] & (frame["decoding"] != "candidates")
        ]
        scored = [
            task for task in study.tasks if task in set(main["task"])
        ]  # a study under way has gaps
        plots = {
            "self_vs_other.png": plot_self_vs_other(main, scored, out / "self_vs_other.png"),
            "scaling.png": plot_scaling(main, scored, out / "scaling.png"),
            "training.png": plot_training_curves(
                main_run_metrics(study), scored, out / "training.png"
            ),
        }
    (folder / "report.md").write_text(_markdown(study, tables, seconds, plots, sections, appendix))
    (folder / "report.html").write_text(_html(study, tables, seconds, plots, sections, appendix))
    log.info("study report written to %s", folder)
    return {
        "report": str(folder),
        "tables": {f"{t} / {q}": v for (t, q), v in tables.items()},
        "summary": summary,
        "comparisons": {c.title: c.rows for c in comparisons},
    }


def _intro(study: StudyConfig, seconds: dict[str, float]) -> str:
    total = sum(seconds.values())
    return (
        f"Target `{study.target}` explained by itself (self) and by `{study.other_explainer}` "
        f"(other), "
        f"both fine-tuned on the same corpus rows with the same batch size and epochs. "
        f"Held-out queries come from groups (prompts, concepts, entities) never seen in training; "
        f"in-distribution queries are unseen rows of seen groups. Brackets: 95% cluster-bootstrap "
        f"intervals "
        f"that resample held-out units (prompt families, questions, entity pairs, features), not "
        f"rows. "
        f"Stage wall time in all: {total / 60:.1f} min."
    )


def _headline_sections(
    summary: list[dict], comparisons: list[Comparison]
) -> list[tuple[str, str, str]]:
    """(title, note, markdown table): the summary across tasks, then each paired comparison
    that has rows."""
    first = [("Summary: trained self minus each system", SUMMARY_NOTE, summary_markdown(summary))]
    rest = [(f"Headline: {c.title}", c.note, comparison_markdown(c)) for c in comparisons]
    return (first if summary else []) + rest


def _training_sections(study: StudyConfig) -> list[tuple[str, str, str]]:
    """(title, note, markdown table) of the learning-rate sweep and the trained runs, those that
    have rows; read once, rendered in both report.md and report.html."""
    found = [
        ("Learning-rate sweep", SWEEP_NOTE, sweep_markdown(study)),
        ("Training runs", RUNS_NOTE, training_runs_markdown(study)),
    ]
    return [section for section in found if section[2]]


def _markdown(study: StudyConfig, tables, seconds, plots, sections, appendix) -> str:
    parts = [f"# Study `{study.name}`: self vs other explanation\n", _intro(study, seconds) + "\n"]
    for title, note, table in sections:
        parts.append(f"## {title}\n\n{note}\n\n{table}\n")
    for (task, query_set), table in tables.items():
        parts.append(
            f"## {task}: {query_set} queries (headline: {headline(task.split(' (')[0])})\n\n"
            f"{markdown_table(table)}\n"
        )
    for name in plots:
        parts.append(f"![{name}]({name})\n")
    for title, note, table in appendix:
        parts.append(f"## {title}\n\n{note}\n\n{table}\n")
    parts.append(
        "## Stage wall times (s)\n\n| stage | seconds |\n|---|---:|\n"
        + "\n".join(f"| {k} | {v:.0f} |" for k, v in seconds.items())
        + "\n"
    )
    return "\n".join(parts)


def main_run_metrics(study: StudyConfig) -> dict[tuple[str, str], dict]:
    """(task, role) -> the ``train_metrics.json`` of each trained main run (full data, no
    control, roles as given)."""
    metrics = {}
    for task in study.tasks:
        for role in study.explainers():
            path = Location(study.folder) / Stage(task, role).name / "train_metrics.json"
            if path.exists():
                metrics[(task, role)] = path.read_json()
    return metrics


SWEEP_NOTE = (
    "Each explainer trained at each rate for the same budget; the rate of lowest in-distribution "
    "validation loss (bold) trained every later run of that explainer. Held-out queries chose "
    "nothing."
)


def sweep_markdown(study: StudyConfig) -> str:
    """The sweep's table: explainer, rate, lowest in-distribution loss, and the held-out loss at
    that step (shown to read overfitting by; never used to choose); empty without a sweep."""
    rows = []
    for stage in study.stages():
        if stage.learning_rate is None:
            continue
        loss = study.sweep_losses(stage)[stage.learning_rate]
        chosen = study.chosen_learning_rate(stage) == stage.learning_rate
        rate = f"**{stage.learning_rate:g}**" if chosen else f"{stage.learning_rate:g}"
        swapped = ", roles swapped" if stage.swapped else ""
        shown = "not run" if loss is None else f"{loss:.4f}"
        metrics = Location(study.folder) / stage.name / "train_metrics.json"
        held_out = held_out_at_best(metrics.read_json() if metrics.exists() else {})
        rows.append(f"| {stage.task}{swapped} | {stage.role} | {rate} | {shown} | {held_out} |")
    if not rows:
        return ""
    head = "| task | explainer | learning rate | in-distribution loss | held-out loss, same step |"
    return head + "\n|---|---|---:|---:|---:|\n" + "\n".join(rows)


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:14px}th,td{border:1px solid
#ccc;padding:4px 8px}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%}
h2{margin-top:1.5em;border-bottom:1px solid #ddd}.note{color:#555}"""


def _html_table(markdown: str) -> str:
    lines = [
        line.strip("|").split("|") for line in markdown.splitlines() if not line.startswith("|---")
    ]
    head, *body = lines
    out = ["<table><tr>" + "".join(f"<th>{html.escape(c.strip())}</th>" for c in head) + "</tr>"]
    for cells in body:
        out.append(
            "<tr>"
            + "".join(
                f"<td{' class=num' if i else ''}>{html.escape(c.strip())}</td>"
                for i, c in enumerate(cells)
            )
            + "</tr>"
        )
    return "\n".join(out) + "</table>"


def _html_section(title: str, note: str, table: str) -> str:
    return f"<h2>{html.escape(title)}</h2><p class=note>{html.escape(note)}</p>" + _html_table(
        table
    )


def _html(study: StudyConfig, tables, seconds, plots, sections, appendix) -> str:
    parts = [
        f"<!doctype html><html><head><meta charset=utf-8><title>selfexplain study "
        f"{html.escape(study.name)}</title>"
        f"<style>{CSS}</style></head><body>",
        f"<h1>Study <code>{html.escape(study.name)}</code>: self vs other explanation</h1>",
        f"<p class=note>{html.escape(_intro(study, seconds)).replace('`', '')}</p>",
    ]
    captions = {
        "self_vs_other.png": "Headline score per task and system, held-out and in-distribution, "
        "with 95% intervals.",
        "scaling.png": "Held-out headline score against the number of training examples (log "
        "scale), "
        "with 95% intervals; grey lines: the baselines.",
        "training.png": "Each main run's validation loss against the optimizer step: "
        "in-distribution (solid; it chose the exported step, dotted) and held-out (dashed; it "
        "chose nothing).",
    }
    for title, note, table in sections:
        parts.append(_html_section(title, note, table))
    for name in plots:
        parts.append(
            f"<figure><img src='{name}' "
            f"alt='{name}'><figcaption>{captions[name]}</figcaption></figure>"
        )
    for (task, query_set), table in tables.items():
        parts.append(
            f"<h2>{html.escape(task)}: {query_set} queries</h2>"
            f"<p class=note>headline metric: {headline(task.split(' (')[0])}</p>"
            f"{_html_table(markdown_table(table))}"
        )
    for title, note, table in appendix:
        parts.append(_html_section(title, note, table))
    parts.append(
        "<h2>Stage wall times</h2>"
        + _html_table(
            "| stage | seconds |\n|---|---|\n"
            + "\n".join(f"| {k} | {v:.0f} |" for k, v in seconds.items())
        )
    )
    parts.append(
        "<p class=note>Data: <a href='results.csv'>results.csv</a>, <a "
        "href='results.json'>results.json</a>.</p>"
    )
    return "\n".join(parts) + "</body></html>\n"
