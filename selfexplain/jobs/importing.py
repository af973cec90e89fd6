"""``selfexplain import``: the paper's released datasets as selfexplain corpora.

The run's task picks the layout: ``patching`` reads an ``act_patch_*_counterfact`` dataset,
``hint`` an ``input_ablation_*_hint`` dataset, ``features`` the SAE explanation archive (see
:mod:`selfexplain.corpus.paper_files`). The paper's splits are kept: its ``train`` rows are
trained on (the in-distribution queries are drawn from them as for a generated corpus) and its
``test`` rows are the held-out queries; a record of any other split is rejected with that reason.

The output is a corpus like ``generate`` writes: Parquet shards in the task's schema, a rejects
table per shard (every record that could not become a row, with the reason), and the manifest
last. It is resumable: the records are cut into shards in a fixed order, a rerun writes only the
shards that are missing, and a rerun with another source or target is refused (``plan.json``).

It runs in one process. The target's tokenizer turns the paper's token lists into text; for
activation patching the target itself reads each counterfactual prompt once (its next token, and
the patched vector where a record holds none), on a GPU when one is visible.
"""

from __future__ import annotations

import logging
import time

import torch

from selfexplain.config import RunConfig
from selfexplain.corpus.io import REJECTS, claim_plan, shard_name, write_shard
from selfexplain.corpus.paper_files import (
    SPLITS,
    PaperFileError,
    read_pickle,
    read_records,
    split_files,
)
from selfexplain.corpus.schema import REJECTS_SCHEMA, stable_id
from selfexplain.jobs.generate import write_manifest
from selfexplain.models.files import model_width
from selfexplain.models.loading import load_model, load_tokenizer, resolve_model_dir
from selfexplain.storage import Location
from selfexplain.tasks import Rejected, get_task
from selfexplain.tasks.paper_rows import PAPER_LAYOUTS, PaperLayout, TargetReader, item_json

log = logging.getLogger(__name__)
SHARD_RECORDS = 1024


def source_records(layout: PaperLayout, task: str, source: Location) -> list[tuple[str, object]]:
    """Every record of the source, as (split, record), in a fixed order: by split, file and row."""
    if layout.archive:
        records = []
        for split in SPLITS:
            path = source / "explanations" / f"{split}_explanations.pkl"
            if path.exists():
                pairs = read_pickle(path)
                if not isinstance(pairs, (list, tuple)):
                    raise PaperFileError(f"{path} holds no list of (example, label) pairs")
                records += [(split, pair) for pair in pairs]
        if not records:
            raise PaperFileError(
                f"{source} has no explanations/train_explanations.pkl or test_explanations.pkl; "
                "give the folder of the explanation archive (explanation_dir in the paper's config)"
            )
        return records
    records = []
    for split, files in sorted(split_files(source).items()):
        for file in files:
            records += [(split, r) for r in read_records(file, layout.columns, f"{task} dataset")]
    return records


def import_corpus(config: RunConfig, source: str) -> Location:
    """Write (or finish) ``config``'s corpus from the paper's dataset at ``source``; return its
    folder."""
    started = time.time()
    task = get_task(config.task)
    layout = PAPER_LAYOUTS.get(config.task)
    if layout is None:
        raise PaperFileError(
            f"config key 'task': the paper released no {config.task} data; import one of "
            f"{', '.join(sorted(PAPER_LAYOUTS))}"
        )
    origin = Location(source)
    if not origin.exists():
        raise PaperFileError(f"import source {source} not found; give the dataset's folder or URI")
    records = source_records(layout, config.task, origin)
    target_dir = resolve_model_dir(config.target)
    d_model = model_width(target_dir) or 0
    shards = [records[i : i + SHARD_RECORDS] for i in range(0, len(records), SHARD_RECORDS)]
    corpus = config.corpus_dir
    claim_plan(corpus, _plan(config, origin, records, len(shards)))
    todo = [i for i in range(len(shards)) if not (corpus / shard_name(i)).exists()]
    log.info(
        "importing %d %s records from %s: %d shards, %d to do",
        len(records),
        config.task,
        source,
        len(shards),
        len(todo),
    )
    target = TargetReader(config.target, load_tokenizer(target_dir, config.trust_remote_code),
                          lambda: _load_target(target_dir, config.trust_remote_code))  # fmt: skip
    written = rejected = 0
    for done, index in enumerate(todo, 1):
        rows, rejects = _convert(layout, config.task, shards[index], target, d_model, origin)
        # a shard of no rows still marks its records as done, in the task's schema
        written += write_shard(rows, task.schema(d_model), corpus / shard_name(index))
        write_shard(rejects, REJECTS_SCHEMA, corpus / REJECTS / shard_name(index))
        rejected += len(rejects)
        log.info("shard %d/%d: %d rows, %d rejected", done, len(todo), len(rows), len(rejects))
    source_keys = {"imported_from": origin.uri, "held_out_by": "the paper's split"}
    write_manifest(config, corpus, len(shards), len(records), time.time() - started, written,
                   None, extra=source_keys)  # fmt: skip
    log.info("imported %d rows (%d records rejected) into %s", written, rejected, corpus)
    return corpus


def _convert(layout, task: str, records, target: TargetReader, d_model: int, origin: Location):
    rows, rejects = [], []
    for split, record in records:
        try:
            if split not in SPLITS:
                raise Rejected(f"split {split!r} is neither train nor test")
            rows.append(layout.row(record, split, target, d_model, origin))
        except Rejected as why:
            rejects.append(_reject(task, record, str(why)))
        except (KeyError, TypeError, ValueError, IndexError) as err:
            rejects.append(
                _reject(task, record, f"a malformed record ({type(err).__name__}: {err})")
            )
    return rows, rejects


def _reject(task: str, record, reason: str) -> dict:
    text = item_json(record)
    return {"item_id": stable_id(task, text), "task": task, "reason": reason, "item": text}


def _plan(config: RunConfig, origin: Location, records: list, shards: int) -> dict:
    """What the corpus is made from: the target and task, the source and its records' count (a
    rerun on another source or target is refused)."""
    return {
        "fingerprint": config.fingerprint("target", "task", "seed"),
        "imported_from": origin.uri,
        "items": len(records),
        "num_shards": shards,
    }


def _load_target(target_dir, trust_remote_code: bool):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    return load_model(target_dir, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
