"""Writing and reading corpus shards and manifests, atomically.

A shard is written to a hidden temporary name in the same folder and renamed into place only
when complete, so a killed job leaves either a whole shard or none, and a rerun can trust that
every ``shard-*.parquet`` it finds is finished. The manifest is written last, the same way.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

MANIFEST = "manifest.json"


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.parquet"


def write_shard(rows: list[dict], schema: pa.Schema, path: Path) -> int:
    """Write rows with an explicit schema to ``path`` atomically; return the row count."""
    table = pa.Table.from_pylist(rows, schema=schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return table.num_rows


def write_json_atomic(data: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True, default=str)
    os.replace(tmp, path)


def read_manifest(corpus_dir: Path) -> dict:
    path = Path(corpus_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"no corpus at {corpus_dir} ({MANIFEST} missing); run `selfexplain generate` first"
        )
    return json.loads(path.read_text())


def read_corpus(corpus_dir: Path, split: str | None = None) -> pa.Table:
    """All finished shards of a corpus as one table, optionally one split only."""
    manifest = read_manifest(corpus_dir)
    files = [str(Path(corpus_dir) / shard["file"]) for shard in manifest["shards"]]
    table = pq.read_table(files, schema=None) if files else None
    if table is None:
        raise ValueError(f"corpus {corpus_dir} has no shards")
    if split is not None:
        table = table.filter(pa.compute.equal(table["split"], split))
    return table


def corpus_files(corpus_dir: Path) -> list[str]:
    manifest = read_manifest(corpus_dir)
    return [str((Path(corpus_dir) / shard["file"]).resolve()) for shard in manifest["shards"]]
