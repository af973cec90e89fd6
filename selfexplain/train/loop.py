"""The per-worker training loop that Ray Train runs on every rank.

Each rank loads the explainer, wraps it with ``deepspeed.initialize`` (which joins the process
group Ray Train already created: gloo on CPU, NCCL on GPU), streams its shard of the encoded
examples with ``get_dataset_shard``, and reports metrics plus a checkpoint through
``ray.train.report`` at the end of each epoch and every ``train.checkpoint_every`` steps. Every
rank saves its own DeepSpeed shard (ZeRO partitions optimizer state across ranks); rank 0 also
writes the HF export at the end.

Each epoch reads the examples in a fresh global order drawn from (seed, epoch)
(:mod:`selfexplain.train.order`). Resume is step-exact: that order depends only on (seed,
epoch), so a run restored
from a checkpoint taken ``k`` steps into an epoch replays that epoch's order, skips its first
``k`` optimizer steps' micro-batches without computing them, and goes on as the uninterrupted
run would have.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from pathlib import Path

import torch

from selfexplain.explainer.interface import VectorInterface

log = logging.getLogger("selfexplain.train")
EXPORT_DIR = "explainer"
MODEL_CARD = "README.md"
EXPLAINER_INFO = "selfexplain.json"  # task, target and explainer base: what `selfexplain explain` needs
PROGRESS = "progress.json"


def _setup_logging() -> None:
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def warmup_cosine(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def train_loop_per_worker(loop_config: dict) -> None:
    import deepspeed
    import ray.train

    from selfexplain.config import RunConfig, from_dict
    from selfexplain.explainer.vectors import mean_embedding_norm
    from selfexplain.models.loading import load_model
    from selfexplain.train.deepspeed_config import deepspeed_config
    from selfexplain.train.examples import answer_only_loss, collate
    from selfexplain.train.lora import trainable_parameters
    from selfexplain.train.order import epoch_order, load_examples, rank_micro_batches
    from selfexplain.train.safe_checkpoint import read_progress, use_weights_only_loading
    from selfexplain.train.throughput import Throughput
    from selfexplain.train.tracking import TrainingTracker

    _setup_logging()
    config: RunConfig = from_dict(RunConfig, loop_config["config"])
    train = config.train
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    threads = train.torch_threads or max(1, (os.cpu_count() or 1) // world)
    torch.set_num_threads(threads)
    torch.manual_seed(config.seed)

    use_gpu = train.use_gpu and torch.cuda.is_available()
    device = torch.device("cuda", context.get_local_rank()) if use_gpu else torch.device("cpu")
    model, tokenizer = load_model(loop_config["explainer"], device=device,
                                  trust_remote_code=config.trust_remote_code)
    interface = loop_config.get("vector_interface")
    if interface and interface.reference_norm is None:
        # the rescaling reference, fixed once from the base model and exported with it
        interface = interface.with_reference_norm(mean_embedding_norm(model))
    model = with_vector_input(model, tokenizer, interface, lora=train if train.lora_rank else None).to(device)
    model.train()
    trainable, total = trainable_parameters(model)
    if rank == 0:
        log.info("training %d of %d parameters (%.2f%%)%s", trainable, total, 100 * trainable / total,
                 f", LoRA rank {train.lora_rank}" if train.lora_rank else "")
    total_steps = loop_config["steps_per_epoch"] * train.epochs
    optimizer = torch.optim.AdamW(parameter_groups(model, train), lr=train.learning_rate,
                                  weight_decay=train.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(train.warmup_steps, total_steps))
    engine, optimizer, _, scheduler = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler,
        config=deepspeed_config(train, use_gpu), dist_init_required=False,
    )
    use_weights_only_loading(engine)

    start_epoch, step, loss_curve, progress = 0, 0, [], {}
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            progress = read_progress(folder, PROGRESS)
            engine.load_checkpoint(folder, tag=progress["tag"])
        start_epoch, step, loss_curve = progress["epoch"], progress["step"], progress["loss_curve"]
        if rank == 0:
            log.info("resumed from checkpoint at step %d (%d epochs done, %d steps into the next)",
                     step, start_epoch, progress.get("epoch_step", 0))
    resumed_from_step = step
    skip_steps = progress.get("epoch_step", 0)  # optimizer steps of start_epoch already trained

    # every rank reads the whole training set once and takes its share of each epoch's order
    examples = load_examples(ray.train.get_dataset_shard("train"))
    validation = {name: ray.train.get_dataset_shard(name) for name in loop_config.get("validation_sets", [])}
    validation_curve = list(progress.get("validation_curve", [])) if checkpoint else []

    def validate(at_step: int) -> dict:
        """Mean answer loss on each validation set; its time is kept out of the throughput."""
        with throughput.paused():
            losses = {name: validation_loss(engine, data, micro_batch, tokenizer.pad_token_id, device)
                      for name, data in validation.items()}
        if losses:
            validation_curve.append({"step": at_step, **losses})
            tracker.validation(at_step, losses)
            if rank == 0:
                log.info("step %d  validation: %s", at_step, "  ".join(f"{k} {v:.4f}" for k, v in losses.items()))
        return losses
    micro_batch = train.batch_size // train.grad_accum
    throughput, step_tokens = Throughput(world), 0
    tracker = TrainingTracker(rank, total_steps, step, loop_config.get("tensorboard_dir"))

    def report(epoch_index: int, epoch_step: int, last: bool = False, extra: dict | None = None) -> None:
        """Checkpoint ``epoch_step`` optimizer steps into epoch ``epoch_index`` (0 = at its end)."""
        done = epoch_index + (epoch_step == 0)
        record = {"epoch": done, "epoch_step": epoch_step, "resumed_from_step": resumed_from_step,
                  "trainable_parameters": trainable, "parameters": total,
                  "validation_curve": validation_curve, **(extra or {})}
        _report_checkpoint(engine, tokenizer, step, loss_curve, record, last=last, rank=rank,
                           model_card=loop_config["model_card"], interface=interface,
                           info=loop_config.get("explainer_info"))

    steps_per_epoch = loop_config["steps_per_epoch"]
    if start_epoch == train.epochs:  # finished before, but the export never reached storage
        report(start_epoch - 1, 0, last=True)
    for epoch in range(start_epoch, train.epochs):
        window = []
        skip_micro_batches = train.grad_accum * skip_steps if epoch == start_epoch else 0
        epoch_step = skip_steps if epoch == start_epoch else 0
        order = epoch_order(examples["record_id"], examples.get("copy"), config.seed, epoch)
        for index, picked in enumerate(rank_micro_batches(order, rank, world, micro_batch)):
            if index < skip_micro_batches:  # trained before the checkpoint this run resumed from
                continue
            batch = {name: values[picked] for name, values in examples.items()}
            ids, starts = phrased(batch, config.seed, epoch)
            inputs = {k: v.to(device) for k, v in
                      collate(ids, starts, tokenizer.pad_token_id, batch.get("vector"), batch.get("layer")).items()}
            loss = answer_only_loss(engine, inputs)
            engine.backward(loss)
            engine.step()
            window.append(loss.item())
            step_tokens += int(inputs["attention_mask"].sum())
            if engine.is_gradient_accumulation_boundary():
                throughput.step(step_tokens)
                step_tokens = 0
                step += 1
                epoch_step += 1
                loss_curve.append(sum(window) / len(window))
                window = []
                tracker.step(step, {"loss": loss_curve[-1], "lr": scheduler.get_last_lr()[0],
                                    "tokens_per_second": throughput.tokens_per_second})
                if train.validate_every and step % train.validate_every == 0:
                    validate(step)
                if rank == 0 and (step % 10 == 0 or step == total_steps):
                    log.info("step %d/%d  epoch %d  loss %.4f  lr %.2e  %.0f tok/s", step, total_steps,
                             epoch + 1, loss_curve[-1], scheduler.get_last_lr()[0],
                             throughput.tokens_per_second)
                if (train.checkpoint_every and step % train.checkpoint_every == 0
                        and epoch_step < steps_per_epoch):  # the epoch's end checkpoints anyway
                    with throughput.paused():  # checkpoint writes stay out of the throughput
                        report(epoch, epoch_step, extra=throughput.metrics())
        speed = throughput.metrics()  # the steps so far, before this epoch's validation and checkpoint
        if not train.validate_every or step % train.validate_every:
            validate(step)
        extra = {**speed, **(validation_curve[-1] if validation_curve else {})}
        extra.pop("step", None)
        report(epoch, 0, last=epoch == train.epochs - 1, extra=extra)
    tracker.close()


def phrased(batch: dict, seed: int, epoch: int) -> tuple[list, list]:
    """(token ids, answer starts) of each example in this epoch's phrasing of its query."""
    from selfexplain.train.order import epoch_variant

    chosen = [epoch_variant(record_id, seed, epoch, len(options))
              for record_id, options in zip(batch["record_id"], batch["variant_starts"])]
    return ([options[v] for options, v in zip(batch["variant_ids"], chosen)],
            [int(starts[v]) for starts, v in zip(batch["variant_starts"], chosen)])


@torch.no_grad()
def validation_loss(engine, shard, micro_batch: int, pad_id: int, device) -> float:
    """Mean answer-only loss over a validation set (example-weighted), the model in eval mode."""
    from selfexplain.train.examples import answer_only_loss, collate

    engine.eval()
    total, count = 0.0, 0
    for batch in shard.iter_batches(batch_size=micro_batch, batch_format="numpy"):
        inputs = {k: v.to(device) for k, v in collate(batch["input_ids"], batch["answer_start"], pad_id,
                                                     batch.get("vector"), batch.get("layer")).items()}
        rows = len(batch["input_ids"])
        total += float(answer_only_loss(engine, inputs)) * rows
        count += rows
    engine.train()
    return total / max(count, 1)


def with_vector_input(model, tokenizer, interface: VectorInterface | None, lora=None):
    """The explainer as trained: for vector tasks (``interface``) the placeholder tokens, grown
    embeddings and projection; with ``lora`` (a TrainConfig) LoRA adapters on the LM, added after
    the embeddings grow so the adapters see the final vocabulary."""
    from selfexplain.explainer.vectors import ExplainerWithVectors, VectorProjection, add_vector_tokens, grow_embeddings
    from selfexplain.train.lora import with_lora

    if interface:
        token_id = add_vector_tokens(tokenizer)
        grow_embeddings(model, tokenizer)
    if lora is not None:
        model = with_lora(model, lora)
    if not interface:
        return model
    projection = None
    if interface.projected:
        projection = VectorProjection(list(interface.layers), interface.d_target, interface.d_explainer)
    return ExplainerWithVectors(model, token_id, projection, interface.rescale, interface.reference_norm)


def parameter_groups(model, train) -> list[dict]:
    """The trainable parameters (LoRA freezes the base); the projection (new, randomly
    initialised) learns at its own, higher rate."""
    projection = getattr(model, "projection", None)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if projection is None:
        return [{"params": trainable}]
    own = {id(p) for p in projection.parameters()}
    return [{"params": [p for p in trainable if id(p) not in own]},
            {"params": list(projection.parameters()), "lr": train.projection_learning_rate}]


def _report_checkpoint(engine, tokenizer, step, loss_curve, record: dict, last, rank, model_card,
                       interface=None, info=None) -> None:
    """Every rank saves its DeepSpeed shard into one checkpoint folder; rank 0 adds the progress
    record (and, at the end, the HF export); ``ray.train.report`` then persists the folder."""
    import ray.train

    metrics = {"step": step, "loss": loss_curve[-1] if loss_curve else float("nan"),
               "loss_curve": list(loss_curve), **record}
    tag = f"step-{step}"
    with tempfile.TemporaryDirectory(prefix="selfexplain-ckpt-") as folder:
        engine.save_checkpoint(folder, tag=tag)
        if rank == 0:
            (Path(folder) / PROGRESS).write_text(json.dumps({"tag": tag, **metrics}))
        if last:
            _export(engine, tokenizer, Path(folder) / EXPORT_DIR, rank, model_card, interface, info)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))


def _export(engine, tokenizer, out_dir: Path, rank: int, model_card: str, interface: dict | None,
            info: dict | None = None) -> None:
    """Save a plain HF directory (safetensors) of the trained explainer from rank 0, with the
    vector interface and projection for vector tasks."""
    from selfexplain.explainer.export import save_explainer
    from selfexplain.train.lora import is_lora, merged_copy

    state_dict = None
    if engine.zero_optimization_stage() == 3:
        state_dict = engine._zero3_consolidated_16bit_state_dict()  # a collective: every rank calls it
    if rank != 0:
        return
    module = engine.module
    if is_lora(module):
        module = merged_copy(module)  # a plain HF model out, adapters merged
    save_explainer(module, tokenizer, out_dir, interface, state_dict)
    (out_dir / EXPLAINER_INFO).write_text(json.dumps(info or {}, indent=2))
    (out_dir / MODEL_CARD).write_text(model_card)
