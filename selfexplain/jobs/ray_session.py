"""Start (or join) the Ray cluster a pipeline stage runs on."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import ray

from selfexplain.config import RayConfig

log = logging.getLogger(__name__)

# Env vars reach Ray workers only through the runtime_env, so the ones that change behaviour
# (offline hub, DeepSpeed's accelerator, caches) and storage credentials are forwarded
# explicitly. They live only in the runtime_env: configs and manifests never record them.
FORWARDED_ENV = ("HF_HUB_OFFLINE", "DS_ACCELERATOR", "TORCH_EXTENSIONS_DIR", "SELFEXPLAIN_CACHE",
                 "TRANSFORMERS_NO_ADVISORY_WARNINGS", "OMP_NUM_THREADS")
FORWARDED_PREFIXES = ("AWS_", "GOOGLE_", "GCS_", "AZURE_")


def worker_env() -> dict[str, str]:
    env = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.update({key: value for key, value in os.environ.items()
                if key in FORWARDED_ENV or key.startswith(FORWARDED_PREFIXES)})
    # DS_ACCELERATOR is left unset unless given: DeepSpeed then detects each worker's own
    # hardware, which on a cluster differs from the driver's (a CPU head, GPU workers).
    return env


@contextmanager
def ray_session(config: RayConfig) -> Iterator[None]:
    """Use the running Ray session if there is one; else connect to ``config.address`` (or
    ``RAY_ADDRESS``, which ``ray job submit`` sets) or start a local cluster with
    ``config.num_cpus`` logical CPUs, and shut it down afterwards.

    A cluster job keeps the runtime_env it was submitted with (working_dir, env vars); a local
    cluster gets the forwarded environment, and its dashboard listens on loopback only.
    """
    if ray.is_initialized():
        yield
        return
    address = config.address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        # address="local": never attach to a cluster some `ray start` left on this machine.
        ray.init(address="local", num_cpus=config.num_cpus, include_dashboard=True, dashboard_host="127.0.0.1",
                 runtime_env={"env_vars": worker_env()}, log_to_driver=True, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()
