"""The study report's table of trained runs: how long each trained and what stopped it.

A comparison or a scaling curve means little if a point was cut off by its epoch budget while its
in-distribution loss still fell; this table shows, run by run, whether patience ended training
(converged, by the study's rule) or the budget did.
"""

from __future__ import annotations

from selfexplain.storage import Location
from selfexplain.study.config import StudyConfig

NOTE = (
    "Every trained run but the sweeps: its training examples, learning rate, steps, the step of "
    "lowest in-distribution validation loss (its weights were exported) with that loss and the "
    "held-out loss at the same step (shown, never used), and what ended training: patience "
    "(validations in a row without a lower in-distribution loss) or the epoch budget."
)


def held_out_at_best(metrics: dict) -> str:
    """The held-out validation loss at the step of lowest in-distribution loss in a run's
    ``train_metrics.json``, or "-"."""
    curve = metrics.get("validation_curve", [])
    curve = [p for p in curve if "val_held_out" in p and "val_in_distribution" in p]
    if not curve:
        return "-"
    return f"{min(curve, key=lambda p: p['val_in_distribution'])['val_held_out']:.4f}"


def training_runs_markdown(study: StudyConfig) -> str:
    """One row per trained run (main runs, controls, scaling points) in the study's order; empty
    when none has trained."""
    rows = []
    for stage in study.stages():
        if stage.role is None or stage.learning_rate is not None:
            continue
        metrics_file = Location(study.folder) / stage.name / "train_metrics.json"
        if not metrics_file.exists():
            continue
        metrics = metrics_file.read_json()
        train = study.run_config(stage).train
        if metrics.get("stopped_early"):
            ended = f"patience ({train.patience})"
        elif metrics.get("epoch", 0) >= train.epochs:
            ended = f"budget ({train.epochs} epochs)"
        else:
            ended = "under way"
        best = metrics.get("best_loss")
        rows.append(
            f"| {stage.name} | {metrics.get('examples', '-')} | {train.learning_rate:g} "
            f"| {metrics.get('step', '-')} | {metrics.get('best_step', '-')} "
            f"| {'-' if best is None else f'{best:.4f}'} | {held_out_at_best(metrics)} "
            f"| {ended} |"
        )
    if not rows:
        return ""
    head = (
        "| run | examples | learning rate | steps | best step | in-distribution loss "
        "| held-out loss, same step | ended by |"
    )
    return head + "\n|---|---:|---:|---:|---:|---:|---:|---|\n" + "\n".join(rows)
