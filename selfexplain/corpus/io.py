"""Writing and reading corpus shards and manifests, all-or-nothing, on any filesystem.

A shard is published only when complete (see :mod:`selfexplain.storage`), so a killed job
leaves either a whole shard or none, and a rerun can trust every ``shard-*.parquet`` it finds.
The manifest is written last. ``plan.json`` records what a folder was made from, so a rerun
with other settings is refused instead of mixing two corpora.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from selfexplain.corpus.schema import item_id, rows_to_table, stable_id
from selfexplain.errors import ConfigError
from selfexplain.storage import Location, parquet_bytes

MANIFEST = "manifest.json"
REJECTS = "rejects"
PLAN = "plan.json"


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.parquet"


def write_shard(rows: list[dict], schema: pa.Schema, location: Location) -> int:
    """Write rows with an explicit schema, all-or-nothing; return the row count."""
    table = rows_to_table(rows, schema)
    location.write_bytes(parquet_bytes(table))
    return table.num_rows


def corpus_plan(config, items: list[dict]) -> dict:
    """What a corpus folder is made from: the settings that shape it and its work items."""
    return {
        "fingerprint": config.fingerprint("target", "task", "seed", "generate"),
        "items": stable_id(*(item_id(config.task, item) for item in items)),
        "num_shards": -(-len(items) // config.generate.items_per_shard),
    }


def claim_plan(folder: Location, plan: dict, also_accepted: Sequence[dict] = ()) -> None:
    """Record what ``folder`` is made from, or refuse if it was made from something else.
    ``also_accepted``: plans recorded in an older form that mean the same.

    The claim is atomic: of two runs of one name started at once with different settings,
    exactly one writes its plan and the other is refused here, before it writes a shard. A plan
    this process writes is withdrawn if its stage fails before writing anything a rerun would
    reuse (:func:`withdrawn_on_failure`)."""
    path = folder / PLAN
    if path.create_exclusive(json.dumps(plan, indent=2, sort_keys=True).encode()):
        _claimed_here.append(folder)
        return
    if path.read_json() in (plan, *also_accepted):
        return
    raise ConfigError(
        f"{folder} was made with other settings or inputs; pick a new run name (name=...) "
        "or delete that folder"
    )


# The folders whose plans this process wrote, so that a failed stage can withdraw them.
_claimed_here: list[Location] = []


@contextmanager
def withdrawn_on_failure() -> Iterator[None]:
    """If the block fails, every plan it claimed under which nothing a rerun would reuse was
    written (no shard, no checkpoint) is removed: the corrected rerun is not refused as "made
    with other settings". A concurrent run's claim is never touched (only this process's)."""
    start = len(_claimed_here)
    try:
        yield
    except BaseException:
        for folder in _claimed_here[start:]:
            if not holds_work(folder):
                (folder / PLAN).delete()
        raise
    finally:
        del _claimed_here[start:]


# What a stage writes that a rerun keeps: corpus shards, Ray Train's checkpoints.
WORK_PREFIXES = ("shard-", "checkpoint_")


def holds_work(folder: Location) -> bool:
    """Whether anything a rerun would reuse was written under ``folder``."""
    selector = pafs.FileSelector(folder.path, recursive=True, allow_not_found=True)
    return any(
        info.base_name.startswith(WORK_PREFIXES) for info in folder.fs.get_file_info(selector)
    )


def read_manifest(corpus: Location) -> dict:
    path = corpus / MANIFEST
    if not path.exists():
        raise FileNotFoundError(
            f"no corpus at {corpus} ({MANIFEST} missing); run `selfexplain generate` first"
        )
    return path.read_json()


def corpus_files(corpus: Location) -> list[str]:
    """Filesystem paths (for ``corpus.fs``) of every finished shard."""
    return [(corpus / shard["file"]).path for shard in read_manifest(corpus)["shards"]]


def read_corpus(
    corpus: Location, split: str | None = None, columns: list[str] | None = None
) -> pa.Table:
    """All finished shards as one table, optionally one split only."""
    files = corpus_files(corpus)
    if not files:
        raise ValueError(f"corpus {corpus} has no shards")
    table = pq.read_table(files, filesystem=corpus.fs, columns=columns)
    if split is not None:
        table = table.filter(pc.equal(table["split"], split))
    return table
