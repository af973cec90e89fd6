"""Security defaults: no model-folder code runs unless asked; no secrets in saved outputs."""

import json
import shutil

import pytest

from selfexplain.jobs.ray_session import worker_env
from selfexplain.models import load_model, resolve_model_dir


def test_model_folder_code_does_not_run_by_default(tmp_path):
    folder = tmp_path / "custom"
    shutil.copytree(resolve_model_dir("tiny-llama"), folder)
    marker = tmp_path / "code-ran"
    (folder / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('x')\n"
        "from transformers import LlamaConfig\n\nclass EvilConfig(LlamaConfig):\n    model_type = 'evilllama'\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "evilllama"  # a type transformers does not know: only the folder's code could load it
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="trust_remote_code"):
        load_model(str(folder))
    assert not marker.exists()


def test_credentials_reach_workers_but_not_saved_configs(monkeypatch, tiny_config):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    assert worker_env()["AWS_SECRET_ACCESS_KEY"] == "s3cr3t-value"
    config = tiny_config()
    assert "s3cr3t-value" not in json.dumps(config.to_dict())
