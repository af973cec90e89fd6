"""Where a run writes and which cluster it joins, checked before Ray starts: a writable folder
on a real filesystem (not /proc, not a FIFO), a bucket with a valid name that answers within
seconds, a Ray address that accepts connections. Without these checks an unreachable object
store or cluster holds a run for many minutes of silent retries."""

from __future__ import annotations

import os
import re
import socket
import threading
from pathlib import Path

from pyarrow import fs as pafs

from selfexplain.errors import ConfigError
from selfexplain.inputs import kind_of
from selfexplain.storage import Location

PROBE_TIMEOUT_S = 20.0


def check_output_dir(uri: str, key: str = "output_dir") -> Location:
    """A writable local folder on a real filesystem (or one that can be made there), or a bucket
    of an object store that answers."""
    if "://" in uri:
        location = open_store(uri, key)
        probe_bucket(location, key)
        return location
    try:
        path = Location(uri).local_path
    except RuntimeError:  # Path.expanduser: "~name" of a user this machine does not have
        raise ConfigError(
            f"config key '{key}': {uri!r} names the home folder of a user this machine does not "
            "have; give the folder's full path"
        ) from None
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(
            f"config key '{key}': {existing} is {kind_of(existing)}, not a folder; choose another "
            f"{key}"
        )
    filesystem = filesystem_type(existing)
    if filesystem in PSEUDO_FILESYSTEMS:
        raise ConfigError(
            f"config key '{key}': {existing} is on {filesystem}, a view of the kernel, not a "
            f"place to write files; choose another {key}"
        )
    if not os.access(existing, os.W_OK | os.X_OK) and key == "output_dir":
        raise ConfigError(
            f"config key '{key}': {existing} is not writable; choose a folder you can write to"
        )
    return Location(uri)


def open_store(uri: str, key: str) -> Location:
    """An object-store URI with a valid bucket name, opened within the probe's time (S3 asks the
    bucket's region as it opens)."""
    check_bucket_name(uri, key)
    bucket = f"{uri.split('://')[0]}://{uri.split('://', 1)[1].split('/', 1)[0]}"
    outcome = answer_within(lambda: Location(uri), PROBE_TIMEOUT_S)
    if outcome is None:
        raise ConfigError(
            f"config key '{key}': {bucket} did not answer in {PROBE_TIMEOUT_S:.0f} s "
            "(unreachable: check the network and the endpoint, e.g. AWS_ENDPOINT_URL)"
        )
    if isinstance(outcome, ValueError) or (
        isinstance(outcome, OSError) and "Unrecognized filesystem" in str(outcome)
    ):
        raise ConfigError(
            f"config key '{key}': {uri!r} is not a usable folder or URI ({outcome}); "
            "use a local path or s3://bucket/prefix, gs://bucket/prefix"
        )
    if isinstance(outcome, Exception):
        raise ConfigError(f"config key '{key}': {bucket}: {bucket_problem(str(outcome))}")
    return outcome


# Filesystems that look like folders but hold no files of their own.
PSEUDO_FILESYSTEMS = frozenset(
    "proc sysfs devtmpfs devpts cgroup cgroup2 debugfs securityfs tracefs configfs pstore bpf "
    "mqueue autofs".split()
)


def filesystem_type(path: Path) -> str:
    """The type of the filesystem ``path`` is on (Linux's /proc/mounts; '' elsewhere)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return ""
    best, kind = "", ""
    resolved = str(path.resolve())
    for line in mounts:
        fields = line.split()
        mount = fields[1].replace("\\040", " ")
        inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, kind = mount, fields[2]
    return kind


# S3's rules (GCS also allows underscores): 3-63 characters, lowercase letters, digits, dots and
# hyphens, beginning and ending with a letter or digit.
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]")


def check_bucket_name(uri: str, key: str) -> None:
    scheme, _, rest = uri.partition("://")
    bucket = rest.split("/", 1)[0]
    if scheme in ("s3", "gs", "gcs") and not BUCKET_NAME.fullmatch(bucket):
        raise ConfigError(
            f"config key '{key}': {bucket!r} is not a valid bucket name (3-63 lowercase letters, "
            "digits, dots and hyphens, starting and ending with a letter or digit); fix the name"
        )


def probe_bucket(location: Location, key: str, timeout_s: float | None = None) -> None:
    """The bucket answers within ``timeout_s``: an object store that never answers (no network,
    a wrong endpoint) would otherwise hold the run for many minutes of retries."""
    timeout_s = timeout_s or PROBE_TIMEOUT_S
    bucket = location.path.split("/", 1)[0]
    where = f"{location.uri.split('://')[0]}://{bucket}"
    outcome = answer_within(lambda: location.fs.get_file_info(bucket), timeout_s)
    if outcome is None:
        raise ConfigError(
            f"config key '{key}': {where} did not answer in {timeout_s:.0f} s (unreachable: check "
            "the network and the endpoint, e.g. AWS_ENDPOINT_URL)"
        )
    if isinstance(outcome, Exception):
        raise ConfigError(f"config key '{key}': {where}: {bucket_problem(str(outcome))}")
    if outcome.type == pafs.FileType.NotFound:
        raise ConfigError(f"config key '{key}': no such bucket {where}; create it or fix the name")


DENIED = ("credential", "access denied", "accessdenied", "403", "forbidden", "invalidaccesskeyid",
          "signature")  # fmt: skip


def bucket_problem(message: str) -> str:
    """An object store's error, as its cause and the fix."""
    lowered = message.lower()
    if any(word in lowered for word in ("nosuchbucket", "does not exist", "not found", "404")):
        return "no such bucket; create it or fix the name"
    if any(word in lowered for word in DENIED):
        return (
            "no credentials, or they are refused; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
            "(or GOOGLE_APPLICATION_CREDENTIALS) for a key that may use this bucket"
        )
    if any(word in lowered for word in ("resolve", "connect", "network", "timed out")):
        return "unreachable; check the network and the endpoint (AWS_ENDPOINT_URL)"
    return f"cannot be used ({' '.join(message.split())[:200]})"


def answer_within(call, timeout_s: float):
    """``call()``'s result or exception, or None if it has not returned after ``timeout_s`` (it
    is left running in a daemon thread, which does not keep the process alive)."""
    outcome = []

    def run():
        try:
            outcome.append(call())
        except Exception as err:  # handed back as the answer
            outcome.append(err)

    thread = threading.Thread(target=run, name="probe", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return outcome[0] if outcome else None


def check_ray_address(address: str, timeout_s: float = 10.0) -> None:
    """Something accepts connections at ``ray.address`` (Ray itself would retry for ever)."""
    if not address or address in ("auto", "local"):
        return
    host_port = address.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    if not port.isdigit():
        default = {"ray": "10001", "http": "8265", "https": "443"}.get(address.split("://")[0])
        host, port = host_port, default or "6379"
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as err:
        cause = "no answer" if isinstance(err, TimeoutError) else err.strerror or str(err)
        raise ConfigError(
            f"config key 'ray.address': nothing answers at {host}:{port} ({cause}); start the "
            "cluster (ray start --head) or fix the address"
        ) from None
