"""Shared fixtures: tiny offline models, and one real local Ray cluster for the whole session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def tiny_llama():
    from selfexplain.models import load_model

    return load_model("tiny-llama")


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster (4 logical CPUs on 2 cores, as the pipeline uses), shared by tests."""
    from selfexplain.config import RayConfig
    from selfexplain.jobs.ray_session import ray_session

    with ray_session(RayConfig(num_cpus=4)):
        yield


@pytest.fixture
def tiny_config(tmp_path):
    """The packaged tiny config, writing under a fresh temporary folder."""
    from selfexplain.config import load_config

    def make(*overrides: str):
        return load_config("tiny", [f"output_dir={tmp_path / 'runs'}", *overrides])

    return make
