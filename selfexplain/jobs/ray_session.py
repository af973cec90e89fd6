"""Start (or join) the Ray cluster a pipeline stage runs on."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import ray

from selfexplain import internals
from selfexplain.config import RayConfig
from selfexplain.interrupts import keep_handlers

log = logging.getLogger(__name__)

# A local cluster's processes inherit the driver's environment, cloud credentials included, so
# nothing secret is ever put in the runtime_env: Ray writes a runtime_env in plain text into its
# session logs and onto worker command lines. Only settings that change behaviour are forwarded
# (for the record, and for workers on a cluster joined by address).
FORWARDED_ENV = (
    "HF_HUB_OFFLINE",
    "DS_ACCELERATOR",
    "TORCH_EXTENSIONS_DIR",
    "SELFEXPLAIN_CACHE",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS",
    "OMP_NUM_THREADS",
    "HF_HUB_DISABLE_PROGRESS_BARS",
)

# Ray Train settings for a local cluster, each unless the user set it (the driver passes them to
# Ray Train's controller); a cluster joined by address keeps Ray's defaults.
LOCAL_TRAIN_ENV = {
    # The controller polls its workers every 2 s by default, and a finished run takes two polls
    # to reach shutdown: 3.2 s of the tiny run's 22 s train stage went to waiting for them; at
    # 0.5 s it is 0.6 s. The polls cost the controller about 0.1% of a 2-core machine more during
    # training, with no change in tokens/s (measured on 2 cores). A large cluster's
    # controller polls every worker each time, so only here.
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
    # One machine has no node for the cloud to drain: the watcher would be one more process
    # waking 100 times a second beside the training threads, and its start prints Ray's
    # constructor-arguments notice (ray-project/ray#53727) on the console.
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
}


# Whether this process started the cluster it is connected to (a local cluster, which ends with
# this process), as opposed to one joined by address.
_started_here = False


def started_local_cluster() -> bool:
    """True while this process is connected to a local cluster that it started itself."""
    return _started_here and ray.is_initialized()


def worker_env() -> dict[str, str]:
    env = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.update({key: value for key, value in os.environ.items() if key in FORWARDED_ENV})
    # DS_ACCELERATOR is left unset unless given: DeepSpeed then detects each worker's own
    # hardware, which on a cluster differs from the driver's (a CPU head, GPU workers).
    return env


@contextmanager
def ray_session(config: RayConfig) -> Iterator[None]:
    """Use the running Ray session if there is one; else connect to ``config.address`` (or
    ``RAY_ADDRESS``, which ``ray job submit`` sets) or start a local cluster with
    ``config.num_cpus`` logical CPUs (and Ray's dashboard only with ``config.dashboard``), and
    shut it down afterwards.

    A cluster job keeps the runtime_env it was submitted with (working_dir, env vars); a local
    cluster inherits this process's environment and listens on loopback only.
    """
    global _started_here
    if ray.is_initialized():
        yield
        return
    address = config.address or os.environ.get("RAY_ADDRESS") or None
    if address:
        with keep_handlers():  # ray.init's SIGTERM handler would exit with status 15
            ray.init(address=address, log_to_driver=True)
    else:
        _quiet_ray_data()
        _quiet_token_auth_notice()
        ours = {key: value for key, value in LOCAL_TRAIN_ENV.items() if key not in os.environ}
        os.environ.update(ours)
        # address="local": never attach to a cluster some `ray start` left on this machine.
        with internals.loopback_only(), keep_handlers():
            ray.init(
                address="local",
                num_cpus=config.num_cpus,
                include_dashboard=config.dashboard,
                **({"dashboard_host": "127.0.0.1"} if config.dashboard else {}),
                log_to_driver=True,
                runtime_env={
                    "env_vars": worker_env(),
                    "worker_process_setup_hook": f"{__name__}.{set_up_worker_process.__name__}",
                },
                configure_logging=False,
            )
        _started_here = True
        restrict_token_file()
        node = internals.local_node()
        log.info(
            "local Ray cluster started; its logs: %s",
            node.get_logs_dir_path() if node else "(unknown)",
        )
        previous_address = _publish_address(node.gcs_address) if node else None
    try:
        yield
    finally:
        ray.shutdown()
        _started_here = False
        if not address:
            for key in ours:  # a cluster joined later from this process keeps Ray's defaults
                os.environ.pop(key, None)
            if node:
                _restore_address(previous_address)


def set_up_worker_process() -> None:
    """Run in each worker process of a local cluster as it starts."""
    pin_to_own_cluster()


def pin_to_own_cluster() -> None:
    """Run in each worker process as it starts: Ray's own tools inside the cluster (Ray Data's
    hanging-task detector asks the state API with no address, as Ray Train's placement-group
    cleaner did before a local cluster left it out) find *this* cluster. The state API answers
    only with the dashboard (``ray.dashboard=true``); without it the detector goes on without
    the task's details.

    Without an address they read the machine-wide "current cluster" file, and with two local
    sessions running (a study beside a test run) they found both clusters, printed "Found
    multiple active Ray instances" every few seconds, and connected to the newest, which for the
    older session is the wrong one. RAY_ADDRESS comes first in that search."""
    os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address


def _publish_address(gcs_address: str) -> str | None:
    """Write this session's address where Ray's tools look for "the current cluster", as a
    ``ray start`` head does; return what was there.

    The driver's state API calls (and a user's ``ray list actors``) find the cluster through
    that file; on the loopback path Ray never writes it, so they read whatever an earlier ``ray
    start`` left (a dead head's address) and timed out. The previous content is put back at
    shutdown. Worker processes do not depend on it (:func:`pin_to_own_cluster`)."""
    path = internals.ray_address_file()
    previous = path.read_text() if path.is_file() else None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(gcs_address)
    return previous


def _restore_address(previous: str | None) -> None:
    path = internals.ray_address_file()
    if previous is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(previous)


def _quiet_ray_data() -> None:
    """Ray Data's INFO lines go to the session's log folder only, not to the console (its
    progress bars and warnings stay); the local cluster's workers inherit the setting."""

    config = resources.files("selfexplain") / "configs" / "ray_data_logging.yaml"
    os.environ.setdefault("RAY_DATA_LOGGING_CONFIG", str(config))
    internals.configure_ray_data_logging()


class _DefaultTokenAuthNotice(logging.Filter):
    """Drops Ray's "Token authentication is enabled for this Ray cluster..." line, printed at
    every start of a local cluster: it is what selfexplain wants (and documents in the README),
    and its one suggestion, turning authentication off, is not one to make on the console."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(
            "Token authentication is enabled for this Ray cluster"
        )


def _quiet_token_auth_notice() -> None:
    # Setting RAY_AUTH_MODE=token ourselves would also silence it, but Ray caches the mode when it
    # is imported: the driver then connects without a token and the GCS refuses it.
    internals.silence_token_auth_notice(_DefaultTokenAuthNotice())


def token_file() -> Path:
    """Where Ray keeps its auth token (token auth is on by default)."""
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")


def restrict_token_file() -> None:
    """Ray writes its auth token readable by every user: make it the owner's only. Anyone holding
    the token can submit jobs to the cluster, that is, run code there."""
    if token_file().is_file():
        token_file().chmod(0o600)
