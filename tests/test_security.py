"""Security defaults: no model-folder code runs unless asked; no secrets in saved outputs."""

import json
import shutil
from pathlib import Path

import pytest

from selfexplain.jobs.ray_session import token_file, worker_env
from selfexplain.models import load_model, resolve_model_dir


def test_model_folder_code_does_not_run_by_default(tmp_path):
    folder = tmp_path / "custom"
    shutil.copytree(resolve_model_dir("tiny-llama"), folder)
    marker = tmp_path / "code-ran"
    (folder / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('x')\n"
        "from transformers import LlamaConfig\n\nclass EvilConfig(LlamaConfig):\n    model_type = "
        "'evilllama'\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = (
        "evilllama"  # a type transformers does not know: only the folder's code could load it
    )
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="trust_remote_code"):
        load_model(str(folder))
    assert not marker.exists()


def test_credentials_stay_out_of_runtime_env_and_saved_configs(monkeypatch, tiny_config):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    assert "s3cr3t-value" not in json.dumps(worker_env())  # Ray logs a runtime_env in plain text
    config = tiny_config()
    assert "s3cr3t-value" not in json.dumps(config.to_dict())


def test_secret_reaches_ray_workers_but_no_session_file_or_command_line(ray_cluster, s3_server):
    """The shared cluster was started with the S3 server's secret in the environment (conftest):
    workers inherit it, and Ray wrote it nowhere."""
    import os
    from pathlib import Path

    import ray

    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    assert len(secret) >= 24  # a unique value: a match below could not be a coincidence
    read_env = ray.remote(lambda: os.environ.get("AWS_SECRET_ACCESS_KEY"))
    assert ray.get(read_env.remote()) == secret
    assert all(node["NodeManagerAddress"] == "127.0.0.1" for node in ray.nodes())  # loopback only
    assert not token_file().exists() or token_file().stat().st_mode & 0o077 == 0  # the owner's only
    session = Path(ray._private.worker.global_worker.node.get_session_dir_path())
    needle = secret.encode()
    leaking = [
        str(f)
        for f in session.rglob("*")
        if f.is_file() and not f.is_symlink() and needle in f.read_bytes()
    ]
    assert not leaking
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            assert needle not in cmdline.read_bytes(), (
                f"the secret is on the command line of {cmdline.parent.name}"
            )
        except OSError:  # the process ended while we looked
            pass


def test_checkpoint_loader_refuses_a_pickle_that_runs_code(tmp_path):
    import pickle

    import torch

    from selfexplain.train.safe_checkpoint import WeightsOnlyCheckpointEngine

    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))  # would create the marker file when unpickled

    path = tmp_path / "mp_rank_00_model_states.pt"
    torch.save({"module": Payload()}, path)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        WeightsOnlyCheckpointEngine(None).load(str(path))
    assert not marker.exists()


def test_the_local_session_is_the_current_cluster_for_rays_own_tools(ray_cluster):
    """The driver's state API finds the cluster through Ray's address file (a stale one, left by
    an earlier `ray start`, made it time out mid-run); worker processes, where Ray Train's
    placement-group cleaner runs, find their own cluster even when another session rewrote it."""
    import ray
    from ray._private.utils import get_ray_address_file, read_ray_address
    from ray.util.state import list_actors

    gcs_address = ray._private.worker.global_worker.node.gcs_address
    assert read_ray_address() == gcs_address
    assert isinstance(
        list_actors(timeout=10), list
    )  # the state API, asked with no address, answers

    @ray.remote(num_cpus=0)
    def state_api_in_a_worker():  # what the cleaner does, with no address
        try:
            return isinstance(list_actors(timeout=5), list)
        except Exception as error:  # a stale address times out
            return repr(error)

    # another local session started later rewrites the machine-wide file: workers keep their own
    address_file = Path(get_ray_address_file(None))
    address_file.write_text("127.0.0.1:1")
    try:
        assert ray.get(state_api_in_a_worker.remote()) is True
    finally:
        address_file.write_text(gcs_address)
