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
from selfexplain.study.config import StudyConfig, run_name
from selfexplain.study.paired import TRAINED, best_other_system, paired_difference, read_predictions
from selfexplain.tasks import get_task

log = logging.getLogger(__name__)

QUERY_SETS = {"held-out": "results", "in-distribution": "in_distribution"}
KIND_ORDER = {"trained": 0, "untrained": 1, "baseline": 2}


def headline(task: str) -> str:
    """The one number per task the plots show (the paper's: exact match for the change tasks);
    the tables show the others too."""
    return get_task(task).headline_metric


def _kept(system: System, role: str, fraction: float) -> bool:
    """Every run's trained explainer; untrained explainers of full-data runs; baselines from one
    run only (the full-data self run: they do not depend on the explainer)."""
    if system.kind == "trained":
        return True
    if fraction < 1.0:
        return False
    return system.kind == "untrained" or role == "self"


def system_results(study: StudyConfig) -> list[dict]:
    """Long-format rows: one per (task, query set, system, data fraction, metric)."""
    rows = []
    for task in study.tasks:
        for role in study.explainers():
            for fraction in study.fractions_for(role):
                path = Location(study.folder) / run_name(task, role, fraction) / "results.json"
                if not path.exists():
                    continue
                saved = path.read_json()
                trained_on = _training_examples(Location(study.folder) / run_name(task, role, fraction))
                systems = {label: System.from_dict(record) for label, record in saved["systems"].items()}
                for query_set, key in QUERY_SETS.items():
                    for label, metrics in saved.get(key, {}).items():
                        system = systems[label]
                        if not _kept(system, role, fraction):
                            continue
                        name = system.study_label
                        for metric, value in metrics.items():
                            if metric.endswith("_ci"):
                                continue
                            low, high = metrics.get(f"{metric}_ci", (None, None))
                            rows.append({"task": task, "query_set": query_set, "system": name, "role": role,
                                         "kind": system.kind, "data_fraction": fraction, "train_examples": trained_on,
                                         "metric": metric, "value": value,
                                         "ci_low": low, "ci_high": high, "n": metrics.get("n")})
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
                        "other": (systems["role"] == "other") & (systems["kind"] != "baseline"),
                        "system": systems["system"]})
    return key.sort_values(["kind", "other", "system"])["system"].tolist()


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


def paired_rows(study: StudyConfig) -> list[dict]:
    """Self minus other on identical queries, per task and query set (full-data runs)."""
    rows = []
    if "other" not in study.explainers():
        return rows
    for task in study.tasks:
        runs = {role: read_predictions(Location(study.folder) / run_name(task, role, 1.0)) for role in ("self", "other")}
        if any(frame is None for frame in runs.values()):
            continue
        for family, subset in _families(runs["self"]):
            for row in paired_difference(subset, runs["other"], get_task(task).per_query_metric, seed=0):
                rows.append({"task": _task_label(task, family), "metric": headline(task), **row})
    return rows


def _families(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """("", all rows), then each family of a task that reports several apart (features)."""
    out = [("", frame)]
    families = [f for f in frame["family"].unique() if f] if "family" in frame else []
    if len(families) > 1:
        out += [(family, frame[frame["family"] == family]) for family in sorted(families)]
    return out


def _task_label(task: str, family: str) -> str:
    return f"{task} ({family})" if family else task


def versus_baseline_rows(study: StudyConfig) -> list[dict]:
    """Trained self minus the strongest other system of its run (a baseline or the untrained
    explainer), per task, family and query set, paired on the same queries."""
    rows = []
    for task in study.tasks:
        frame = read_predictions(Location(study.folder) / run_name(task, "self", 1.0))
        if frame is None:
            continue
        metric = get_task(task).per_query_metric
        for family, subset in _families(frame):
            for query_set in subset["query_set"].unique():
                part = subset[subset["query_set"] == query_set]
                best = best_other_system(part, metric, query_set)
                if best is None:
                    continue
                for row in paired_difference(part, part, metric, system=TRAINED, second_system=best, seed=0):
                    rows.append({"task": _task_label(task, family), "metric": headline(task), "baseline": best, **row})
    return rows


def _versus_baseline_markdown(rows: list[dict]) -> str:
    lines = ["| task | query set | metric | trained self | best other system | its score | "
             "self - it [95% CI] | queries | units |", "|---|---|---|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['query_set']} | {r['metric']} | {r['first']:.3f} | {r['baseline']} | "
                     f"{r['second']:.3f} | {r['difference']:+.3f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}] | "
                     f"{r['n']} | {r['units']} |")
    return "\n".join(lines)


def _paired_markdown(rows: list[dict]) -> str:
    lines = ["| task | query set | metric | self | other | self - other [95% CI] | queries | units |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['query_set']} | {r['metric']} | {r['first']:.3f} | {r['second']:.3f} | "
                     f"{r['difference']:+.3f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}] | {r['n']} | {r['units']} |")
    return "\n".join(lines)


def write_report(study: StudyConfig, seconds: dict[str, float]) -> dict:
    folder = Location(study.folder) / "report"
    rows = system_results(study)
    if not rows:
        raise FileNotFoundError(f"no scored runs under {study.folder}; run the study first")
    frame = pd.DataFrame(rows)
    (folder / "results.csv").write_text(frame.to_csv(index=False))
    paired = paired_rows(study)
    versus = versus_baseline_rows(study)
    (folder / "results.json").write_json({"study": study.name, "target": study.target,
                                          "other_explainer": study.other_explainer, "rows": rows,
                                          "self_minus_other": paired, "self_minus_best_baseline": versus,
                                          "seconds": seconds})
    tables = _tables(frame)
    plots = {}
    if folder.is_local:
        from selfexplain.study.plots import plot_scaling, plot_self_vs_other

        out = folder.local_path
        scored = [task for task in study.tasks if task in set(frame["task"])]  # a study under way has gaps
        plots = {"self_vs_other.png": plot_self_vs_other(frame, scored, out / "self_vs_other.png"),
                 "scaling.png": plot_scaling(frame, scored, out / "scaling.png")}
    headlines = {"paired": paired, "versus": versus}
    (folder / "report.md").write_text(_markdown(study, tables, seconds, plots, headlines))
    (folder / "report.html").write_text(_html(study, tables, seconds, plots, headlines))
    log.info("study report written to %s", folder)
    return {"report": str(folder), "tables": {f"{t} / {q}": v for (t, q), v in tables.items()},
            "self_minus_other": paired, "self_minus_best_baseline": versus}


def _intro(study: StudyConfig, seconds: dict[str, float]) -> str:
    total = sum(seconds.values())
    return (f"Target `{study.target}` explained by itself (self) and by `{study.other_explainer}` (other), "
            f"both fine-tuned on the same corpus rows with the same batch size and epochs. "
            f"Held-out queries come from groups (prompts, concepts, entities) never seen in training; "
            f"in-distribution queries are unseen rows of seen groups. Brackets: 95% cluster-bootstrap intervals "
            f"that resample held-out units (prompt families, questions, entity pairs, features), not rows. "
            f"Stage wall time in all: {total / 60:.1f} min.")


PAIRED_NOTE = ("Self minus other, paired: both explainers' headline score on the very same queries, and the "
               "interval of the difference from one resample of held-out units for both.")
VERSUS_NOTE = ("Trained self minus the strongest other system on the same queries (nearest neighbour, SelfIE, "
               "the untrained explainer, the rules: whichever scores highest, picked after the fact).")


def _headline_sections(headlines: dict) -> list[tuple[str, str, str]]:
    """(title, note, markdown table) of each headline comparison that has rows."""
    sections = [("Headline: self - other", PAIRED_NOTE, headlines["paired"], _paired_markdown),
                ("Headline: trained self - best baseline", VERSUS_NOTE, headlines["versus"], _versus_baseline_markdown)]
    return [(title, note, render(rows)) for title, note, rows, render in sections if rows]


def _markdown(study: StudyConfig, tables, seconds, plots, headlines) -> str:
    parts = [f"# Study `{study.name}`: self vs other explanation\n", _intro(study, seconds) + "\n"]
    for title, note, table in _headline_sections(headlines):
        parts.append(f"## {title}\n\n{note}\n\n{table}\n")
    for (task, query_set), table in tables.items():
        parts.append(f"## {task}: {query_set} queries (headline: {headline(task)})\n\n{markdown_table(table)}\n")
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


def _html(study: StudyConfig, tables, seconds, plots, headlines) -> str:
    parts = [f"<!doctype html><html><head><meta charset=utf-8><title>selfexplain study {html.escape(study.name)}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>Study <code>{html.escape(study.name)}</code>: self vs other explanation</h1>",
             f"<p class=note>{html.escape(_intro(study, seconds)).replace('`', '')}</p>"]
    captions = {"self_vs_other.png": "Headline score per task and system, held-out and in-distribution, with 95% intervals.",
                "scaling.png": "Held-out headline score against the number of training examples (log scale), "
                               "with 95% intervals; grey lines: the baselines."}
    for title, note, table in _headline_sections(headlines):
        parts.append(f"<h2>{html.escape(title)}</h2><p class=note>{html.escape(note)}</p>" + _html_table(table))
    for name in plots:
        parts.append(f"<figure><img src='{name}' alt='{name}'><figcaption>{captions[name]}</figcaption></figure>")
    for (task, query_set), table in tables.items():
        parts.append(f"<h2>{html.escape(task)}: {query_set} queries</h2>"
                     f"<p class=note>headline metric: {headline(task)}</p>{_html_table(markdown_table(table))}")
    parts.append("<h2>Stage wall times</h2>" + _html_table(
        "| stage | seconds |\n|---|---|\n" + "\n".join(f"| {k} | {v:.0f} |" for k, v in seconds.items())))
    parts.append("<p class=note>Data: <a href='results.csv'>results.csv</a>, <a href='results.json'>results.json</a>.</p>")
    return "\n".join(parts) + "</body></html>\n"
