"""Every use of a private Ray or DeepSpeed API, in one place.

Each reaches past a public API and can break on an upgrade; each says why it is kept and was
checked against Ray 2.60.0 and DeepSpeed 0.19.8. The ones that only tune a small machine stay
because they were measured to gain more than 5% (docs/development.md lists them all). Imports
are inside the functions: the command line imports this module without starting Ray.
"""

from __future__ import annotations

import datetime
import functools
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# The logger of Ray's "Token authentication is enabled..." notice (console).
TOKEN_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


@contextmanager
def loopback_only() -> Iterator[None]:
    """Security: a local session's GCS, raylet and workers listen on 127.0.0.1 only.

    On Linux Ray gives a node the machine's network address, even when asked for 127.0.0.1, and
    its servers listen there: anyone on the network could reach them. On macOS and Windows it
    uses loopback; ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (read once, at import, into the
    private ``ray_constants``) takes that path here too. A local session has no other node.
    """
    # deferred: the command line imports this module before any Ray session
    from ray._private import ray_constants

    saved = (
        ray_constants.ENABLE_RAY_CLUSTER,
        os.environ.get(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR),
    )
    ray_constants.ENABLE_RAY_CLUSTER = False
    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"  # for the processes it starts
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved[0]
        if saved[1] is None:
            os.environ.pop(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR, None)
        else:
            os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = saved[1]


def local_node():
    """Console: this process's Ray node (its session's log folder and GCS address); Ray has no
    public accessor for the session folder. None when not connected."""
    # deferred: the command line imports this module before any Ray session
    import ray

    return ray._private.worker._global_node


def ray_address_file() -> Path:
    """Correctness: the file where Ray's tools (the state API, ``ray list actors``) look for the
    current cluster; a local session writes its own address there, not a dead head's."""
    # deferred: the command line imports this module before any Ray session
    from ray._private.utils import get_ray_address_file

    return Path(get_ray_address_file(None))


def configure_ray_data_logging() -> None:
    """Console: re-read ``RAY_DATA_LOGGING_CONFIG`` (Ray Data configured its logging at import,
    before selfexplain set the variable)."""
    # deferred: the command line imports this module before any Ray session
    from ray.data._internal.logging import configure_logging

    configure_logging()


def ray_train_report_logger() -> str | None:
    """Console: Ray Train v2 logs each report under a logger named after its file; None where
    that module is gone."""
    try:
        from ray.train.v2._internal.execution import context
    except ImportError:
        return None
    return context.__file__


@functools.cache
def local_cluster_trainer() -> type:
    """Speed (measured): a TorchTrainer for a local cluster that this process started, less two
    actors that would do nothing there but wake beside the training threads. Together with the
    dashboard left off, +8% tokens/s for one-worker training on 2 cores.

    - The placement-group cleaner asks the state API every second whether the run's controller
      is alive, so that a long-lived cluster gets the run's placement group back if the driver
      dies. A local cluster ends with its driver, so there it frees nothing.
    - The dataset manager hands out Ray Data shards; selfexplain passes its examples through the
      object store instead, so there are none to hand out.
    """
    # deferred: the command line imports this module before any Ray session
    from ray.train.torch import TorchTrainer

    class LocalClusterTrainer(TorchTrainer):
        def _create_default_callbacks(self):  # Ray Train v2's private hook; v1 never calls it
            unused = {"PlacementGroupCleanerCallback"}
            if not self.datasets:
                unused.add("DatasetsCallback")
            callbacks = super()._create_default_callbacks()
            return [callback for callback in callbacks if type(callback).__name__ not in unused]

    return LocalClusterTrainer


def skip_single_rank_allreduce(engine) -> None:
    """Speed (measured): on one rank, averaging gradients over ranks is the identity, yet
    DeepSpeed's ZeRO-0 engine still copies every gradient into flat buckets, all-reduces them
    over gloo and copies them back, each step: 0.5 s of a 6 s step on SmolLM2, 2 cores (8%).
    ZeRO-1+ reduces inside its optimizer, so only stage 0 on one rank may call this."""
    engine.enable_backward_allreduce = False


def replace_checkpoint_engine(engine, engine_class: type) -> None:
    """Security: DeepSpeed's checkpoint engine is a plain attribute, built from the engine's
    private config; swapping it is how a checkpoint loads without unpickling arbitrary objects
    (:mod:`selfexplain.train.safe_checkpoint`)."""
    engine.checkpoint_engine = engine_class(getattr(engine, "_config", None))


def silence_token_auth_notice(log_filter: logging.Filter) -> None:
    """Console: Ray's start-up notice suggests turning authentication off; it stays off the
    console (``log_filter`` drops it)."""
    logger = logging.getLogger(TOKEN_AUTH_LOGGER)
    if not any(type(existing) is type(log_filter) for existing in logger.filters):
        logger.addFilter(log_filter)


def bound_rendezvous_torch_config():
    """Security: a ``TorchConfig`` whose rendezvous store listens on the rank-0 worker's node
    address only (127.0.0.1 in a local cluster, the node's private address on a cluster).

    torch.distributed's TCPStore listens on every interface and has no authentication; Ray
    Train's ``env://`` set-up (``_TorchBackend.on_start``) creates it that way, so for the minutes
    a training run lasts anyone on the network could reach it. Here rank 0 binds the socket
    itself and hands it to the store (``master_listen_fd``); the other ranks connect as before.
    In a local cluster gloo's own pair sockets are pinned to loopback too (``GLOO_SOCKET_IFNAME``).
    Everything else is Ray Train's ``_TorchBackend``.
    """
    # deferred: the command line imports this module before any Ray session
    import ray
    from ray.train._internal.utils import get_address_and_port
    from ray.train.torch.config import TorchConfig, _TorchBackend

    class BoundRendezvousBackend(_TorchBackend):
        def on_start(self, worker_group, backend_config):
            backend = backend_config.backend or "gloo"
            address, port = worker_group.execute_single(0, get_address_and_port)
            worker_group.execute(_set_rank_environment, address=address, port=port)
            futures = [
                worker_group.execute_single_async(
                    rank,
                    _join_process_group,
                    backend=backend,
                    world_rank=rank,
                    world_size=len(worker_group),
                    address=address,
                    port=port,
                    timeout_s=backend_config.timeout_s,
                )
                for rank in range(len(worker_group))
            ]
            ray.get(futures)

    class BoundRendezvousConfig(TorchConfig):
        @property
        def backend_cls(self):
            return BoundRendezvousBackend

    return BoundRendezvousConfig()


def _set_rank_environment(address: str, port: int) -> None:
    """What Ray Train's ``env://`` set-up leaves in each worker's environment (``MASTER_*``,
    ``LOCAL_RANK``...), which DeepSpeed reads."""
    # deferred: runs in a training worker
    from ray.train.torch.config import _set_torch_distributed_env_vars

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = address, str(port)
    if address.startswith("127."):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    _set_torch_distributed_env_vars()


def _join_process_group(
    backend: str, world_rank: int, world_size: int, address: str, port: int, timeout_s: int
) -> None:
    """Rank 0 listens on ``address`` only, on a socket it bound itself; the others connect."""
    import torch.distributed as dist  # deferred: runs in a training worker

    timeout = datetime.timedelta(seconds=timeout_s)
    if backend == "nccl":  # as Ray Train does: a hung collective fails instead of waiting
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    if world_rank == 0:
        listener = socket.create_server((address, port), backlog=128)
        store = dist.TCPStore(
            address, port, world_size, True, timeout, master_listen_fd=listener.detach()
        )
    else:
        store = dist.TCPStore(address, port, world_size, False, timeout)
    dist.init_process_group(
        backend=backend, store=store, rank=world_rank, world_size=world_size, timeout=timeout
    )
