"""The ground-truth job: a Ray Data pipeline that shards work items across model-holding actors.

The task plans its work items on the driver (prompts, prompt pairs or features) and each item
gets its split from its group (``generate.held_out_by``). Items are cut into fixed shards
(``generate.items_per_shard`` each); each shard becomes one row of a Ray Dataset, and
``map_batches`` with a callable class runs it on an actor that loaded the target model once,
computes the task's ground truth and writes ``shard-NNNNN.parquet`` atomically. Items that cannot
become ground truth go to ``rejects/shard-NNNNN.parquet`` with the reason, written first: the
corpus shard is the completion mark, so a rerun skips exactly the shards that finished and a
killed job resumes where it stopped. The manifest is written last.
"""

from __future__ import annotations

import json
import logging
import re
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from typing import NamedTuple

import pyarrow.parquet as pq
import ray
import torch

from selfexplain.config import GenerateConfig, RunConfig, from_dict
from selfexplain.corpus.io import (
    MANIFEST,
    REJECTS,
    claim_plan,
    corpus_plan,
    shard_name,
    write_shard,
)
from selfexplain.corpus.schema import REJECTS_SCHEMA, item_id, stable_id
from selfexplain.corpus.splits import split_for
from selfexplain.models.architectures import hidden_size, num_layers
from selfexplain.models.loading import load_model, load_tokenizer
from selfexplain.provenance import versions
from selfexplain.storage import Location
from selfexplain.tasks import GroundTruthContext, Rejected, get_task

log = logging.getLogger(__name__)


class GroundTruthWorker:
    """A Ray Data actor: loads the target once, then turns shards of work items into Parquet
    files."""

    def __init__(
        self,
        task: str,
        target_name: str,
        corpus_dir: str,
        use_gpu: bool,
        options: dict,
        trust_remote_code: bool = False,
    ):

        device = "cuda" if use_gpu and torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        # the target's reference, resolved here: a path from the driver may not exist on this node
        model, tokenizer = load_model(
            target_name, device=device, dtype=dtype, trust_remote_code=trust_remote_code
        )
        options = from_dict(GenerateConfig, options)
        layers = options.layers or list(range(num_layers(model)))
        self.context = GroundTruthContext(model, tokenizer, target_name, options, layers)
        self.task = get_task(task)
        self.schema = self.task.schema(hidden_size(model))
        self.corpus_dir = Location(corpus_dir)

    def __call__(self, batch: dict) -> dict:
        rows_written, rejected = [], []
        for shard, payload in zip(batch["shard"], batch["payload"]):
            rows, rejects = [], []
            for item in json.loads(payload):
                self.context.partial_rejects.clear()
                try:
                    if item["split"] == CROSS:
                        raise Rejected(item["cross"])
                    item_rows = self.task.ground_truth(item, self.context)
                except Rejected as why:
                    item_rows = []
                    self.context.partial_rejects.append(str(why))
                rejects.extend(
                    {
                        "item_id": item_id(self.task.name, item),
                        "task": self.task.name,
                        "reason": reason,
                        "item": json.dumps(item, sort_keys=True),
                    }
                    for reason in self.context.partial_rejects
                )
                for row in item_rows:
                    row["split"] = item["split"]
                rows.extend(item_rows)
            # Rejects first: the corpus shard is what marks the shard done.
            write_shard(rejects, REJECTS_SCHEMA, self.corpus_dir / REJECTS / shard_name(int(shard)))
            rows_written.append(
                write_shard(rows, self.schema, self.corpus_dir / shard_name(int(shard)))
            )
            rejected.append(len(rejects))
        return {"shard": batch["shard"], "rows": rows_written, "rejected": rejected}


TIMING_KEYS = (
    "seconds",
    "rows_written",
    "rows_per_second",
    "first_shard_seconds",
    "rows_per_second_after_first_shard",
)

CROSS = "cross"
"""The split of an item whose groups fall on both sides; the actor records it as a reject."""


def plan_shards(config: RunConfig, items: list[dict]) -> list[list[dict]]:
    """Give each item its split and cut the items into shards. An item whose group is a list
    (a patching pair's two entities) is split by each member; when they disagree the item
    crosses the split: a held-out query may share no input with a training row."""
    size = config.generate.items_per_shard
    group = config.held_out_by
    for item in items:
        members = item["groups"][group]
        members = members if isinstance(members, list) else [members]
        sides = {
            member: split_for(
                stable_id(group, member), config.generate.held_out_fraction, config.seed
            )
            for member in members
        }
        if len(set(sides.values())) == 1:
            item["split"] = next(iter(sides.values()))
        else:
            item["split"] = CROSS
            item["cross"] = (
                f"its {group} values fall on both sides of the held-out split ("
                + ", ".join(
                    f"{m!r}: {'held out' if s == 'test' else 'train'}" for m, s in sides.items()
                )
                + ")"
            )
    return [items[i : i + size] for i in range(0, len(items), size)]


def generate(
    config: RunConfig, worker: type = GroundTruthWorker, items: list[dict] | None = None
) -> Location:
    """Write (or finish) the corpus for ``config`` and return its folder. Needs a Ray session.

    ``items``: the work items the pre-run check already read (``RunPlan.items``); without them
    they are read here. ``worker`` is the actor class; tests pass a subclass that injects faults."""
    started = time.time()
    task = get_task(config.task)
    # Everything that can be wrong with the inputs is checked before any folder is created.
    if items is None:
        items = task.work_items(config, load_tokenizer(config.target, config.trust_remote_code))
    if not items:
        raise ValueError(f"task {config.task} found no work items; check generate.* sources")
    corpus_dir = config.corpus_dir
    shards = plan_shards(config, items)
    report_split(config, Counter(item["split"] for item in items), "items")
    claim_plan(corpus_dir, corpus_plan(config, items))

    todo = [i for i in range(len(shards)) if not (corpus_dir / shard_name(i)).exists()]
    log.info(
        "%s ground truth: %d items in %d shards, %d to do (held out by %s)",
        config.task,
        len(items),
        len(shards),
        len(todo),
        config.held_out_by,
    )
    if todo:
        rows = [{"shard": i, "payload": json.dumps(shards[i])} for i in todo]
        dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
        with warnings.catch_warnings():
            # max_restarts/max_task_retries have no named parameter yet; the deprecation names none
            warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
            results, first = [], None
            for result in _run_shards(dataset, worker, config, corpus_dir, len(todo)):
                if (
                    first is None
                ):  # the stage's fixed cost: planning, actor start, model load, one shard
                    first = Timing(time.time() - started, int(result["rows"]))
                results.append(result)
                _report_progress(len(results), len(todo), started, first.seconds)
        written = sum(r["rows"] for r in results)
        log.info(
            "wrote %d shards: %d rows (%.1f rows/s), %d items rejected",
            len(results),
            written,
            written / (time.time() - started),
            sum(r["rejected"] for r in results),
        )
    else:
        written, first = 0, None
    manifest = write_manifest(
        config, corpus_dir, len(shards), len(items), time.time() - started, written, first
    )
    report_split(config, Counter(manifest["rows_by_split"]), "rows")
    return corpus_dir


def _report_progress(done: int, total: int, started: float, first_seconds: float) -> None:
    """A line at every tenth of the shards (Ray Data's own bars are not shown off a terminal);
    the time to go is at the rate since the first shard (the first pays for starting actors)."""
    step = max(1, total // 10)
    if done % step or done >= total:
        return
    elapsed = time.time() - started
    rate = (elapsed - first_seconds) / (done - 1) if done > 1 else first_seconds
    log.info(
        "%d/%d shards written (%.0f s; about %.0f s to go)",
        done,
        total,
        elapsed,
        rate * (total - done),
    )


def report_split(config: RunConfig, counts: Counter, what: str) -> None:
    """Say how the split came out: how many items cross it (dropped, as rejects with the reason),
    and a warning that names the key to change when one side is empty."""
    group, fraction = config.held_out_by, config.generate.held_out_fraction
    if counts[CROSS]:
        log.info(
            "%d of %d items have %s values on both sides of the held-out split: dropped (see the "
            "rejects)",
            counts[CROSS],
            sum(counts.values()),
            group,
        )
    for side, fix in (("test", "raise"), ("train", "lower")):
        if not counts[side]:
            log.warning(
                "the %s split has no %s (held out by %s, generate.held_out_fraction=%g): %s "
                "generate.held_out_fraction, or give more items",
                "held-out" if side == "test" else "training",
                what,
                group,
                fraction,
                fix,
            )


class Timing(NamedTuple):
    seconds: float
    rows: int


def _run_shards(
    dataset, worker: type, config: RunConfig, corpus_dir: Location, shards: int
) -> Iterator[dict]:
    """One actor call per shard; each actor loads the target once. Each shard's record
    (``shard``, ``rows``, ``rejected``) comes as its shard is written."""
    gen = config.generate
    return dataset.map_batches(
        worker,
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=min(gen.num_actors, shards)),
        num_cpus=gen.cpus_per_actor,
        num_gpus=gen.gpus_per_actor,
        # A crashed actor (preempted node, OOM) is restarted and its shard rerun; shards are
        # written whole or not at all, so a retry neither loses nor duplicates records.
        max_restarts=gen.max_actor_restarts,
        max_task_retries=gen.max_actor_restarts,
        fn_constructor_kwargs={
            "task": config.task,
            "target_name": config.target,
            "corpus_dir": corpus_dir.uri,
            "use_gpu": gen.gpus_per_actor > 0,
            "options": config.to_dict()["generate"],
            "trust_remote_code": config.trust_remote_code,
        },
    ).iter_rows()


def _shard_counts(corpus_dir: Location, num_shards: int) -> tuple[list[dict], dict, dict]:
    """(each shard's record, rows by split, rejects by the kind of reason) of a written corpus."""
    shards, by_split, reject_reasons = [], Counter(), Counter()
    for index in range(num_shards):
        path = corpus_dir / shard_name(index)
        table = pq.read_table(path.path, filesystem=path.fs, columns=["split"])
        counts = dict(sorted(Counter(table["split"].to_pylist()).items()))
        by_split.update(counts)
        rejects_path = corpus_dir / REJECTS / shard_name(index)
        rejects = pq.read_table(rejects_path.path, filesystem=rejects_path.fs, columns=["reason"])
        reasons = rejects["reason"].to_pylist()
        # Group reasons by their wording, without the numbers and details in parentheses.
        reject_reasons.update(
            re.sub(r"\d+(\.\d+)?", "N", reason.split(" (")[0]) for reason in reasons
        )
        shards.append({"file": path.name, "rows": table.num_rows, "rows_by_split": counts,
                       "rejected": len(reasons)})  # fmt: skip
    return shards, dict(by_split), dict(reject_reasons)


def _first_shard_timing(first_shard: Timing | None, seconds: float, written_rows: int) -> dict:
    """The stage's fixed cost, and the rate once every actor is up: what more items would add."""
    rate = None
    if first_shard and seconds > first_shard.seconds:
        rate = round((written_rows - first_shard.rows) / (seconds - first_shard.seconds), 2)
    return {
        "first_shard_seconds": round(first_shard.seconds, 1) if first_shard else None,
        "rows_per_second_after_first_shard": rate,
    }


def write_manifest(
    config: RunConfig,
    corpus_dir: Location,
    num_shards: int,
    num_items: int,
    seconds: float,
    written_rows: int,
    first_shard: Timing | None,
    extra: dict | None = None,
) -> dict:
    """The manifest, written last; ``extra`` adds or replaces keys (an import names its source)."""
    shards, by_split, reject_reasons = _shard_counts(corpus_dir, num_shards)
    schema = pq.read_schema((corpus_dir / shard_name(0)).path, filesystem=corpus_dir.fs)
    manifest = {
        "task": config.task,
        "target": config.target,
        "num_items": num_items,
        "rows": sum(s["rows"] for s in shards),
        "rows_by_split": by_split,
        "held_out_by": config.held_out_by,
        "rejected": sum(s["rejected"] for s in shards),
        "rejected_by_reason": reject_reasons,
        "rejects": f"{REJECTS}/",
        "shards": shards,
        # the shards holding rows: a shard whose every item was rejected is a valid 0-row Parquet
        # file, which `datasets.load_dataset("parquet")` refuses ("BatchSize must be greater than
        # 0")
        "data_files": [s["file"] for s in shards if s["rows"]],
        "schema": schema.to_string(show_schema_metadata=False, show_field_metadata=False),
        "config": config.to_dict(),
        "config_hash": config.fingerprint(),
        "versions": versions(),
        # of the invocation that wrote shards (a resumed generation counts only its own); a rerun
        # that found every shard written keeps the numbers of the one before
        "seconds": round(seconds, 1),
        "rows_written": written_rows,
        "rows_per_second": round(written_rows / seconds, 2) if seconds > 0 else None,
        **_first_shard_timing(first_shard, seconds, written_rows),
        **(extra or {}),
    }
    previous = corpus_dir / MANIFEST
    if not written_rows and previous.exists():
        manifest.update(
            {key: value for key, value in previous.read_json().items() if key in TIMING_KEYS}
        )
    (corpus_dir / MANIFEST).write_json(manifest)
    return manifest
