"""Where ``train.patience`` stops a run, read off its validation curve.

The loop counts validations without a new lowest in-distribution loss as it trains; a run that
goes on from a shorter one trained without patience (a learning-rate sweep's,
:mod:`selfexplain.study.warm_start`) has to replay that count over the curve it inherits.
"""

from __future__ import annotations

from typing import NamedTuple

IN_DISTRIBUTION = "val_in_distribution"


class PatienceStop(NamedTuple):
    index: int
    """The stopping validation's position in the curve."""
    step: int
    best_step: int
    """The step of lowest in-distribution loss up to the stop: the weights then exported."""


def patience_stop(validation_curve: list[dict], patience: int) -> PatienceStop | None:
    """The validation at which ``patience`` validations in a row without a lower in-distribution
    loss stop training; None if they never do (or ``patience`` is 0)."""
    if not patience:
        return None
    best, best_step, since = None, 0, 0
    for index, point in enumerate(validation_curve):
        loss = point.get(IN_DISTRIBUTION)
        if loss is not None and (best is None or loss < best):
            best, best_step, since = loss, point["step"], 0
            continue
        since += 1
        if since >= patience:
            return PatienceStop(index, point["step"], best_step)
    return None
