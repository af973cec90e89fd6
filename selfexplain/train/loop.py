"""The per-worker training loop that Ray Train runs on every rank, as a recipe read top to bottom.

:class:`ExplainerTraining` sets up (model, DeepSpeed engine, restored progress, the rank's data),
then :meth:`~ExplainerTraining.run` trains epoch by epoch: one micro-batch at a time, an
optimizer step at each accumulation boundary, validation and a checkpoint every so many steps
and at each epoch's end, and the HF export with the last checkpoint. With ``train.select_best``
every validation may make a new best (exported then, carried in every later checkpoint), and
``train.patience`` validations without one end training: ``train.epochs`` is then a budget, and
training runs to convergence on the in-distribution validation loss.

DeepSpeed joins the process group Ray Train already created (gloo on CPU, NCCL on GPU). Every
rank saves its own DeepSpeed shard (ZeRO partitions optimizer state across ranks) into one
checkpoint folder that ``ray.train.report`` persists; rank 0 adds the progress record and, at the
end, the export.

Each epoch reads the examples in a fresh global order drawn from (seed, epoch)
(:mod:`selfexplain.train.order`). Resume is step-exact: that order depends only on (seed,
epoch), so a run restored from a checkpoint taken ``k`` steps into an epoch replays that
epoch's order, skips its first ``k`` optimizer steps' micro-batches without computing them, and
goes on as the uninterrupted run would have.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import socket
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray.train
import torch

from selfexplain import internals
from selfexplain.config import RunConfig
from selfexplain.explainer.export import (
    EXPLAINER_INFO,
    EXPORT_DIR,
    MODEL_CARD,
    ExplainerInfo,
    save_explainer,
)
from selfexplain.explainer.interface import VectorInterface
from selfexplain.explainer.vectors import token_embedding_norm, with_vector_input
from selfexplain.models.loading import load_model
from selfexplain.train.deepspeed_config import deepspeed_config
from selfexplain.train.examples import answer_only_loss, collate
from selfexplain.train.lora import is_lora, merged_copy, trainable_parameters, with_lora
from selfexplain.train.order import epoch_order, epoch_variant, length_bucketed, rank_micro_batches
from selfexplain.train.patience import patience_stop
from selfexplain.train.throughput import Throughput
from selfexplain.train.tracking import TrainingTracker

log = logging.getLogger("selfexplain.train")
PROGRESS = "progress.json"


@dataclass(frozen=True)
class LoopConfig:
    """Everything a worker needs, decided on the driver
    (:func:`selfexplain.train.trainer.train`)."""

    run: RunConfig
    explainer: str
    """The explainer's model reference, resolved by each worker on its node."""
    steps_per_epoch: int
    model_card: str
    info: ExplainerInfo
    training_examples: Any = None
    """A ``ray.ObjectRef`` to the training set's columns
    (:func:`selfexplain.train.order.example_columns`)."""
    validation_examples: dict[str, Any] = field(default_factory=dict)
    """The validation query sets by name, each a ``ray.ObjectRef`` to its columns."""
    vector_interface: VectorInterface | None = None
    tensorboard_dir: str | None = None
    warm_start: Any = None
    """A ``ray.train.Checkpoint`` of a shorter run of the same training (a learning-rate sweep's,
    :mod:`selfexplain.study.warm_start`) to go on from when the run has none of its own."""


@dataclass
class Progress:
    """Training so far: what each checkpoint's ``progress.json`` and Ray Train report record."""

    step: int = 0
    epoch: int = 0
    """Epochs finished."""
    epoch_step: int = 0
    """Optimizer steps trained into the next epoch (0 at an epoch's end)."""
    loss_curve: list[float] = field(default_factory=list)
    validation_curve: list[dict] = field(default_factory=list)
    resumed_from_step: int = 0
    warm_started_from: str = ""
    """The checkpoint of the shorter run this one went on from (empty: none)."""
    best_step: int = 0
    """With ``train.select_best``: the optimizer step whose weights are exported; 0 = none yet."""
    best_epoch: int = 0
    """The epoch (1-based) that step belongs to."""
    best_loss: float | None = None
    """Its in-distribution validation loss."""
    validations_since_best: int = 0
    stopped_early: bool = False
    """``train.patience`` validations passed without a new best, so training stopped."""
    trainable_parameters: int = 0
    parameters: int = 0

    @classmethod
    def from_record(cls, record: dict) -> Progress:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in record.items() if key in names})

    def metrics(self) -> dict:
        return {
            **dataclasses.asdict(self),
            "loss": self.loss_curve[-1] if self.loss_curve else float("nan"),
        }


def adamw(params, lr: float, weight_decay: float = 0.0) -> torch.optim.AdamW:
    """AdamW with torch's fused kernel. On CPU torch otherwise takes its per-tensor loop: one step
    over SmolLM2-135M's parameters took 0.75 s there against 0.064 s fused (2 cores, measured)."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)


MAX_WARMUP_SHARE = 0.1


def lr_factor(schedule: str, warmup: int, total: int):
    """The learning-rate multiplier at each step: linear warm-up, then cosine decay or constant.
    The warm-up is capped at 10% of the run's steps, so a short run (a small data fraction of a
    scaling curve) measures training, not warm-up."""
    warmup = min(warmup, int(MAX_WARMUP_SHARE * total))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def selection_note(progress: Progress, new_best: bool, patience: int) -> str:
    """What best-checkpoint selection made of a validation, for its console line: exported, or
    the best so far and how many validations patience has left."""
    if new_best:
        return "  (lowest in-distribution loss so far: exported)"
    if progress.best_loss is None:
        return ""
    of = f" of {patience}" if patience else ""
    return (
        f"  (best {progress.best_loss:.4f} at step {progress.best_step}; "
        f"{progress.validations_since_best}{of} without a lower one)"
    )


def stopped_by_patience(progress: Progress, patience: int, steps_per_epoch: int) -> Progress:
    """``progress`` ended where ``patience`` validations without a new best would have stopped it.

    A run that goes on from a shorter one trained without patience (a learning-rate sweep) may
    start past that point; it then stops there, as it would have trained from scratch, with the
    same best weights and a record that ends at the stopping validation."""
    stop = patience_stop(progress.validation_curve, patience)
    if stop is None or progress.stopped_early:
        return progress
    if stop.best_step != progress.best_step:  # the study checks this before it warm-starts
        raise RuntimeError(
            f"the checkpoint went on from holds the best weights of step {progress.best_step}, "
            f"but patience stops this run at step {stop.step} with step {stop.best_step} best; "
            "train it from scratch"
        )
    return dataclasses.replace(
        progress,
        step=stop.step,
        epoch=-(-stop.step // steps_per_epoch),  # the stopped epoch counts as done
        epoch_step=0,
        loss_curve=progress.loss_curve[: stop.step],
        validation_curve=progress.validation_curve[: stop.index + 1],
        validations_since_best=patience,
        stopped_early=True,
    )


BEST_EXPORT_PREFIX = "selfexplain-best-"


def best_export_folder(temp_dir: str | None = None) -> Path:
    """A fresh temporary folder for the best validation's export, named after this process and
    host.

    A worker that is killed (a stopped sitting, a lost node) never reaches the cleanup, and a
    Gemma-3-270M export is 1 GB: the folders of this host's processes that no longer run are
    deleted first, so a study stopped and resumed over many sittings does not fill the disk. (The
    host in the name keeps a temporary folder that several nodes share from judging another
    node's processes.)"""
    parent, host = Path(temp_dir or tempfile.gettempdir()), socket.gethostname()
    for folder in parent.glob(f"{BEST_EXPORT_PREFIX}*@{host}-*"):
        pid = folder.name.removeprefix(BEST_EXPORT_PREFIX).split("@", 1)[0]
        if pid.isdigit() and not _is_running(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
    prefix = f"{BEST_EXPORT_PREFIX}{os.getpid()}@{host}-"
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def train_loop_per_worker(loop_config: dict) -> None:
    """Ray Train's entry point on every rank (``train_loop_config={"loop": LoopConfig}``)."""
    ExplainerTraining(loop_config["loop"]).run()


class ExplainerTraining:
    def __init__(self, loop: LoopConfig):

        _setup_logging()
        self.loop, self.config, self.train = loop, loop.run, loop.run.train
        context = ray.train.get_context()
        self.rank, self.world = context.get_world_rank(), context.get_world_size()
        torch.set_num_threads(
            self.train.torch_threads or max(1, (os.cpu_count() or 1) // self.world)
        )
        torch.manual_seed(self.config.seed)
        use_gpu = self.train.use_gpu and torch.cuda.is_available()
        self.device = (
            torch.device("cuda", context.get_local_rank()) if use_gpu else torch.device("cpu")
        )
        self.total_steps = loop.steps_per_epoch * self.train.epochs
        self.micro_batch = self.train.batch_size // self.train.grad_accum

        self.model, self.tokenizer, self.interface = self._explainer()
        self.engine, self.scheduler = self._engine(use_gpu)
        self.autocast = autocast_for(self.train.precision, use_gpu)
        # with select_best, rank 0 keeps the best epoch's export here and puts it in every
        # checkpoint
        self.best_export = best_export_folder() / EXPORT_DIR
        self.progress = self._restore()
        # every rank holds the whole training set and takes its share of each epoch's order, and
        # validates on the whole validation sets (ZeRO-3 forwards are collectives: every rank
        # must run the same batches)
        self.examples = ray.get(loop.training_examples)
        self.validation = {name: ray.get(ref) for name, ref in loop.validation_examples.items()}
        self.throughput = Throughput(self.world)
        self.tracker = TrainingTracker(
            self.rank, self.total_steps, self.progress.step, loop.tensorboard_dir
        )

    # --- setup ----------------------------------------------------------------------------
    def _explainer(self):
        """The explainer, with its vector input (and LoRA adapters) as configured."""

        model, tokenizer = load_model(
            self.loop.explainer, device=self.device, trust_remote_code=self.config.trust_remote_code
        )
        interface = self.loop.vector_interface
        if interface and interface.reference_norm is None:
            # the rescaling reference, fixed once from the base model and exported with it
            interface = interface.with_reference_norm(token_embedding_norm(model))
        if self.train.gradient_checkpointing:
            # non-reentrant: it works with frozen inputs (LoRA) and with the vector injection
            model.gradient_checkpointing_enable({"use_reentrant": False})
            model.config.use_cache = False
        lora = (lambda lm: with_lora(lm, self.train)) if self.train.lora_rank else None
        model = with_vector_input(model, tokenizer, interface, adapt_lm=lora).to(self.device)
        if interface and interface.projected and interface.projection_init == "lstsq":
            fit = fit_projection_on_shared_tokens(
                model, tokenizer, self.config.target, self.config.trust_remote_code
            )
            if self.rank == 0:
                log.info("projection fitted on the two models' shared tokens (R^2 %.3f)", fit)
        model.train()
        self.trainable, self.parameters = trainable_parameters(model)
        if self.rank == 0:
            log.info(
                "training %d of %d parameters (%.2f%%)%s",
                self.trainable,
                self.parameters,
                100 * self.trainable / self.parameters,
                f", LoRA rank {self.train.lora_rank}" if self.train.lora_rank else "",
            )
        return model, tokenizer, interface

    def _engine(self, use_gpu: bool):
        if not use_gpu:
            # said, not probed: DeepSpeed's probe ends in a warning on every CPU worker's console
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
        # deferred: DeepSpeed loads on the workers only, after DS_ACCELERATOR is set (the driver
        # imports this module for its loop function)
        import deepspeed

        from selfexplain.train.safe_checkpoint import use_weights_only_loading

        optimizer = adamw(
            parameter_groups(self.model, self.train),
            self.train.learning_rate,
            self.train.weight_decay,
        )
        schedule = lr_factor(self.train.lr_schedule, self.train.warmup_steps, self.total_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        with _prints_to_debug_log("deepspeed"):
            engine, _, _, scheduler = deepspeed.initialize(
                model=self.model,
                optimizer=optimizer,
                lr_scheduler=scheduler,
                config=deepspeed_config(self.train, use_gpu),
                dist_init_required=False,
            )
        use_weights_only_loading(engine)
        if self.world == 1 and self.train.zero == 0:  # one rank: the all-reduce is the identity
            internals.skip_single_rank_allreduce(engine)
        return engine, scheduler

    def _restore(self) -> Progress:
        """The progress of the checkpoint Ray Train restored, or else of the warm start (the
        engine's state loaded), or a fresh one."""

        # deferred: safe_checkpoint imports DeepSpeed (workers only)
        from selfexplain.train.safe_checkpoint import read_progress

        checkpoint = ray.train.get_checkpoint()
        warm = checkpoint is None and self.loop.warm_start is not None
        checkpoint = checkpoint or self.loop.warm_start
        if not checkpoint:
            return Progress(trainable_parameters=self.trainable, parameters=self.parameters)
        with checkpoint.as_directory() as folder:
            record = read_progress(folder, PROGRESS)
            self.engine.load_checkpoint(folder, tag=record["tag"])
            if self.train.select_best and (Path(folder) / EXPORT_DIR).is_dir():
                shutil.copytree(Path(folder) / EXPORT_DIR, self.best_export)
                self.label_export(self.best_export)  # a warm start's export names its own run
        progress = Progress.from_record(record)
        progress.resumed_from_step = progress.step
        if warm:
            progress.warm_started_from = checkpoint.path
            if self.train.select_best:
                progress = stopped_by_patience(
                    progress, self.train.patience, self.loop.steps_per_epoch
                )
        if self.rank == 0:
            log.info(
                "%s checkpoint at step %d (%d epochs done, %d steps into the next)%s",
                "went on from the" if warm else "resumed from",
                progress.step,
                progress.epoch,
                progress.epoch_step,
                f": {checkpoint.path}" if warm else "",
            )
        return progress

    # --- training -------------------------------------------------------------------------
    def run(self) -> None:
        try:
            if self.progress.epoch == self.train.epochs or self.progress.stopped_early:
                self.checkpoint(final=True)  # finished before, but the export never reached storage
            for epoch in range(self.progress.epoch, self.train.epochs):
                if self.progress.stopped_early:
                    break
                self.train_epoch(epoch)
                self.end_epoch(epoch)
            self.tracker.close()
        finally:  # the kept best export is a whole model: never leave it in the temp folder
            shutil.rmtree(self.best_export.parent, ignore_errors=True)

    def train_epoch(self, epoch: int) -> None:
        """This rank's micro-batches of the epoch's order, after those a resumed run already
        trained."""
        skip = self.train.grad_accum * self.progress.epoch_step
        losses, tokens = [], 0
        batches = epoch_micro_batches(
            self.examples,
            self.config.seed,
            epoch,
            self.micro_batch,
            self.rank,
            self.world,
            self.train.length_buckets,
        )
        for index, picked in enumerate(batches):
            if index < skip:  # trained before the checkpoint this run resumed from
                continue
            loss, batch_tokens = self.micro_step(picked, epoch)
            losses.append(loss)
            tokens += batch_tokens
            if self.engine.is_gradient_accumulation_boundary():
                self.after_optimizer_step(epoch, sum(losses) / len(losses), tokens)
                losses, tokens = [], 0
                if self.progress.stopped_early:
                    return

    def micro_step(self, picked, epoch: int) -> tuple[float, int]:
        """Forward and backward on one micro-batch (the engine steps at accumulation boundaries)."""

        inputs = {
            k: v.to(self.device)
            for k, v in micro_batch_inputs(
                self.examples, picked, self.config.seed, epoch, self.tokenizer.pad_token_id
            ).items()
        }
        with self.autocast():
            loss = answer_only_loss(self.engine, inputs)
        self.engine.backward(loss)
        self.engine.step()
        return loss.item(), int(inputs["attention_mask"].sum())

    def after_optimizer_step(self, epoch: int, loss: float, tokens: int) -> None:
        """Record the step; validate and checkpoint when it is time."""
        progress, train = self.progress, self.train
        self.throughput.step(tokens)
        progress.step += 1
        progress.epoch_step += 1
        progress.loss_curve.append(loss)
        lr = self.scheduler.get_last_lr()[0]
        self.tracker.step(
            progress.step,
            {"loss": loss, "lr": lr, "tokens_per_second": self.throughput.tokens_per_second},
        )
        if train.validate_every and progress.step % train.validate_every == 0:
            self.validate_and_select(epoch)
        if self.rank == 0 and (progress.step % 10 == 0 or progress.step == self.total_steps):
            log.info(
                "step %d/%d  epoch %d  loss %.4f  lr %.2e  %.0f tok/s",
                progress.step,
                self.total_steps,
                epoch + 1,
                loss,
                lr,
                self.throughput.tokens_per_second,
            )
        if (
            train.checkpoint_every
            and progress.step % train.checkpoint_every == 0
            and progress.epoch_step < self.loop.steps_per_epoch
        ):  # the epoch's end checkpoints anyway
            with self.throughput.paused():  # checkpoint writes stay out of the throughput
                self.checkpoint(extra=self.throughput.metrics())

    def end_epoch(self, epoch: int) -> None:
        # the steps so far, before this epoch's validation and checkpoint
        speed = self.throughput.metrics()
        curve = self.progress.validation_curve
        if not curve or curve[-1]["step"] != self.progress.step:  # not validated at this step yet
            self.validate_and_select(epoch)
        self.progress.epoch, self.progress.epoch_step = epoch + 1, 0
        latest = {k: v for k, v in (curve[-1:] or [{}])[0].items() if k != "step"}
        final = epoch == self.train.epochs - 1 or self.progress.stopped_early
        self.checkpoint(extra={**speed, **latest}, final=final)

    def validate_and_select(self, epoch: int) -> None:
        """Validate; with ``train.select_best``, export the weights when the in-distribution loss
        is a new low. The console line says which, and how near patience is to stopping."""
        losses = self.validate()
        new_best = self.train.select_best and self._new_best(losses, epoch)
        if losses and self.rank == 0:
            log.info(
                "step %d  validation: %s%s",
                self.progress.step,
                "  ".join(f"{k} {v:.4f}" for k, v in losses.items()),
                # empty without select_best: nothing was selected, so no best is known
                selection_note(self.progress, new_best, self.train.patience),
            )
            if self.progress.stopped_early:
                log.info(
                    "stopping at step %d: %d validation%s without a lower in-distribution loss",
                    self.progress.step,
                    self.train.patience,
                    "" if self.train.patience == 1 else "s",
                )
        if new_best:
            self.export(self.best_export, replace=True)

    def _new_best(self, losses: dict[str, float], epoch: int) -> bool:
        """Is this validation's in-distribution loss the lowest so far? Rank 0 decides and tells
        the others (ZeRO-3's export is a collective: every rank must agree). ``train.patience``
        validations in a row without one stop training."""
        progress = self.progress
        loss = losses.get("val_in_distribution")
        decision = [loss is not None and (progress.best_loss is None or loss < progress.best_loss)]
        if self.world > 1:
            torch.distributed.broadcast_object_list(decision, src=0)
        if decision[0]:
            progress.best_step, progress.best_epoch, progress.best_loss = (
                progress.step,
                epoch + 1,
                loss,
            )
            progress.validations_since_best = 0
            return True
        progress.validations_since_best += 1
        if self.train.patience and progress.validations_since_best >= self.train.patience:
            progress.stopped_early = True
        return False

    def validate(self) -> dict[str, float]:
        """Mean answer loss on each validation set; its time is kept out of the throughput."""
        with self.throughput.paused():
            losses = {
                name: validation_loss(
                    self.engine,
                    data,
                    self.micro_batch,
                    self.tokenizer.pad_token_id,
                    self.device,
                    self.autocast,
                )
                for name, data in self.validation.items()
            }
        if losses:
            step = self.progress.step
            self.progress.validation_curve.append({"step": step, **losses})
            self.tracker.validation(step, losses)
        return losses

    # --- checkpoint and export ------------------------------------------------------------
    def checkpoint(self, extra: dict | None = None, final: bool = False) -> None:
        """Every rank saves its DeepSpeed shard into one folder; rank 0 adds the progress record
        and the HF export: with the ``final`` checkpoint, or with ``train.select_best`` the best
        validation's (exported when it was reached, and carried in every later checkpoint).
        ``ray.train.report`` persists it."""

        metrics = {**self.progress.metrics(), **(extra or {})}
        tag = f"step-{self.progress.step}"
        with tempfile.TemporaryDirectory(prefix="selfexplain-ckpt-") as folder:
            self.engine.save_checkpoint(folder, tag=tag)
            if self.rank == 0:
                (Path(folder) / PROGRESS).write_text(json.dumps({"tag": tag, **metrics}))
            if final and self.train.select_best and not self.progress.best_step:
                # no in-distribution loss was ever measured: the last weights it is
                self.export(self.best_export, replace=True)
            if self.train.select_best:
                if self.rank == 0 and self.best_export.is_dir():
                    shutil.copytree(self.best_export, Path(folder) / EXPORT_DIR)
            elif final:
                self.export(Path(folder) / EXPORT_DIR)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))

    def export(self, out_dir: Path, replace: bool = False) -> None:
        """A plain HF directory (safetensors) of the trained explainer, from rank 0, with the
        vector interface and projection for vector tasks (see
        :mod:`selfexplain.explainer.export`)."""

        state_dict = None
        if self.engine.zero_optimization_stage() == 3:
            state_dict = (
                self.engine._zero3_consolidated_16bit_state_dict()
            )  # a collective: every rank calls it
        if self.rank != 0:
            return
        if replace and out_dir.exists():
            shutil.rmtree(out_dir)
        module = self.engine.module
        if is_lora(module):
            module = merged_copy(module)  # a plain HF model out, adapters merged
        save_explainer(module, self.tokenizer, out_dir, self.interface, state_dict)
        self.label_export(out_dir)

    def label_export(self, out_dir: Path) -> None:
        """This run's record and model card in an export; the card last: it marks the export
        complete."""
        (out_dir / EXPLAINER_INFO).write_text(self.loop.info.to_json())
        (out_dir / MODEL_CARD).write_text(self.loop.model_card)


@contextlib.contextmanager
def _prints_to_debug_log(source: str) -> Iterator[None]:
    """What ``source`` print()s to stdout inside the block goes to this module's logger at debug
    level (shown only when that level is turned on), not to the console: DeepSpeed prints
    "deepspeed_shm_comm_op built successfully" twice from every CPU rank at each start.
    ``print`` itself is swapped, not stdout: Ray Train turns a worker's prints into log records
    (its print patch)."""
    original = builtins.print

    def to_log(*objects, sep=" ", end="\n", file=None, flush=False):
        if file not in (None, sys.stdout):
            return original(*objects, sep=sep, end=end, file=file, flush=flush)
        log.debug("%s: %s", source, sep.join(map(str, objects)))

    builtins.print = to_log
    try:
        yield
    finally:
        builtins.print = original


def _setup_logging() -> None:
    """Step, validation and resume lines from rank 0; Ray Train's per-report INFO lines and
    DeepSpeed's set-up chatter stay out of the console. (The ``ray.train`` loggers' INFO lines
    are kept off it by the run's ``LoggingConfig``, which leaves them in the session folder; the
    report logger is named after its file, outside ``ray.train``, so that filter misses it.)"""

    report_logger = internals.ray_train_report_logger()
    if report_logger:
        logging.getLogger(report_logger).setLevel(logging.WARNING)
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.distributed")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def epoch_micro_batches(
    examples: dict,
    seed: int,
    epoch: int,
    micro_batch: int,
    rank: int = 0,
    world: int = 1,
    length_buckets: bool = True,
) -> Iterator[np.ndarray]:
    """One rank's micro-batches of an epoch (arrays of example indices): the epoch's global order,
    regrouped by length when asked, cut into this rank's share."""

    order = epoch_order(examples["record_id"], examples.get("copy"), seed, epoch)
    if length_buckets:
        lengths = [len(ids) for ids in phrased(examples, seed, epoch)[0]]
        order = length_bucketed(order, lengths, micro_batch * world, seed, epoch)
    return rank_micro_batches(order, rank, world, micro_batch)


def micro_batch_inputs(
    examples: dict, picked: np.ndarray, seed: int, epoch: int, pad_id: int
) -> dict[str, torch.Tensor]:
    """The model inputs of one micro-batch, each example in this epoch's phrasing."""

    batch = {name: values[picked] for name, values in examples.items()}
    ids, starts = phrased(batch, seed, epoch)
    return collate(ids, starts, pad_id, batch.get("vector"), batch.get("layer"))


def phrased(batch: dict, seed: int, epoch: int) -> tuple[list, list]:
    """(token ids, answer starts) of each example in this epoch's phrasing of its query."""

    chosen = [
        epoch_variant(record_id, seed, epoch, len(options))
        for record_id, options in zip(batch["record_id"], batch["variant_starts"])
    ]
    return (
        [options[v] for options, v in zip(batch["variant_ids"], chosen)],
        [int(starts[v]) for starts, v in zip(batch["variant_starts"], chosen)],
    )


def autocast_for(precision: str, use_gpu: bool):
    """The context each forward pass runs in: torch's bf16 autocast for ``precision=bf16`` on CPU
    (weights and optimizer stay fp32); on GPUs DeepSpeed's bf16 mode casts the weights itself."""
    if precision == "bf16" and not use_gpu:
        return lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext


@torch.no_grad()
def validation_loss(
    engine,
    examples: dict[str, np.ndarray],
    micro_batch: int,
    pad_id: int,
    device,
    autocast=contextlib.nullcontext,
) -> float:
    """Mean answer-only loss over a validation set's columns (example-weighted), in their order,
    the model in eval mode."""

    engine.eval()
    total, count = 0.0, 0
    for start in range(0, len(examples["input_ids"]), micro_batch):
        batch = {name: values[start : start + micro_batch] for name, values in examples.items()}
        inputs = {
            k: v.to(device)
            for k, v in collate(
                batch["input_ids"],
                batch["answer_start"],
                pad_id,
                batch.get("vector"),
                batch.get("layer"),
            ).items()
        }
        rows = len(batch["input_ids"])
        with autocast():
            total += float(answer_only_loss(engine, inputs)) * rows
        count += rows
    engine.train()
    return total / max(count, 1)


def parameter_groups(model, train) -> list[dict]:
    """The trainable parameters (LoRA freezes the base, a frozen projection stays out); the
    projection learns at ``train.projection_learning_rate`` (0: the model's rate)."""
    projection = getattr(model, "projection", None)
    trainable = [p for p in model.parameters() if p.requires_grad]
    own = {id(p) for p in projection.parameters()} if projection is not None else set()
    if not own & {id(p) for p in trainable} or not train.projection_learning_rate:
        return [{"params": trainable}]
    return [
        {"params": [p for p in trainable if id(p) not in own]},
        {"params": [p for p in trainable if id(p) in own], "lr": train.projection_learning_rate},
    ]


@torch.no_grad()
def fit_projection_on_shared_tokens(
    model, tokenizer, target_ref: str, trust_remote_code: bool
) -> float:
    """Start the projection as the least-squares map between the target's and the explainer's
    looked-up embeddings of the tokens both vocabularies hold (the paper's "pre-trained
    projection"); return the fit's R^2."""

    target, target_tokenizer = load_model(
        target_ref, device="cpu", trust_remote_code=trust_remote_code
    )
    explainer_vocab, target_vocab = tokenizer.get_vocab(), target_tokenizer.get_vocab()
    shared = sorted(set(explainer_vocab) & set(target_vocab))
    if len(shared) < 2 * model.projection.weight.shape[2]:
        raise ValueError(
            f"the two vocabularies share {len(shared)} tokens, too few to fit a projection; "
            "use train.projection_init=default"
        )
    source = target.get_input_embeddings()(torch.tensor([target_vocab[t] for t in shared]))
    device = model.projection.weight.device
    destination = model.lm.get_input_embeddings()(
        torch.tensor([explainer_vocab[t] for t in shared], device=device)
    )
    return model.projection.fit_least_squares(source.to(device), destination)
