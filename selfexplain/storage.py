"""Locations that may be local folders or URIs of any pyarrow filesystem (``s3://``, ``gs://``...).

Every output path in selfexplain is a :class:`Location`, so a run writes to local disk in tests
and to S3 on a cluster with the same code. Credentials and endpoints come from the environment
the way pyarrow reads them (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``...), never from configs.

Writes are all-or-nothing: local files go to a temporary name and are renamed; object stores
publish an object only when its upload completes. A folder counts as finished when the marker
file written last into it exists.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pyarrow import fs as pafs


class Location:
    """A file or folder on some filesystem, joined with ``/`` like a Path."""

    def __init__(self, uri: str | os.PathLike, filesystem: pafs.FileSystem | None = None, path: str | None = None):
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
            target = self.local_path
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        else:
            with self.fs.open_output_stream(self.path) as handle:
                handle.write(data)

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode("utf-8"))

    def write_json(self, data: Any) -> None:
        self.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))

    def delete_dir(self) -> None:
        if self.exists():
            self.fs.delete_dir(self.path)

    def upload_dir(self, local_dir: Path, marker: str) -> None:
        """Copy a local folder here, ``marker`` (a file inside it) last, so that its presence
        means the copy is complete."""
        if self.is_local:
            staging = self.local_path.with_name(f".{self.name}.partial")
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(local_dir, staging)
            shutil.rmtree(self.local_path, ignore_errors=True)
            staging.rename(self.local_path)
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
        local_dir.mkdir(parents=True, exist_ok=True)
        pafs.copy_files(self.path, str(local_dir), source_filesystem=self.fs,
                        destination_filesystem=pafs.LocalFileSystem())
        return local_dir


def parquet_bytes(table, compression: str = "zstd") -> bytes:
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression=compression)
    return buffer.getvalue()
