"""Training tokens/s and model FLOPs utilization (MFU) of the explainer loop on GPUs.

    python tests/bench/gpu_mfu.py                         # SmolLM2-135M, bf16, ZeRO-3, every GPU
    python tests/bench/gpu_mfu.py --model gemma3-270m --seq 1024 --micro-batch 16 --zero 2
    python tests/bench/gpu_mfu.py --cpu                   # a smoke run without a GPU (no MFU)

Runs the training step selfexplain uses (DeepSpeed engine from ``deepspeed_config``, the client
AdamW, the answer-only loss) under Ray Train with one worker per GPU, on synthetic token batches
of a fixed length, so the number measures the step and not the corpus. The answer is the last
quarter of each row (logits only for those positions, as in real training).

MFU = achieved FLOP/s / peak dense bf16 FLOP/s of the GPUs, with the standard count of
6 * parameters per token for the matmuls plus 12 * layers * hidden * seq for attention (the
PaLM appendix B formula). The peak comes from the device name (H100/H200 SXM 989 TFLOP/s,
A100 312, L4 121, ...) or ``--peak-tflops``.
"""

from __future__ import annotations

import argparse
import json
import time

# Dense bf16 tensor-core peaks, TFLOP/s, by a substring of torch.cuda.get_device_name().
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "A100": 312.0,
    "A10G": 125.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A6000": 155.0,
    "V100": 125.0,
}


def peak_tflops(device_name: str) -> float | None:
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in device_name:
            return value
    return None


def flops_per_token(params: int, layers: int, hidden: int, seq: int) -> float:
    return 6.0 * params + 12.0 * layers * hidden * seq


def worker_loop(config: dict) -> None:
    import deepspeed
    import ray.train
    import torch

    from selfexplain.config import TrainConfig
    from selfexplain.models.loading import load_model
    from selfexplain.train.deepspeed_config import deepspeed_config
    from selfexplain.train.examples import IGNORE_INDEX, answer_only_loss

    context = ray.train.get_context()
    use_gpu = not config["cpu"]
    device = torch.device("cuda", context.get_local_rank()) if use_gpu else torch.device("cpu")
    model, _ = load_model(config["model"], device=device)
    model.train()
    train = TrainConfig(
        batch_size=config["micro_batch"],
        zero_stage=config["zero"],
        use_gpu=use_gpu,
        offload=config["offload"],
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    engine, *_ = deepspeed.initialize(
        model=model,
        optimizer=optimizer,
        config=deepspeed_config(train, use_gpu),
        dist_init_required=False,
    )
    generator = torch.Generator().manual_seed(context.get_world_rank())
    vocab, seq, rows = model.config.vocab_size, config["seq"], config["micro_batch"]
    answer = seq // 4

    def batch():
        ids = torch.randint(0, vocab, (rows, seq), generator=generator)
        labels = torch.full_like(ids, IGNORE_INDEX)
        labels[:, -answer:] = ids[:, -answer:]
        return {
            "input_ids": ids.to(device),
            "attention_mask": torch.ones_like(ids).to(device),
            "position_ids": torch.arange(seq).expand(rows, seq).to(device),
            "labels": labels.to(device),
        }

    def step():
        loss = answer_only_loss(engine, batch())
        engine.backward(loss)
        engine.step()

    for _ in range(config["warmup"]):
        step()
    if use_gpu:
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(config["steps"]):
        step()
    if use_gpu:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    params = sum(
        p.ds_numel if hasattr(p, "ds_numel") else p.numel() for p in engine.module.parameters()
    )
    text = (
        model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    )
    # Ray Train keeps the metrics of reports that carry a checkpoint: send a tiny one
    import tempfile

    folder = tempfile.mkdtemp(prefix="mfu-")
    ray.train.report(
        checkpoint=ray.train.Checkpoint.from_directory(folder),
        metrics={
            "tokens_per_second_per_worker": rows * seq * config["steps"] / seconds,
            "seconds_per_step": seconds / config["steps"],
            "parameters": params,
            "layers": text.num_hidden_layers,
            "hidden": text.hidden_size,
            "device": torch.cuda.get_device_name(device) if use_gpu else "cpu",
            "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if use_gpu else 0.0,
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--micro-batch", type=int, default=16, dest="micro_batch")
    parser.add_argument("--zero", type=int, default=3, choices=(0, 1, 2, 3))
    parser.add_argument(
        "--offload", action="store_true", help="ZeRO-3 parameter and optimizer offload to CPU"
    )
    parser.add_argument("--workers", type=int, default=0, help="default: one per GPU")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--peak-tflops", type=float, default=0.0, dest="peak_tflops")
    parser.add_argument(
        "--address", default="", help="a Ray cluster to join (default: RAY_ADDRESS or a local one)"
    )
    parser.add_argument(
        "--cpu", action="store_true", help="run on CPU (fp32) as a smoke test; no MFU"
    )
    args = parser.parse_args()

    import os
    import tempfile

    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    from selfexplain.config import RayConfig
    from selfexplain.jobs.ray_session import ray_session

    # the cluster at --address or RAY_ADDRESS, else a local one (as selfexplain's own jobs do)
    with ray_session(RayConfig(address=args.address, num_cpus=max(4, os.cpu_count() or 1))):
        gpus = int(ray.cluster_resources().get("GPU", 0))
        if not gpus and not args.cpu:
            raise SystemExit(
                "no GPU in this Ray cluster; run on a GPU machine, or pass --cpu for a smoke test"
            )
        workers = args.workers or max(1, gpus)
        result = TorchTrainer(
            worker_loop,
            train_loop_config=vars(args),
            scaling_config=ray.train.ScalingConfig(num_workers=workers, use_gpu=not args.cpu),
            run_config=ray.train.RunConfig(
                storage_path=tempfile.mkdtemp(prefix="selfexplain-mfu-")
            ),
        ).fit()
    m = result.metrics
    tokens = m["tokens_per_second_per_worker"] * workers
    achieved = flops_per_token(m["parameters"], m["layers"], m["hidden"], args.seq) * tokens
    peak = args.peak_tflops or peak_tflops(m["device"])
    mfu = achieved / (peak * 1e12 * workers) if peak and not args.cpu else None
    summary = {
        "model": args.model,
        "device": m["device"],
        "workers": workers,
        "zero_stage": args.zero,
        "offload": args.offload,
        "dtype": "fp32" if args.cpu else "bf16",
        "seq": args.seq,
        "micro_batch": args.micro_batch,
        "tokens_per_second": round(tokens, 1),
        "seconds_per_step": round(m["seconds_per_step"], 4),
        "achieved_tflops": round(achieved / 1e12, 2),
        "mfu": None if mfu is None else round(mfu, 4),
        "peak_memory_gib": round(m["peak_memory_gib"], 2),
    }
    print(json.dumps(summary, indent=2))
    print(
        f"\n{args.model} on {workers} x {m['device']}, "
        f"ZeRO-{args.zero}{' + offload' if args.offload else ''}, "
        f"seq {args.seq}, micro-batch {args.micro_batch}: {tokens:,.0f} tokens/s, "
        f"{achieved / 1e12:.1f} TFLOP/s"
        + (f", MFU {mfu:.1%}" if mfu is not None else " (no MFU on CPU)")
    )


if __name__ == "__main__":
    main()
