"""The study's two figures, drawn headless with matplotlib (Agg)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter  # noqa: E402

from selfexplain.study.results import headline, system_order  # noqa: E402

QUERY_SET_ORDER = ("held-out", "in-distribution")


def _errors(rows: pd.DataFrame) -> np.ndarray:
    low = (rows["value"] - rows["ci_low"].astype(float)).clip(lower=0).fillna(0)
    high = (rows["ci_high"].astype(float) - rows["value"]).clip(lower=0).fillna(0)
    return np.vstack([low.to_numpy(), high.to_numpy()])


def plot_self_vs_other(frame: pd.DataFrame, tasks: list[str], path: Path) -> Path:
    """One panel per task: grouped bars (query sets) per system, with 95% interval whiskers."""
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        metric = headline(task)
        part = frame[(frame.task == task) & (frame.metric == metric) & (frame.data_fraction == 1.0)]
        systems = system_order(part)
        width = 0.8 / len(QUERY_SET_ORDER)
        for k, query_set in enumerate(QUERY_SET_ORDER):
            rows = part[part.query_set == query_set].set_index("system").reindex(systems)
            x = np.arange(len(systems)) + (k - (len(QUERY_SET_ORDER) - 1) / 2) * width
            ax.bar(
                x,
                rows["value"].fillna(0),
                width,
                yerr=_errors(rows),
                capsize=3,
                label=query_set,
                color=("#3b6ea8", "#a8c5e6")[k],
            )
        ax.set_xticks(
            np.arange(len(systems)),
            [s.replace(" (", "\n(") for s in systems],
            rotation=30,
            ha="right",
            fontsize=8,
        )
        ax.set_title(f"{task}: {metric.replace('_', ' ')}")
        ax.set_ylim(0, 1)
        if metric == "balanced_accuracy":
            ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_scaling(frame: pd.DataFrame, tasks: list[str], path: Path) -> Path:
    """One panel per task: held-out headline score against the number of training examples (the
    paper's data-efficiency figure; the fraction where that count is unknown), per explainer,
    with the baselines as horizontal lines."""
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 5.2), squeeze=False)
    held = frame[frame.query_set == "held-out"]
    for ax, task in zip(axes[0], tasks):
        metric = headline(task)
        part = held[(held.task == task) & (held.metric == metric)]
        for role, color in (("self", "#3b6ea8"), ("other", "#d9822b")):
            rows = part[(part.role == role) & (part.kind == "trained")].sort_values("data_fraction")
            if rows.empty:
                continue
            x = rows.train_examples if rows.train_examples.notna().all() else rows.data_fraction
            # whiskers too, so a single point (an explainer without the sweep) shows its interval
            ax.errorbar(
                x,
                rows.value,
                yerr=_errors(rows),
                fmt="o-",
                capsize=3,
                color=color,
                label=rows.system.iloc[0],
            )
            ax.fill_between(
                x, rows.ci_low.astype(float), rows.ci_high.astype(float), color=color, alpha=0.2
            )
        # the untrained self-explainer is a baseline too (on hint it is the strongest system)
        baselines = part[
            (part.kind == "baseline") | ((part.kind == "untrained") & (part.role == "self"))
        ]
        for baseline, style in zip(
            baselines.system.unique(),
            (":", "--", "-.", (0, (1, 4)), (0, (3, 1, 1, 1)), (0, (5, 2))),
        ):
            rows = baselines[baselines.system == baseline].sort_values("data_fraction")
            ax.axhline(rows.value.iloc[-1], color="grey", ls=style, lw=1, label=baseline)
        ax.set_xscale(
            "log", base=2
        )  # the sizes of a scaling sweep double, as in the paper's figure
        counted = part.train_examples.notna().all() if "train_examples" in part else False
        ax.set_xlabel("training examples" if counted else "fraction of training data")
        ax.set_ylabel(f"held-out {metric.replace('_', ' ')}")
        ax.set_title(task)
        # below the panel: inside it, the legend of six baselines covered the points
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3))
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_training_curves(curves: dict[tuple[str, str], dict], tasks: list[str], path: Path) -> Path:
    """One panel per task: each main run's validation losses against the optimizer step, the
    in-distribution loss (which chose the exported step, marked) solid and the held-out loss
    (which chose nothing) dashed, so a reader sees where each explainer converged and whether
    held-out loss went up while in-distribution loss went down.

    ``curves`` maps (task, role) to a run's ``train_metrics.json``."""
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for role, color in (("self", "#3b6ea8"), ("other", "#d9822b")):
            metrics = curves.get((task, role))
            if not metrics or not metrics.get("validation_curve"):
                continue
            points = pd.DataFrame(metrics["validation_curve"])
            for column, style, where in (
                ("val_in_distribution", "o-", "in-distribution"),
                ("val_held_out", "s--", "held-out"),
            ):
                if column in points:
                    ax.plot(
                        points.step,
                        points[column],
                        style,
                        color=color,
                        markersize=3,
                        label=f"{role}, {where}",
                    )
            if metrics.get("best_step"):
                ax.axvline(metrics["best_step"], color=color, ls=":", lw=1)
        ax.set_yscale("log")  # change-task losses fall by 10x and more; features' by less
        ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 3, 5)))
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))  # 0.03, not 3 x 10^-2
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("optimizer step (dotted: the exported step)")
        ax.set_ylabel("validation loss")
        ax.set_title(f"{task}: validation loss")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
