"""Loading DeepSpeed checkpoints without unpickling arbitrary objects.

DeepSpeed's stock checkpoint engine calls ``torch.load(weights_only=False)``: a checkpoint
folder that someone else can write to (shared storage, a bucket) could then run code on every
training node. This engine saves exactly as DeepSpeed does and loads with
``weights_only=True``, allowing only the three plain-data DeepSpeed classes its ZeRO-2/3 state
holds (found by loading real checkpoints; a new one fails loudly, naming the class).
"""

from __future__ import annotations

import torch
from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine
from deepspeed.runtime.fp16.loss_scaler import LossScaler
from deepspeed.runtime.zero.config import ZeroStageEnum
from deepspeed.utils.tensor_fragment import fragment_address

DEEPSPEED_STATE_CLASSES = [LossScaler, ZeroStageEnum, fragment_address]


class WeightsOnlyCheckpointEngine(TorchCheckpointEngine):
    def load(self, path: str, map_location=None):
        with torch.serialization.safe_globals(DEEPSPEED_STATE_CLASSES):
            return torch.load(path, map_location=map_location, weights_only=True)


def use_weights_only_loading(engine) -> None:
    """Swap the engine's checkpoint engine for one that refuses pickled code on load."""
    engine.checkpoint_engine = WeightsOnlyCheckpointEngine(getattr(engine, "_config", None))
