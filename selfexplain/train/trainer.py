"""Driving a training run: encode the corpus with Ray Data, fit with Ray Train, export the explainer."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import ray
import ray.train
from ray.data.expressions import col
from ray.train.torch import TorchTrainer

from selfexplain.config import RunConfig
from selfexplain.corpus.io import corpus_files, read_manifest, write_json_atomic
from selfexplain.models.loading import resolve_model_dir
from selfexplain.train.examples import ExampleEncoder
from selfexplain.train.loop import EXPORT_DIR, train_loop_per_worker

log = logging.getLogger(__name__)



def encoded_train_set(config: RunConfig, corpus_dir: Path, tokenizer_dir: Path) -> ray.data.Dataset:
    """The training split as encoded examples, materialized so its size is known up front."""
    dataset = (
        ray.data.read_parquet(corpus_files(corpus_dir))
        .filter(expr=col("split") == "train")
        .map_batches(ExampleEncoder, batch_format="pandas", compute=ray.data.ActorPoolStrategy(size=1), num_cpus=0.5,
                     fn_constructor_kwargs={"task": config.task, "tokenizer_dir": str(tokenizer_dir),
                                            "max_length": config.train.max_length})
    )
    return dataset.materialize()


def train(config: RunConfig) -> Path:
    """Fine-tune the explainer on the run's corpus and return the exported HF directory.

    A finished export is reused: rerunning a run skips training.
    """
    train_cfg = config.train
    corpus_dir = config.run_dir / "corpus"
    manifest = read_manifest(corpus_dir)
    explainer_dir = resolve_model_dir(config.explainer_ref)
    export_dir = config.run_dir / EXPORT_DIR
    if (export_dir / "config.json").is_file():
        log.info("explainer already trained at %s; skipping training", export_dir)
        return export_dir

    dataset = encoded_train_set(config, corpus_dir, explainer_dir)
    examples = dataset.count()
    if examples == 0:
        raise ValueError(f"no training examples fit in train.max_length={train_cfg.max_length}; raise it")
    dropped = manifest["rows_by_split"].get("train", 0) - examples
    per_rank = examples // train_cfg.num_workers
    micro = train_cfg.batch_size // train_cfg.grad_accum
    steps_per_epoch = max(1, -(-per_rank // micro) // train_cfg.grad_accum)
    log.info("training on %d examples (%d over max_length dropped), %d workers, %d steps/epoch",
             examples, dropped, train_cfg.num_workers, steps_per_epoch)

    storage = (config.run_dir / "ray_train").resolve()
    # Mid-run resume comes with the checkpoint work; until then a crashed run restarts cleanly.
    shutil.rmtree(storage, ignore_errors=True)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "config": config.to_dict(),
            "explainer_dir": str(explainer_dir),
            "steps_per_epoch": steps_per_epoch,
            "model_card": _model_card(config, manifest, examples),
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=train_cfg.num_workers, use_gpu=train_cfg.use_gpu,
            resources_per_worker={"CPU": train_cfg.cpus_per_worker, **({"GPU": 1} if train_cfg.use_gpu else {})},
        ),
        datasets={"train": dataset},
        run_config=ray.train.RunConfig(
            name="train", storage_path=str(storage),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
        ),
    )
    result = trainer.fit()
    with result.checkpoint.as_directory() as folder:
        staging = export_dir.with_name(f".{EXPORT_DIR}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(Path(folder) / EXPORT_DIR, staging)
        staging.rename(export_dir)
    write_json_atomic({"examples": examples, "dropped_over_max_length": dropped, **result.metrics},
                      config.run_dir / "train_metrics.json")
    shutil.rmtree(storage, ignore_errors=True)  # DeepSpeed shards are large; the export is what is kept
    return export_dir


def _model_card(config: RunConfig, manifest: dict, examples: int) -> str:
    return (
        f"# selfexplain explainer: {config.name}\n\n"
        f"- target model: `{config.target}`\n"
        f"- explainer base: `{config.explainer_ref}` ({'self' if config.train.explainer == 'self' else 'other'})\n"
        f"- task: `{config.task}`\n"
        f"- training examples: {examples} (corpus rows by split: {json.dumps(manifest['rows_by_split'])})\n"
        f"- corpus config hash: `{manifest['config_hash']}`\n\n"
        "Load with `transformers.AutoModelForCausalLM.from_pretrained(<this folder>)`.\n"
    )
