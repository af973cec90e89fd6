"""Every use of a private Ray or DeepSpeed API, in one place.

Each reaches past a public API and can break on an upgrade; each says why it is kept and was
checked against Ray 2.60.0 and DeepSpeed 0.19.8. The ones that only tune a small machine stay
because they were measured to gain more than 5% (docs/development.md lists them all). Imports
are inside the functions: the command line imports this module without starting Ray.
"""

from __future__ import annotations

import functools
import logging
import os
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
