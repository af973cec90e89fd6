"""A real two-node Ray cluster on this machine: the head runs no work, and the worker node lives in
its own mount namespace where the driver's model cache and run folder do not exist.

The second node is started under ``unshare --mount`` with a private tmpfs over the folder that
holds the driver's ``SELFEXPLAIN_CACHE``: a model path resolved on the driver (the old way of
handing models to actors and train workers) is not there, so only model *references* resolved
on the node can work. Storage is the local S3-compatible server, reachable from both nodes.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

RAY = str(Path(sys.executable).parent / "ray")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _can_unshare() -> str:
    if os.geteuid() != 0:
        return "needs root for unshare --mount"
    if shutil.which("unshare") is None:
        return "unshare is not installed"
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True)
    return "" if probe.returncode == 0 else f"unshare --mount fails here: {probe.stderr.decode().strip()}"


@pytest.fixture
def two_nodes(tmp_path, s3_server):
    """(environment for a driver, the hidden folder): a head with 0 CPUs, and a 4-CPU worker node
    that sees an empty tmpfs where the head sees ``hidden``."""
    from ray._private.services import get_node_ip_address

    why = _can_unshare()
    if why:
        pytest.skip(why)
    hidden = tmp_path / "head-only"
    (hidden / "cache").mkdir(parents=True)
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "SELFEXPLAIN_CACHE": str(hidden / "cache"), "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    address = f"{get_node_ip_address()}:{port}"
    head = subprocess.Popen([RAY, "start", "--head", f"--port={port}", "--num-cpus=0", "--include-dashboard=false",
                             "--disable-usage-stats", "--block"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # --block keeps the node's processes tied to this one; `ray stop` would stop every cluster here.
    worker_start = (f"mount -t tmpfs tmpfs {hidden} && exec {RAY} start --address={address} --num-cpus=4 "
                    "--disable-usage-stats --block")
    worker = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", worker_start],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    driver = {**env, "RAY_ADDRESS": address}
    try:
        count = "import ray; ray.init(); print(sum(n['Alive'] for n in ray.nodes()))"
        deadline = time.time() + 180
        while True:
            assert head.poll() is None and worker.poll() is None, "a Ray node exited while starting"
            done = subprocess.run([sys.executable, "-c", count], env=driver, capture_output=True, text=True, timeout=120)
            if done.stdout.strip().endswith("2"):
                break
            assert time.time() < deadline, "the two nodes did not join in 180 s: " + done.stderr[-2000:]
            time.sleep(2)
        yield driver, hidden
    finally:
        for node in (worker, head):
            node.terminate()
        for node in (worker, head):
            node.wait(timeout=120)


def _selfexplain(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "selfexplain", *args], env=env, capture_output=True, text=True,
                          timeout=900)


def test_pipeline_runs_on_a_worker_node_that_cannot_see_the_drivers_files(two_nodes, s3_server):
    env, hidden = two_nodes
    # The worker node's view of the hidden folder is its own empty tmpfs:
    probe = (f"import ray, os; ray.init(); print(ray.get(ray.remote(num_cpus=1)"
             f"(lambda: os.listdir({str(hidden / 'cache')!r}) if os.path.isdir({str(hidden / 'cache')!r}) "
             "else 'absent').remote()))")
    view = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert view.stdout.strip().splitlines()[-1] == "absent", view.stderr[-2000:]

    # A local output_dir would be split over the nodes' disks: refused, naming the fix.
    refused = _selfexplain(env, "run", "tiny", f"output_dir={hidden / 'runs'}")
    assert refused.returncode == 2 and "storage.shared_filesystem=true" in refused.stderr, refused.stderr[-2000:]

    outputs = f"{s3_server}/multinode"
    done = _selfexplain(env, "run", "tiny", f"output_dir={outputs}", "name=two-nodes", "generate.max_items=8",
                        "evaluate.max_examples=8", "evaluate.untrained_baseline=false")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert "trained explainer" in done.stdout

    from selfexplain.storage import Location

    run = Location(f"{outputs}/two-nodes")
    assert (run / "corpus" / "manifest.json").exists() and (run / "explainer" / "README.md").exists()
    assert (run / "results.json").read_json()["results"]["trained explainer"]["n"] == 8
