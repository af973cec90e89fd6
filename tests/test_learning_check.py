"""The learning check, per task: an explainer trained on 64 rows of a real corpus answers those
rows as labelled (exact match >= 0.95, greedy decoding as in evaluation). A task that fails it has
a bug in its template, labels, loss mask, parser or decoding; no other result of it counts."""

from __future__ import annotations

import json

import pytest

from selfexplain.config import load_config
from selfexplain.evaluate.learning_check import PASS_AT, check_training_rows
from selfexplain.pipeline import run_generate, run_train

ROWS = 64
# Passes over the rows: enough for each task to reproduce them at 2e-4 (ablation reached 0.921 at
# 12 epochs, its two answer forms naming the same tokens; the others 0.955-1.000).
EPOCHS = {"ablation": 24}


def learning_config(task: str, output_dir, base: str, *overrides: str):
    """A run that trains on ~ROWS training rows of its corpus, long enough to reproduce them."""
    settings = [
        f"output_dir={output_dir}",
        f"task={task}",
        f"name=learn-{task}",
        "train.in_distribution_holdout=0",
        "train.select_best=false",
        "train.patience=0",
        "train.precision=fp32",
        "train.validation_examples=0",
        "train.lr_schedule=constant",
        *overrides,
    ]
    config = load_config(base, settings)
    run_generate(config)
    manifest = json.loads((config.corpus_dir.local_path / "manifest.json").read_text())
    fraction = min(1.0, ROWS / manifest["rows_by_split"]["train"])
    return load_config(base, [*settings, f"train.data_fraction={fraction}"])


@pytest.mark.slow
@pytest.mark.parametrize("task", ["ablation", "patching", "hint", "features"])
def test_the_explainer_reproduces_its_training_rows(task, tmp_path):
    config = learning_config(
        task, tmp_path, "demo", "generate.max_items=48", "generate.layers=[6, 15, 24]",
        f"train.epochs={EPOCHS.get(task, 12)}",
        "train.learning_rate=2e-4", "train.batch_size=8", "train.warmup_steps=2",
    )  # fmt: skip
    run_train(config)
    check = check_training_rows(config)
    print(f"learning check {task}: {check}")
    assert check.rows >= ROWS // 2
    assert check.exact_match >= PASS_AT, check
