"""Every model reference a cluster user has, resolved on the node that loads it: a hub id through
the node's Hugging Face cache (offline here, so a pre-populated one), and a model folder in
object storage, copied once per node."""

import shutil

from selfexplain.models.loading import load_model, resolve_model_dir
from selfexplain.storage import DOWNLOAD_COMPLETE, Location


def test_hub_id_resolves_through_a_prepopulated_hf_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--acme--tiny-llama"
    shutil.copytree(resolve_model_dir("tiny-llama"), repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    assert resolve_model_dir("acme/tiny-llama") == repo / "snapshots" / revision
    model, _ = load_model("acme/tiny-llama")
    assert model.config.num_hidden_layers == 4


def test_s3_model_folder_is_copied_once_per_node(tmp_path, monkeypatch, s3_server):
    monkeypatch.setenv("SELFEXPLAIN_CACHE", str(tmp_path / "cache"))
    remote = Location(f"{s3_server}/models/tiny")
    source = resolve_model_dir("tiny-llama")
    remote.upload_dir(source, marker="config.json")
    local = resolve_model_dir(f"{s3_server}/models/tiny")
    assert (local / DOWNLOAD_COMPLETE).is_file() and local.is_relative_to(tmp_path / "cache")
    stamp = (local / "model.safetensors").stat().st_mtime_ns
    assert resolve_model_dir(f"{s3_server}/models/tiny") == local  # the second load copies nothing
    assert (local / "model.safetensors").stat().st_mtime_ns == stamp
    model, _ = load_model(f"{s3_server}/models/tiny")
    assert model.config.num_hidden_layers == 4
