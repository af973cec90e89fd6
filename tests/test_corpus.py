"""Corpus files: explicit schema, atomic shards, splits by prompt."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from selfexplain.corpus.io import write_shard
from selfexplain.corpus.prompts import PromptFileError, load_prompts
from selfexplain.corpus.splits import split_for
from selfexplain.storage import Location
from selfexplain.tasks.ablation import ABLATION_SCHEMA


def test_failed_shard_write_leaves_nothing(tmp_path):
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError, KeyError, TypeError)):
        write_shard(
            [{"record_id": "x", "token_index": "not a number"}],
            ABLATION_SCHEMA,
            Location(tmp_path / "shard.parquet"),
        )
    assert list(tmp_path.iterdir()) == []


def test_split_is_stable_and_near_the_fraction():
    ids = [f"prompt-{i}" for i in range(2000)]
    splits = [split_for(i, 0.2, seed=0) for i in ids]
    assert splits == [split_for(i, 0.2, seed=0) for i in ids]
    assert 0.17 < splits.count("test") / len(ids) < 0.23
    assert splits != [split_for(i, 0.2, seed=1) for i in ids]


def test_prompt_files(tmp_path):
    text = tmp_path / "p.txt"
    text.write_text("one two\n\none two\nthree four\n")
    assert load_prompts(str(text)) == ["one two", "three four"]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "a b"}\n{"prompt": "c d"}\n')
    assert load_prompts(str(jsonl), max_prompts=1) == ["a b"]
    jsonl.write_text('{"text": "a b"}\n')
    with pytest.raises(PromptFileError, match="p.jsonl:1"):
        load_prompts(str(jsonl))
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(PromptFileError, match="no prompts"):
        load_prompts(str(tmp_path / "empty.txt"))
    assert len(load_prompts("builtin")) >= 150


def test_schema_has_no_inferred_types(tmp_path):
    path = tmp_path / "s.parquet"
    write_shard([], ABLATION_SCHEMA, Location(path))
    assert pq.read_schema(path).remove_metadata().equals(ABLATION_SCHEMA.remove_metadata())


def test_a_failed_stage_withdraws_its_plan_only_while_nothing_was_written_under_it(tmp_path):
    """A run that failed before writing anything does not lock its name; one that wrote a shard
    keeps its plan, and a rerun with other settings is refused."""
    from selfexplain.config import ConfigError
    from selfexplain.corpus.io import claim_plan, withdrawn_on_failure
    from selfexplain.storage import Location

    first, second = Location(str(tmp_path / "first")), Location(str(tmp_path / "second"))
    with pytest.raises(RuntimeError), withdrawn_on_failure():
        claim_plan(first, {"fingerprint": "wrong"})
        raise RuntimeError("the stage failed before its first shard")
    claim_plan(first, {"fingerprint": "corrected"})  # not refused
    with pytest.raises(RuntimeError), withdrawn_on_failure():
        claim_plan(second, {"fingerprint": "wrong"})
        (tmp_path / "second" / "shard-00000.parquet").write_bytes(b"a shard")
        raise RuntimeError("the stage failed after a shard")
    with pytest.raises(ConfigError, match="made with other settings"):
        claim_plan(second, {"fingerprint": "corrected"})
    plan = json.loads((tmp_path / "first" / "plan.json").read_text())
    assert plan == {"fingerprint": "corrected"}


def test_a_damaged_gguf_leaves_nothing_in_the_model_cache(tmp_path, monkeypatch):
    from selfexplain.models.loading import ModelNotFoundError, resolve_model_dir

    cache = tmp_path / "cache"
    monkeypatch.setenv("SELFEXPLAIN_CACHE", str(cache))
    garbage = tmp_path / "model.gguf"
    garbage.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(ModelNotFoundError, match="damaged or truncated"):
        resolve_model_dir(str(garbage))
    assert not cache.exists() or not any(cache.rglob("*"))
