"""A main run that goes on from its learning-rate sweep instead of training those epochs again.

A sweep trains an explainer for ``sweep_epochs`` at each rate; its main run then trains at the
chosen rate from the start. When the two differ only in their length (epochs, patience) and the
learning rate over the sweep's steps is the same in both (a constant schedule after the same
warm-up), the main run's first ``sweep_epochs`` are the chosen sweep's step for step: the same
examples in the same order (drawn from seed and epoch), the same validations. So sweeps keep
their last checkpoint, the main run starts from the chosen one as a resumed run would, and its
record and results are those of a run trained from scratch. The losers' checkpoints are deleted
once the choice is made, the winner's once the main run is trained.
"""

from __future__ import annotations

import dataclasses

from selfexplain.config import RunConfig
from selfexplain.storage import Location
from selfexplain.study.config import Stage, StudyConfig
from selfexplain.train.loop import lr_factor
from selfexplain.train.patience import patience_stop
from selfexplain.train.trainer import (
    delete_checkpoints,
    final_checkpoint,
    is_trained,
    training_fingerprint,
)


def sweep_checkpoint(study: StudyConfig, stage: Stage) -> Location | None:
    """The chosen sweep's last checkpoint, when ``stage`` (a run after the sweep) can go on from
    it; None otherwise."""
    sweep = chosen_sweep(study, stage)
    if sweep is None:
        return None
    sweep_config, main_config = study.run_config(sweep), study.run_config(stage)
    checkpoint = final_checkpoint(sweep_config)
    if checkpoint is None:
        return None
    metrics = (sweep_config.run_dir / "train_metrics.json").read_json()
    return checkpoint if continues(sweep_config, main_config, metrics) else None


def continues(sweep: RunConfig, main: RunConfig, sweep_metrics: dict) -> bool:
    """Are the sweep's steps the first steps of ``main``? The same training but for its length,
    the same learning rate at each of the sweep's steps, and, where patience would stop ``main``
    inside them, the same best weights."""
    t, m = sweep.train, main.train
    lengthened = dataclasses.replace(
        sweep, train=dataclasses.replace(t, epochs=m.epochs, patience=m.patience)
    )
    if training_fingerprint(lengthened) != training_fingerprint(main) or t.epochs > m.epochs:
        return False
    steps = sweep_metrics["step"]
    sweep_rate = lr_factor(t.lr_schedule, t.warmup_steps, steps)
    main_rate = lr_factor(m.lr_schedule, m.warmup_steps, steps // t.epochs * m.epochs)
    if any(sweep_rate(step) != main_rate(step) for step in range(steps)):
        return False
    stop = patience_stop(sweep_metrics["validation_curve"], m.patience) if m.select_best else None
    return stop is None or stop.best_step == sweep_metrics["best_step"]


def chosen_sweep(study: StudyConfig, stage: Stage) -> Stage | None:
    """The sweep stage at the rate chosen for ``stage``'s explainer (a main run, not a sweep);
    None before the choice."""
    if stage.role is None or stage.learning_rate is not None or not study.learning_rates:
        return None
    rate = study.chosen_learning_rate(stage)
    if rate is None:
        return None
    return Stage(stage.task, stage.role, swapped=stage.swapped, learning_rate=rate)


def release_sweep_checkpoints(study: StudyConfig, stage: Stage) -> None:
    """After a stage of ``stage``'s explainer: delete the kept sweep checkpoints no run will go on
    from (every rate's but the chosen one's, and that one's once its main run is trained)."""
    if stage.role is None or not study.learning_rates:
        return
    main = Stage(stage.task, stage.role, swapped=stage.swapped)
    chosen = chosen_sweep(study, main)
    if chosen is None:  # the sweep is not finished: every rate may still win
        return
    main_done = is_trained(study.run_config(main))
    for rate in study.learning_rates:
        sweep = dataclasses.replace(chosen, learning_rate=rate)
        if rate != chosen.learning_rate or main_done:
            delete_checkpoints(study.run_config(sweep))
