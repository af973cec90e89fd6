"""Results as a Markdown table a person can read at a glance."""

from __future__ import annotations

COLUMNS = [
    ("exact_match", "exact match"),
    ("has_changed_f1", "has-changed F1"),
    ("content_match", "content match"),
    ("balanced_accuracy", "balanced acc. (changed?)"),
    ("changed_exact_match", "exact match (changed rows)"),
    ("similarity", "similarity (MiniLM)"),
    ("retrieval_accuracy", "retrieval (1 of 5)"),
    ("detection_auroc", "detection AUROC"),
    ("word_f1", "word F1"),
    ("parse_rate", "parse rate"),
    ("n", "n"),
    ("groups", "units"),
]


def markdown_table(results: dict[str, dict[str, float]]) -> str:
    """One row per explainer or baseline; only the columns some row has a value for. A metric
    with a bootstrap interval (``<metric>_ci``) shows it in brackets."""
    columns = [(key, title) for key, title in COLUMNS if any(key in m for m in results.values())]
    header = "| explainer | " + " | ".join(title for _, title in columns) + " |"
    rule = "|---|" + "---:|" * len(columns)
    lines = [header, rule]
    for name, metrics in results.items():
        cells = [_format(metrics.get(key), metrics.get(f"{key}_ci")) for key, _ in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _format(value, interval=None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    if value != value:  # NaN: the metric is undefined for this split
        return "n/a"
    if interval is not None and interval[0] == interval[0]:
        return f"{value:.3f} [{interval[0]:.2f}, {interval[1]:.2f}]"
    return f"{value:.3f}"
