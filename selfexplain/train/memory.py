"""Will training fit the GPUs? An estimate of one GPU's memory, made before Ray starts, from the
explainer's config.json (the model built on the meta device: exact parameter and LoRA counts,
nothing allocated) and the run's training settings.

Per GPU, with ``N`` data-parallel workers, ``P`` parameters and ``T`` trainable ones:

- model states (the ZeRO paper's accounting): weights ``w·P``, gradients ``g·T``, optimizer state
  ``o·T``. Mixed bf16 (DeepSpeed's bf16 mode): w = g = 2 bytes, o = 12 (fp32 master weights and
  Adam's two moments); fp32: w = g = 4, o = 8. ZeRO-1 divides the optimizer state by N, ZeRO-2
  also the gradients, ZeRO-3 also the weights; offload moves the optimizer state to CPU memory.
- activations, after Korthikanti et al. (2022) with memory-efficient attention (SDPA/flash, no
  s x s score matrix kept): ``34·b·s·h`` bytes per layer in 16-bit (twice that in fp32) for a
  micro-batch of ``b`` sequences of ``s`` tokens; with gradient checkpointing only each layer's
  input (``2·b·s·h``) is kept, plus one layer's full set while it is recomputed.
- answer logits in fp32 and their gradient, and a fixed allowance for the CUDA context and
  communication buffers, with 10% on top for fragmentation.

It is an estimate, deliberately simple: its use is to refuse a run that cannot fit by a wide
margin (an 8B model's full fine-tune on one 80 GB GPU needs ~120 GiB of model states alone),
and to say which setting changes that.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from selfexplain.config import TrainConfig
from selfexplain.errors import ConfigError
from selfexplain.models.files import meta_model

GIB = 1 << 30
CONTEXT_ALLOWANCE_GIB = 1.5
FRAGMENTATION = 1.1
ANSWER_TOKENS = 64
"""Logits are computed for the answer only (``logits_to_keep``); its width is at most this."""


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs of a model, read from its config.json on the meta device."""

    parameters: int
    hidden_size: int
    layers: int
    vocab_size: int
    linear_shapes: tuple[tuple[str, int, int], ...]
    """(module name, in features, out features) of every linear layer but the output head."""

    def lora_parameters(self, rank: int, target_modules: str) -> int:
        """The adapters' parameter count at ``rank`` on ``target_modules`` (``all-linear`` or
        comma-separated module names, matched by the last part of the dotted name)."""
        wanted = None if target_modules == "all-linear" else set(target_modules.split(","))
        return sum(
            rank * (fan_in + fan_out)
            for name, fan_in, fan_out in self.linear_shapes
            if wanted is None or name.rsplit(".", 1)[-1] in wanted
        )


@cache
def model_shape(folder: Path, trust_remote_code: bool = False) -> ModelShape:
    # deferred: torch only when a GPU run is checked
    import torch

    model = meta_model(folder, trust_remote_code)
    head = model.get_output_embeddings()
    linears = tuple(
        (name, module.in_features, module.out_features)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not head
    )
    text = model.config.get_text_config()
    return ModelShape(
        parameters=sum(p.numel() for p in model.parameters()),
        hidden_size=text.hidden_size,
        layers=text.num_hidden_layers,
        vocab_size=text.vocab_size,
        linear_shapes=linears,
    )


@dataclass(frozen=True)
class MemoryEstimate:
    parameters: int
    trainable: int
    weights_gib: float
    gradients_gib: float
    optimizer_gib: float
    activations_gib: float
    total_gib: float
    available_gib: float

    @property
    def fits(self) -> bool:
        return self.total_gib <= self.available_gib

    def describe(self) -> str:
        return (
            f"~{self.total_gib:.0f} GiB per GPU of {self.available_gib:.0f}: weights "
            f"{self.weights_gib:.1f}, gradients {self.gradients_gib:.1f}, optimizer state "
            f"{self.optimizer_gib:.1f}, activations {self.activations_gib:.1f} GiB "
            f"({self.parameters / 1e9:.2f}B parameters, {self.trainable / 1e9:.3f}B trained)"
        )


def estimate(train: TrainConfig, shape: ModelShape) -> MemoryEstimate:
    """One GPU's memory for ``train`` on a model of ``shape`` (see the module's accounting)."""
    bf16 = train.precision != "fp32"
    weight_bytes, state_bytes = (2, 12) if bf16 else (4, 8)
    workers, zero = train.num_workers, train.zero
    trainable = (
        shape.lora_parameters(train.lora_rank, train.lora_target_modules)
        if train.lora_rank
        else shape.parameters
    )
    weights = weight_bytes * shape.parameters / (workers if zero >= 3 else 1)
    gradients = weight_bytes * trainable / (workers if zero >= 2 else 1)
    optimizer = 0.0 if train.offload else state_bytes * trainable / (workers if zero >= 1 else 1)
    micro_batch = train.batch_size // train.grad_accum
    tokens = micro_batch * train.max_length * shape.hidden_size
    per_layer = 34 * tokens * (1 if bf16 else 2)
    activations = (
        shape.layers * 2 * tokens + per_layer
        if train.gradient_checkpointing
        else shape.layers * per_layer
    )
    activations += 2 * 4 * micro_batch * ANSWER_TOKENS * shape.vocab_size
    states = weights + gradients + optimizer
    total = (states + activations) * FRAGMENTATION / GIB + CONTEXT_ALLOWANCE_GIB
    return MemoryEstimate(
        shape.parameters,
        trainable,
        weights / GIB,
        gradients / GIB,
        optimizer / GIB,
        activations / GIB,
        total,
        train.gpu_memory_gib,
    )


def check_fits(train: TrainConfig, explainer_dir: Path, trust_remote_code: bool) -> MemoryEstimate:
    """Refuse a GPU run whose estimate exceeds ``train.gpu_memory_gib``, naming what would make it
    fit."""
    result = estimate(train, model_shape(explainer_dir, trust_remote_code))
    if result.fits:
        return result
    states = result.weights_gib + result.gradients_gib + result.optimizer_gib
    if states * FRAGMENTATION + CONTEXT_ALLOWANCE_GIB > result.available_gib:
        fix = (
            "train with LoRA (train.lora_rank=128), or shard the model states with "
            "train.zero_stage=3 over more GPUs (train.num_workers) or train.offload=true"
        )
    else:
        fix = (
            "lower the micro-batch (raise train.grad_accum), set "
            "train.gradient_checkpointing=true, or lower train.max_length"
        )
    raise ConfigError(
        f"config key 'train': the explainer will not fit its GPUs: {result.describe()}; {fix}"
    )
