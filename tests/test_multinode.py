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

# several Ray nodes (a second raylet, the autoscaler): the long end-to-end tier (make test-slow)
pytestmark = pytest.mark.slow

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
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True
    )
    return (
        ""
        if probe.returncode == 0
        else f"unshare --mount fails here: {probe.stderr.decode().strip()}"
    )


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
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
        "SELFEXPLAIN_CACHE": str(hidden / "cache"),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    env.pop("RAY_ADDRESS", None)
    address = f"{get_node_ip_address()}:{port}"
    head = subprocess.Popen(
        [
            RAY,
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=0",
            "--include-dashboard=false",
            "--disable-usage-stats",
            "--block",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # --block keeps the node's processes tied to this one; `ray stop` would stop every cluster here.
    worker_start = (
        f"mount -t tmpfs tmpfs {hidden} && exec {RAY} start --address={address} --num-cpus=4 "
        "--disable-usage-stats --block"
    )
    worker = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", worker_start],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    driver = {**env, "RAY_ADDRESS": address}
    try:
        count = "import ray; ray.init(); print(sum(n['Alive'] for n in ray.nodes()))"
        deadline = time.time() + 180
        while True:
            assert head.poll() is None and worker.poll() is None, "a Ray node exited while starting"
            done = subprocess.run(
                [sys.executable, "-c", count],
                env=driver,
                capture_output=True,
                text=True,
                timeout=120,
            )
            if done.stdout.strip().endswith("2"):
                break
            assert time.time() < deadline, (
                "the two nodes did not join in 180 s: " + done.stderr[-2000:]
            )
            time.sleep(2)
        yield driver, hidden
    finally:
        for node in (worker, head):
            node.terminate()
        for node in (worker, head):
            node.wait(timeout=120)


def _selfexplain(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "selfexplain", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_pipeline_runs_on_a_worker_node_that_cannot_see_the_drivers_files(two_nodes, s3_server):
    env, hidden = two_nodes
    # The worker node's view of the hidden folder is its own empty tmpfs:
    probe = (
        f"import ray, os; ray.init(); print(ray.get(ray.remote(num_cpus=1)"
        f"(lambda: os.listdir({str(hidden / 'cache')!r}) "
        f"if os.path.isdir({str(hidden / 'cache')!r}) "
        "else 'absent').remote()))"
    )
    view = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
    )
    assert view.stdout.strip().splitlines()[-1] == "absent", view.stderr[-2000:]

    # A local output_dir would be split over the nodes' disks: refused, naming the fix.
    refused = _selfexplain(env, "run", "tiny", f"output_dir={hidden / 'runs'}")
    assert refused.returncode == 2 and "storage.shared_filesystem=true" in refused.stderr, (
        refused.stderr[-2000:]
    )

    outputs = f"{s3_server}/multinode"
    done = _selfexplain(
        env,
        "run",
        "tiny",
        f"output_dir={outputs}",
        "name=two-nodes",
        "generate.max_items=8",
        "evaluate.max_examples=8",
        "evaluate.untrained_baseline=false",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert "trained explainer" in done.stdout

    from selfexplain.storage import Location

    run = Location(f"{outputs}/two-nodes")
    assert (run / "corpus" / "manifest.json").exists() and (
        run / "explainer" / "README.md"
    ).exists()
    assert (run / "results.json").read_json()["results"]["trained explainer"]["n"] == 8


def test_autoscaler_adds_a_node_for_a_generation_job_and_releases_it(tmp_path, s3_server):
    """Ray's fake multi-node provider (``fake_multinode``, the head started with
    ``RAY_FAKE_CLUSTER=1``) runs the real autoscaler, launching simulated worker nodes as local
    processes. The head offers no CPU, so the generation job's actors can only run on a node the
    autoscaler adds; once idle past ``idle_timeout_minutes`` the node is released."""
    import json

    import yaml
    from ray._private.services import get_node_ip_address

    port = _free_port()
    address = f"{get_node_ip_address()}:{port}"
    config = {
        "cluster_name": "selfexplain-autoscaling-test",
        "max_workers": 1,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 0.1,
        "provider": {
            "type": "fake_multinode",
            "gcs_address": address,
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            "capture_cpu": {
                "resources": {"CPU": 4, "object_store_memory": 300_000_000},
                "node_config": {},
                "min_workers": 0,
                "max_workers": 1,
            },
        },
        "head_node_type": "ray.head.default",
        "auth": {},
        "docker": {},
        **{
            key: []
            for key in (
                "initialization_commands",
                "setup_commands",
                "head_setup_commands",
                "worker_setup_commands",
                "head_start_ray_commands",
                "worker_start_ray_commands",
                "cluster_synced_files",
                "rsync_exclude",
                "rsync_filter",
            )
        },
        "file_mounts": {},
        "file_mounts_sync_continuously": False,
    }
    config_file = tmp_path / "autoscaling.yaml"
    config_file.write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "RAY_FAKE_CLUSTER": "1",
        "AUTOSCALER_UPDATE_INTERVAL_S": "1",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(
        [
            RAY,
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=0",
            "--include-dashboard=false",
            f"--autoscaling-config={config_file}",
            "--disable-usage-stats",
            "--block",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    driver = {**env, "RAY_ADDRESS": address}
    nodes = (
        "import json, ray; ray.init(log_to_driver=False); "
        "print('NODES', json.dumps([[n['Alive'], n['Resources'].get('CPU', 0)] for n in "
        "ray.nodes()]))"
    )

    def node_list() -> list[list]:
        done = subprocess.run(
            [sys.executable, "-c", nodes], env=driver, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(
            next(line for line in done.stdout.splitlines() if line.startswith("NODES "))[6:]
        )

    try:
        deadline = time.time() + 120
        while True:
            assert head.poll() is None, "the head exited while starting"
            try:
                before = node_list()
                break
            except AssertionError:
                assert time.time() < deadline, "the head did not come up in 120 s"
                time.sleep(2)
        assert before == [[True, 0]]  # only the head, which offers no CPU

        job = _selfexplain(
            driver,
            "generate",
            "tiny",
            "task=ablation",
            f"output_dir={s3_server}/autoscaling",
            "name=scaled",
            "generate.max_items=8",
            "generate.num_actors=1",
        )
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-5000:]
        during = node_list()
        assert [True, 4] in during or [
            False,
            4,
        ] in during  # the node the autoscaler added for the actors

        deadline = time.time() + 180
        while [alive for alive, cpus in node_list() if cpus == 4 and alive]:
            assert time.time() < deadline, "the idle worker node was not released in 180 s"
            time.sleep(3)
    finally:
        head.terminate()
        head.wait(timeout=120)
