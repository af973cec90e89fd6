"""The ground-truth job: a Ray Data pipeline that shards prompts across model-holding actors.

The driver cuts the prompts into fixed shards (``generate.prompts_per_shard`` each) and assigns
every prompt its split. Each shard becomes one row of a Ray Dataset; ``map_batches`` with a
callable class runs it on an actor that loaded the target model once, computes the task's
ground truth and writes ``shard-NNNNN.parquet`` atomically. A rerun skips shards already on
disk, so an interrupted job resumes where it stopped. The manifest is written last.
"""

from __future__ import annotations

import json
import logging
import time

import pyarrow.parquet as pq
import ray

from selfexplain.config import RunConfig
from selfexplain.corpus.io import MANIFEST, claim_plan, shard_name, write_shard
from selfexplain.corpus.prompts import load_prompts
from selfexplain.corpus.schema import stable_id
from selfexplain.corpus.splits import split_for
from selfexplain.models.loading import load_model, resolve_model_dir
from selfexplain.provenance import versions
from selfexplain.storage import Location
from selfexplain.tasks import get_task

log = logging.getLogger(__name__)


class GroundTruthWorker:
    """A Ray Data actor: loads the target once, then turns shards of prompts into Parquet files."""

    def __init__(self, task: str, model_dir: str, target_name: str, corpus_dir: str, use_gpu: bool,
                 trust_remote_code: bool = False):
        import torch

        device = "cuda" if use_gpu and torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        self.model, self.tokenizer = load_model(model_dir, device=device, dtype=dtype,
                                                trust_remote_code=trust_remote_code)
        self.task = get_task(task)
        self.target_name = target_name
        self.corpus_dir = Location(corpus_dir)

    def __call__(self, batch: dict) -> dict:
        rows_written = []
        for shard, payload in zip(batch["shard"], batch["payload"]):
            rows = []
            for item in json.loads(payload):
                for row in self.task.ground_truth(self.model, self.tokenizer, item["prompt"], self.target_name):
                    row["split"] = item["split"]
                    rows.append(row)
            rows_written.append(write_shard(rows, self.task.schema, self.corpus_dir / shard_name(int(shard))))
        return {"shard": batch["shard"], "rows": rows_written}


def plan_shards(config: RunConfig, prompts: list[str]) -> list[list[dict]]:
    size = config.generate.prompts_per_shard
    items = [
        {"prompt": p, "split": split_for(stable_id(p), config.generate.held_out_fraction, config.seed)}
        for p in prompts
    ]
    return [items[i:i + size] for i in range(0, len(items), size)]


def generate(config: RunConfig) -> Location:
    """Write (or finish) the corpus for ``config`` and return its folder. Needs a Ray session."""
    started = time.time()
    gen = config.generate
    # Everything that can be wrong with the inputs is checked before any folder is created.
    prompts = load_prompts(gen.prompts, gen.max_prompts)
    model_dir = resolve_model_dir(config.target)
    corpus_dir = config.run_dir / "corpus"
    shards = plan_shards(config, prompts)
    plan = {"fingerprint": config.fingerprint("target", "task", "seed", "generate"),
            "prompts": stable_id(*prompts), "num_shards": len(shards)}
    claim_plan(corpus_dir, plan)

    todo = [i for i in range(len(shards)) if not (corpus_dir / shard_name(i)).exists()]
    log.info("ground truth: %d prompts in %d shards, %d to do", len(prompts), len(shards), len(todo))
    if todo:
        items = [{"shard": i, "payload": json.dumps(shards[i])} for i in todo]
        dataset = ray.data.from_items(items, override_num_blocks=len(items))
        results = dataset.map_batches(
            GroundTruthWorker,
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=min(gen.num_actors, len(todo))),
            num_cpus=gen.cpus_per_actor,
            num_gpus=gen.gpus_per_actor,
            fn_constructor_kwargs={
                "task": config.task, "model_dir": str(model_dir), "target_name": config.target,
                "corpus_dir": corpus_dir.uri, "use_gpu": gen.gpus_per_actor > 0,
                "trust_remote_code": config.trust_remote_code,
            },
        ).take_all()
        log.info("wrote %d shards, %d rows", len(results), sum(r["rows"] for r in results))

    _write_manifest(config, corpus_dir, len(shards), len(prompts), time.time() - started)
    return corpus_dir


def _write_manifest(config: RunConfig, corpus_dir: Location, num_shards: int, num_prompts: int, seconds: float) -> None:
    shards, by_split = [], {}
    for index in range(num_shards):
        path = corpus_dir / shard_name(index)
        splits = pq.read_table(path.path, filesystem=path.fs, columns=["split"])["split"].to_pylist()
        counts = {name: splits.count(name) for name in sorted(set(splits))}
        for name, count in counts.items():
            by_split[name] = by_split.get(name, 0) + count
        shards.append({"file": path.name, "rows": len(splits), "rows_by_split": counts})
    manifest = {
        "task": config.task,
        "target": config.target,
        "num_prompts": num_prompts,
        "rows": sum(s["rows"] for s in shards),
        "rows_by_split": by_split,
        "shards": shards,
        "schema": get_task(config.task).schema.to_string(show_schema_metadata=False),
        "config": config.to_dict(),
        "config_hash": config.fingerprint(),
        "versions": versions(),
        "seconds": round(seconds, 1),
    }
    (corpus_dir / MANIFEST).write_json(manifest)
