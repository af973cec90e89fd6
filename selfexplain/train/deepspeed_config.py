"""Building the DeepSpeed config from selfexplain's TrainConfig.

CPU runs use fp32 (DeepSpeed's CPU accelerator has no fast bf16 path) over gloo; GPU runs use
bf16. The optimizer is a client ``torch.optim.AdamW`` (torch's fused kernel, on CPU and GPU alike)
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
        "bf16": {"enabled": use_gpu},
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
