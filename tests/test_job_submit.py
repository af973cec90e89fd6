"""`ray job submit` against a real head started with `ray start --head`: token auth on, dashboard
on loopback; generate and train submitted with `make submit`, and a resubmission resumes."""

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

# a started Ray head and `ray job submit` jobs: the long end-to-end tier (make test-slow)
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def ray_head(tmp_path):
    """A head node on loopback with token auth; yields the environment a client needs."""
    dashboard = _free_port()
    # The head's PATH decides which `python` runs a job's entrypoint: this environment's.
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    env.pop("RAY_ADDRESS", None)  # `ray start` must not read it as a cluster to join
    start = [
        RAY,
        "start",
        "--head",
        f"--port={_free_port()}",
        "--num-cpus=4",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        f"--dashboard-agent-listen-port={_free_port()}",
        "--disable-usage-stats",
        "--block",
    ]
    # --block ties the head's processes to this one: terminating it stops exactly this head.
    # (`ray stop` would kill every Ray process on the machine, the test session's own cluster too.)
    head = subprocess.Popen(start, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = {**env, "RAY_ADDRESS": f"http://127.0.0.1:{dashboard}"}
    try:
        deadline = time.time() + 180
        while (
            subprocess.run(
                [RAY, "job", "list"], env=client, capture_output=True, timeout=60
            ).returncode
            != 0
        ):
            assert head.poll() is None, "ray start --head exited"
            assert time.time() < deadline, "the head's dashboard did not come up in 180 s"
            time.sleep(2)
        yield client
    finally:
        head.terminate()
        head.wait(timeout=120)


def _submit(env, job: str, args: str) -> str:
    submission = f"test-{job}-{secrets.token_hex(4)}"
    done = subprocess.run(
        [
            "make",
            "-s",
            "submit",
            f"JOB={job}",
            "CONFIG=tiny",
            f"ARGS={args}",
            f"SUBMISSION_ID={submission}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    status = subprocess.run(
        [RAY, "job", "status", submission], env=env, capture_output=True, text=True, timeout=60
    )
    assert "succeeded" in status.stdout.lower(), (
        done.stdout[-3000:] + done.stderr[-3000:] + status.stdout
    )
    return subprocess.run(
        [RAY, "job", "logs", submission], env=env, capture_output=True, text=True, timeout=60
    ).stdout


def test_submit_generate_and_train_then_resubmit_resumes(ray_head, tmp_path):
    args = f"output_dir={tmp_path / 'runs'} name=job generate.max_items=8 evaluate.max_examples=8"
    logs = _submit(ray_head, "generate", args)
    assert "2 shards, 2 to do" in logs
    manifest = json.loads((tmp_path / "runs" / "job" / "corpus" / "manifest.json").read_text())
    assert manifest["rows"] > 0 and manifest["target"] == "tiny-llama"

    logs = _submit(ray_head, "train", args)
    assert "explainer exported to" in logs
    assert (tmp_path / "runs" / "job" / "explainer" / "model.safetensors").is_file()

    # Same run name again: nothing is redone.
    assert "2 shards, 0 to do" in _submit(ray_head, "generate", args)
    assert "already trained" in _submit(ray_head, "train", args)


def test_submit_without_the_token_is_refused(ray_head):
    env = {**ray_head, "RAY_AUTH_TOKEN": "wrong-token"}
    listing = subprocess.run(
        [RAY, "job", "list"], env=env, capture_output=True, text=True, timeout=60
    )
    assert listing.returncode != 0
