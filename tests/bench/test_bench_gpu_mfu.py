"""bf16 ZeRO-3 training tokens/s and MFU of SmolLM2-135M on every GPU of the machine (skipped
without one; `python tests/bench/gpu_mfu.py --help` for other models and settings)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU: run on a GPU machine")
def test_gpu_zero3_bf16_tokens_per_second_and_mfu():
    script = Path(__file__).with_name("gpu_mfu.py")
    out = subprocess.run(
        [
            sys.executable,
            str(script),
            "--model",
            "smollm2-135m",
            "--zero",
            "3",
            "--seq",
            "512",
            "--micro-batch",
            "16",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    print(out)
    assert "MFU" in out
