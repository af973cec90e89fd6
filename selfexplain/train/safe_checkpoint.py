"""Loading DeepSpeed checkpoints without unpickling arbitrary objects.

DeepSpeed's stock checkpoint engine calls ``torch.load(weights_only=False)``: a checkpoint
folder that someone else can write to (shared storage, a bucket) could then run code on every
training node. This engine saves exactly as DeepSpeed does and loads with
``weights_only=True``, allowing only the three plain-data DeepSpeed classes its ZeRO-2/3 state
holds (found by loading real checkpoints; a new one fails loudly, naming the class).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine
from deepspeed.runtime.fp16.loss_scaler import LossScaler
from deepspeed.runtime.zero.config import ZeroStageEnum
from deepspeed.utils.tensor_fragment import fragment_address

from selfexplain import internals

DEEPSPEED_STATE_CLASSES = [LossScaler, ZeroStageEnum, fragment_address]


class WeightsOnlyCheckpointEngine(TorchCheckpointEngine):
    def load(self, path: str, map_location=None):
        with torch.serialization.safe_globals(DEEPSPEED_STATE_CLASSES):
            return torch.load(path, map_location=map_location, weights_only=True)


def use_weights_only_loading(engine) -> None:
    """Swap the engine's checkpoint engine for one that refuses pickled code on load."""
    internals.replace_checkpoint_engine(engine, WeightsOnlyCheckpointEngine)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be resumed from; the message names the folder and the way out."""


def read_progress(folder: str, progress_file: str) -> dict:
    """The loop's progress record of a checkpoint folder, checked before DeepSpeed touches it.

    An empty folder, a missing or unreadable record, or a missing DeepSpeed tag (a copy cut
    short, a bucket lifecycle rule, a hand edit) fails here with one clear message instead of a
    KeyError or a torch unpickling trace from deep inside DeepSpeed.
    """

    root = Path(folder)
    fix = (
        "delete the run's ray_train folder to train from scratch, or pick a new run name (name=...)"
    )
    if not root.is_dir() or not any(root.iterdir()):
        raise CheckpointError(f"checkpoint {root} is empty; {fix}")
    try:
        progress = json.loads((root / progress_file).read_text())
        tag = progress["tag"]
        progress["epoch"], progress["step"], progress["loss_curve"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(
            f"checkpoint {root} has no readable {progress_file} ({err!r}); {fix}"
        ) from None
    tag_dir = root / tag
    if not tag_dir.is_dir() or not any(tag_dir.glob("*.pt")):
        raise CheckpointError(f"checkpoint {root} lacks DeepSpeed state {tag}/*.pt; {fix}")
    return progress
