"""Training progress for people: a progress bar and TensorBoard scalars, from rank 0 only.

TensorBoard event files work offline (``tensorboard --logdir runs/<name>/tensorboard``). They are
written only for runs on a local filesystem; for object-storage runs the metrics still reach
``train_metrics.json`` and Ray Train's reports, and the bar still shows.
"""

from __future__ import annotations

from tqdm import tqdm


class TrainingTracker:
    def __init__(self, rank: int, total_steps: int, start_step: int, log_dir: str | None):
        self.active = rank == 0
        self.bar = tqdm(
            total=total_steps,
            initial=start_step,
            desc="train",
            unit="step",
            mininterval=5,
            disable=not self.active,
        )
        self.writer = None
        if self.active and log_dir:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=log_dir)

    def step(self, step: int, metrics: dict[str, float]) -> None:
        if not self.active:
            return
        self.bar.update(1)
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items()}, refresh=False)
        if self.writer is not None:
            for key, value in metrics.items():
                self.writer.add_scalar(f"train/{key}", value, step)

    def validation(self, step: int, losses: dict[str, float]) -> None:
        """Validation losses: TensorBoard scalars under ``validation/``; the bar does not move."""
        if self.active and self.writer is not None:
            for key, value in losses.items():
                self.writer.add_scalar(f"validation/{key}", value, step)

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()
