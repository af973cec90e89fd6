"""LoRA fine-tuning (peft): low-rank adapters on the explainer's linear layers, the base frozen.

Only the adapters (and, for vector tasks, the projection) train, so optimizer state is a small
fraction of full fine-tuning's. The export merges the adapters into the base weights: the
exported folder is a plain HF model, loadable without peft, exactly like a fully fine-tuned one.
"""

from __future__ import annotations

import copy

from torch import nn

from selfexplain.config import TrainConfig


def with_lora(model: nn.Module, train: TrainConfig) -> nn.Module:
    """Wrap a causal LM with LoRA adapters on ``train.lora_target_modules``; the base is frozen."""
    # peft only with train.lora_rank > 0
    from peft import LoraConfig, get_peft_model

    targets = train.lora_target_modules
    return get_peft_model(
        model,
        LoraConfig(
            r=train.lora_rank,
            lora_alpha=train.lora_alpha,
            lora_dropout=train.lora_dropout,
            task_type="CAUSAL_LM",
            target_modules=targets
            if targets == "all-linear"
            else [t.strip() for t in targets.split(",")],
        ),
    )


def is_lora(model: nn.Module) -> bool:
    from peft import PeftModel  # peft only where LoRA is used

    return isinstance(getattr(model, "lm", model), PeftModel)


def merged_copy(module: nn.Module) -> nn.Module:
    """A copy of the trained module with its adapters merged into the base weights (the training
    module keeps its adapters: a checkpoint written after the export must still resume)."""
    module = copy.deepcopy(module)
    if hasattr(module, "lm"):  # ExplainerWithVectors
        module.lm = module.lm.merge_and_unload()
        return module
    return module.merge_and_unload()


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
