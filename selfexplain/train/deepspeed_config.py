"""Building the DeepSpeed config from selfexplain's TrainConfig.

GPU runs use DeepSpeed's bf16 mode unless ``train.precision=fp32``. CPU runs keep DeepSpeed in
fp32 (its CPU accelerator has no fast bf16 path): ``train.precision=bf16`` there is torch's bf16
autocast around the forward pass (:func:`selfexplain.train.loop.autocast_for`), with fp32
weights and optimizer.

The optimizer is a client ``torch.optim.AdamW`` (torch's fused kernel, on CPU and GPU alike)
rather than DeepSpeed's, which would compile C++/CUDA ops on first use; ZeRO accepts it with
``zero_allow_untested_optimizer``.
"""

from __future__ import annotations

from selfexplain.config import TrainConfig


def deepspeed_config(train: TrainConfig, use_gpu: bool) -> dict:
    zero: dict = {"stage": train.zero}
    if train.zero >= 2:
        zero.update({"overlap_comm": use_gpu, "contiguous_gradients": True})
    if train.offload:
        zero["offload_param"] = {"device": "cpu", "pin_memory": use_gpu}
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": use_gpu}
    return {
        "train_micro_batch_size_per_gpu": train.batch_size // train.grad_accum,
        "gradient_accumulation_steps": train.grad_accum,
        "gradient_clipping": train.gradient_clipping,
        "zero_optimization": zero,
        "bf16": {"enabled": use_gpu and train.precision != "fp32"},
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
