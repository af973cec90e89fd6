"""Data safety: caches keyed by content, downloads that are whole or absent."""

import os

import pytest

from selfexplain.models.loading import _file_key
from selfexplain.storage import DOWNLOAD_COMPLETE, Location


def test_gguf_cache_key_follows_the_content_not_the_name_and_size(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFEXPLAIN_CACHE", str(tmp_path / "cache"))
    first, second = tmp_path / "a" / "model.gguf", tmp_path / "b" / "model.gguf"
    for path, byte in ((first, b"\x01"), (second, b"\x02")):
        path.parent.mkdir()
        path.write_bytes(b"GGUF" + byte * 1000)
    assert _file_key(first) != _file_key(second)  # same name, same size, other weights
    key = _file_key(first)
    assert _file_key(first) == key  # memoised: the same file keeps its key
    first.write_bytes(b"GGUF" + b"\x03" * 1000)
    os.utime(first, ns=(1, 1))  # a rewrite changes the mtime, so the memo is not used
    assert _file_key(first) != key


def test_download_is_marked_complete_and_replaces_a_partial_copy(tmp_path, s3_server):
    remote = Location(f"{s3_server}/safety/model")
    (remote / "config.json").write_text("{}")
    (remote / "weights.bin").write_bytes(b"w" * 100)
    local = tmp_path / "downloads" / "model"
    local.mkdir(parents=True)
    (local / "stale.bin").write_bytes(b"left by a copy cut short")
    assert remote.download_dir(local) == local
    assert sorted(p.name for p in local.iterdir()) == sorted(
        [DOWNLOAD_COMPLETE, "config.json", "weights.bin"]
    )
    assert [p.name for p in local.parent.iterdir()] == ["model"]  # no staging folder left


def test_same_name_claims_are_atomic_locally_and_on_s3(tmp_path, s3_server):
    """Of several runs claiming one folder at once with different settings, exactly one wins:
    local (hard link, 8 processes released together) and S3 (conditional put)."""
    import multiprocessing

    from selfexplain.config import ConfigError
    from selfexplain.corpus.io import claim_plan

    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(8)
    outcomes = context.Queue()

    def claim(number: int) -> None:
        barrier.wait()  # every process reaches the claim together: a check-then-write race
        try:
            claim_plan(Location(tmp_path / "corpus"), {"seed": number})
            outcomes.put("won")
        except ConfigError:
            outcomes.put("refused")

    processes = [context.Process(target=claim, args=(n,)) for n in range(8)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    results = sorted(outcomes.get(timeout=10) for _ in processes)
    assert results == ["refused"] * 7 + ["won"]
    assert not [
        p for p in (tmp_path / "corpus").iterdir() if p.name != "plan.json"
    ]  # no temporary left

    folder = Location(f"{s3_server}/claims/run")
    claim_plan(folder, {"seed": 1})
    claim_plan(folder, {"seed": 1})  # the same settings: a rerun resumes
    with pytest.raises(ConfigError, match="made with other settings"):
        claim_plan(folder, {"seed": 2})
    assert (folder / "plan.json").read_json() == {"seed": 1}
