"""A finished corpus, checked against its manifest and its task's schema before anything trains
on it or scores it: a shard changed, copied over another, lost or added by hand is refused with
one line naming it, instead of training on wrong or duplicated rows."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from selfexplain.corpus.io import REJECTS
from selfexplain.corpus.schema import REJECTS_SCHEMA
from selfexplain.errors import InputError
from selfexplain.storage import Location

REGENERATE = "delete it and rerun `selfexplain generate` to write it again"


class CorpusFileError(InputError):
    """A corpus file (plan, manifest, shard) that cannot be what it claims; the message names it
    and the way out."""


def _columns(schema: pa.Schema) -> list[tuple[str, pa.DataType, bool]]:
    return [(field.name, field.type, field.nullable) for field in schema]


def schema_difference(found: pa.Schema, expected: pa.Schema) -> str:
    """'' when the columns agree in name, type and nullability; else what differs first."""
    have, want = _columns(found), _columns(expected)
    if have == want:
        return ""
    missing = [name for name, *_ in want if name not in found.names]
    extra = [name for name, *_ in have if name not in expected.names]
    if missing or extra:
        return "; ".join(
            part
            for part in (
                f"missing column(s) {', '.join(missing)}" if missing else "",
                f"unexpected column(s) {', '.join(extra)}" if extra else "",
            )
            if part
        )
    for (name, kind, nullable), (_, want_kind, want_nullable) in zip(have, want):
        if kind != want_kind or nullable != want_nullable:
            return f"column {name} is {kind}{'' if nullable else ' not null'}, not {want_kind}"
    return "its columns are in another order"


def check_shard_files(corpus: Location, manifest: dict, schema: pa.Schema | None) -> list[Location]:
    """Every shard the manifest lists exists, holds the rows it says, has the task's schema
    (``schema``, when known) and its rejects file; no shard is there that it does not list.
    Returns the shards' locations."""
    listed = [entry.get("file") for entry in manifest["shards"]]
    present = set(shard_names(corpus))
    unlisted = sorted(present - set(listed))
    if unlisted:
        raise CorpusFileError(
            f"corpus {corpus} holds {unlisted[0]}, which its manifest does not list; {REGENERATE}"
        )
    shards = []
    for entry in manifest["shards"]:
        shard = corpus / str(entry.get("file"))
        if shard.name not in present:
            raise CorpusFileError(f"corpus shard {shard} is missing; {REGENERATE}")
        _check_parquet(shard, entry.get("rows"), schema)
        _check_parquet(corpus / REJECTS / shard.name, entry.get("rejected"), REJECTS_SCHEMA)
        shards.append(shard)
    return shards


def check_unique_records(corpus: Location, shards: list[Location]) -> None:
    """No record id appears twice: a shard copied over another duplicates rows and loses its own."""
    seen: dict[str, str] = {}
    for shard in shards:
        ids = pq.read_table(shard.path, filesystem=shard.fs, columns=["record_id"])["record_id"]
        for record in ids.to_pylist():
            if record in seen:
                raise CorpusFileError(
                    f"corpus shards {seen[record]} and {shard.name} of {corpus} both hold record "
                    f"{record}; {REGENERATE}"
                )
            seen[record] = shard.name


def _check_parquet(file: Location, rows, schema: pa.Schema | None) -> None:
    try:
        metadata = pq.read_metadata(file.path, filesystem=file.fs)
        found = metadata.schema.to_arrow_schema()
    except FileNotFoundError:
        raise CorpusFileError(f"corpus file {file} is missing; {REGENERATE}") from None
    except (OSError, ValueError) as err:
        raise CorpusFileError(f"corpus file {file} is damaged ({err}); {REGENERATE}") from None
    if rows is not None and metadata.num_rows != rows:
        raise CorpusFileError(
            f"corpus file {file} holds {metadata.num_rows} rows, its manifest says {rows}; "
            f"{REGENERATE}"
        )
    difference = schema_difference(found, schema) if schema is not None else ""
    if difference:
        raise CorpusFileError(
            f"corpus file {file} does not have its task's schema ({difference}); {REGENERATE}"
        )


def shard_names(corpus: Location) -> list[str]:
    """The names of the shard files in a corpus folder (none when it does not exist)."""
    selector = pafs.FileSelector(corpus.path, allow_not_found=True)
    return [
        info.base_name
        for info in corpus.fs.get_file_info(selector)
        if info.base_name.startswith("shard-")
    ]
