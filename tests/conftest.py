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
def s3_server():
    """A real S3-compatible server (moto in server mode) on loopback, with a bucket ``selfexplain``.

    Started before the Ray cluster, whose processes inherit its endpoint and credentials from the
    environment, as real cloud credentials would reach them (never through the runtime_env).
    """
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    import boto3

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # A unique secret: the security test looks for it in Ray's session files and command lines.
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY=f"selfexplain-secret-{os.urandom(8).hex()}",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
    )
    client = boto3.client("s3")
    for _ in range(100):
        try:
            client.create_bucket(Bucket="selfexplain")
            break
        except Exception:
            time.sleep(0.1)
    try:
        yield "s3://selfexplain"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="session")
def ray_cluster(s3_server):
    """A real local Ray cluster (4 logical CPUs on 2 cores, as the pipeline uses), shared by tests;
    with the dashboard, which the pipeline leaves out, as tests ask the state API what ran."""
    from selfexplain.config import RayConfig
    from selfexplain.jobs.ray_session import ray_session

    with ray_session(RayConfig(num_cpus=4, dashboard=True)):
        yield


@pytest.fixture
def tiny_config(tmp_path):
    """The packaged tiny config, writing under a fresh temporary folder."""
    from selfexplain.config import load_config

    def make(*overrides: str):
        return load_config("tiny", [f"output_dir={tmp_path / 'runs'}", *overrides])

    return make
