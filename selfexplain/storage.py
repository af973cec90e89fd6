"""Locations that may be local folders or URIs of any pyarrow filesystem (``s3://``, ``gs://``...).

Every output path in selfexplain is a :class:`Location`, so a run writes to local disk in tests
and to S3 on a cluster with the same code. Credentials and endpoints come from the environment
the way pyarrow reads them (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``...), never from configs.

Writes are all-or-nothing: local files go to a temporary name and are renamed; object stores
publish an object only when its upload completes. A folder counts as finished when the marker
file written last into it exists.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pyarrow import fs as pafs

DOWNLOAD_COMPLETE = ".download-complete"
"""Written last into a downloaded folder: its presence means the copy is whole."""


class Location:
    """A file or folder on some filesystem, joined with ``/`` like a Path."""

    def __init__(
        self,
        uri: str | os.PathLike,
        filesystem: pafs.FileSystem | None = None,
        path: str | None = None,
    ):
        uri = os.fspath(uri)
        if filesystem is not None and path is not None:
            self.fs, self.path, self.uri = filesystem, path, uri
        elif "://" in uri:
            self.fs, self.path = pafs.FileSystem.from_uri(uri)
            self.uri = uri.rstrip("/")
        else:
            self.fs, self.path = pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())
            self.uri = self.path

    def __truediv__(self, name: str) -> Location:
        return Location(f"{self.uri}/{name}", self.fs, f"{self.path}/{name}")

    def __repr__(self) -> str:
        return self.uri

    __str__ = __repr__

    def __fspath__(self) -> str:
        return str(self.local_path)

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    @property
    def local_path(self) -> Path:
        if not self.is_local:
            raise ValueError(f"{self.uri} is not on the local filesystem")
        return Path(self.path)

    def exists(self) -> bool:
        return self.fs.get_file_info(self.path).type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self.fs.get_file_info(self.path).type == pafs.FileType.File

    def mkdir(self) -> None:
        self.fs.create_dir(self.path, recursive=True)

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as handle:
            return handle.read()

    def read_text(self) -> str:
        return self.read_bytes().decode("utf-8")

    def read_json(self) -> Any:
        return json.loads(self.read_text())

    def write_bytes(self, data: bytes) -> None:
        """Write all-or-nothing: a reader never sees a partial file."""
        if self.is_local:
            with _synced_temporary(self.local_path, data) as tmp:
                os.replace(tmp, self.local_path)
                _fsync_dir(self.local_path.parent)  # and the rename survives a power cut
        else:
            with self.fs.open_output_stream(self.path) as handle:
                handle.write(data)

    def create_exclusive(self, data: bytes) -> bool:
        """Write this file only if it does not exist, atomically; False when it already did.

        Two runs that check and then write could both see "absent" and both write: here exactly
        one wins. Locally the whole file is written under a temporary name and hard-linked into
        place (a link never replaces an existing file); on S3 it is a conditional put
        (``If-None-Match: *``, through boto3 when installed). Other stores fall back to
        check-then-write.
        """
        if self.is_local:
            with _synced_temporary(self.local_path, data) as tmp:
                try:
                    os.link(tmp, self.local_path)
                except FileExistsError:
                    return False
                _fsync_dir(self.local_path.parent)
                return True
        if self.fs.type_name == "s3" and importlib.util.find_spec("boto3") is not None:
            return _s3_put_if_absent(self.path, data)
        if self.exists():  # no conditional write here: check-then-write, as before
            return False
        self.write_bytes(data)
        return True

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode("utf-8"))

    def write_json(self, data: Any) -> None:
        self.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))

    def delete(self) -> None:
        """Remove this file, if it is there."""
        if self.exists():
            self.fs.delete_file(self.path)

    def delete_dir(self) -> None:
        if self.exists():
            self.fs.delete_dir(self.path)

    def upload_dir(self, local_dir: Path, marker: str) -> None:
        """Copy a local folder here, ``marker`` (a file inside it) last, so that its presence
        means the copy is complete."""
        if self.is_local:
            # a staging folder of its own: two uploads to one place never write into each other's
            self.local_path.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(
                tempfile.mkdtemp(
                    prefix=f".{self.name}.", suffix=".partial", dir=self.local_path.parent
                )
            )
            try:
                shutil.copytree(local_dir, staging, dirs_exist_ok=True)
                shutil.rmtree(self.local_path, ignore_errors=True)
                staging.rename(self.local_path)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            return
        for file in sorted(Path(local_dir).rglob("*")):
            relative = file.relative_to(local_dir).as_posix()
            if file.is_file() and relative != marker:
                (self / relative).write_bytes(file.read_bytes())
        (self / marker).write_bytes((Path(local_dir) / marker).read_bytes())

    def download_dir(self, local_dir: Path) -> Path:
        """This folder as a local one: itself if local, else a copy under ``local_dir``."""
        if self.is_local:
            return self.local_path
        # Copied into a staging folder of its own, marked complete, then renamed into place: a
        # copy cut short is never mistaken for the model, and two copies never mix.
        local_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(
            tempfile.mkdtemp(prefix=f".{local_dir.name}.", suffix=".partial", dir=local_dir.parent)
        )
        try:
            pafs.copy_files(
                self.path,
                str(staging),
                source_filesystem=self.fs,
                destination_filesystem=pafs.LocalFileSystem(),
            )
            (staging / DOWNLOAD_COMPLETE).write_text(self.uri)
            shutil.rmtree(local_dir, ignore_errors=True)
            try:
                staging.rename(local_dir)
            except OSError:  # another process put its (complete) copy there first
                if not (local_dir / DOWNLOAD_COMPLETE).is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return local_dir


@contextmanager
def _synced_temporary(target: Path, data: bytes) -> Iterator[str]:
    """``data`` in a temporary file beside ``target``, on disk (fsync) before the caller gives it
    the target's name; the temporary name is removed afterwards, whatever happens."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        yield tmp
    finally:
        Path(tmp).unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _s3_put_if_absent(path: str, data: bytes) -> bool:
    # boto3 is optional: conditional writes on S3 where it is installed
    import boto3
    from botocore.exceptions import ClientError

    bucket, _, key = path.partition("/")
    try:
        boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in (
            "PreconditionFailed",
            "ConditionalRequestConflict",
        ):
            return False
        raise
    return True


def parquet_bytes(table, compression: str = "zstd") -> bytes:
    import pyarrow.parquet as pq  # deferred: the config imports this module

    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression=compression)
    return buffer.getvalue()
