"""Ground-truth jobs for every task on a real local Ray cluster: readable by any Parquet reader,
resumable after a kill, and exact when an actor crashes once."""

import json
import os
import sys

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
from ray import cloudpickle

from selfexplain.corpus.io import REJECTS, read_corpus, read_manifest, shard_name
from selfexplain.jobs.generate import GroundTruthWorker, generate
from selfexplain.models.loading import load_tokenizer, resolve_model_dir
from selfexplain.tasks.patching import templated_pairs

cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture
def pairs_file(tmp_path):
    """Templated pairs without answers: a random model knows no facts, the mechanics are what is
    tested."""
    tokenizer = load_tokenizer(resolve_model_dir("tiny-llama"))
    pairs = templated_pairs(tokenizer, seed=0)[:30]
    # must be rejected for its lengths (one entity name, so the split cannot reject it first)
    pairs.append(
        {
            "prompt": "the cat",
            "counterfactual": "the cat sat on the mat",
            "entity": "cat",
            "cf_entity": "cat",
        }
    )
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        "\n".join(
            json.dumps({k: v for k, v in p.items() if k not in ("answer", "cf_answer")})
            for p in pairs
        )
    )
    return path


def _sorted(table):
    return table.sort_by("record_id").to_pylist()


def test_patching_and_features_corpora_read_without_selfexplain(
    ray_cluster, tiny_config, pairs_file
):
    patching = generate(
        tiny_config(
            "name=patch",
            "task=patching",
            f"generate.pairs={pairs_file}",
            "generate.items_per_shard=8",
            "generate.layers=[0,2,3]",
            "generate.held_out_fraction=0.5",
            "generate.max_items=0",
        )
    )
    features = generate(
        tiny_config(
            "name=feat", "task=features", "generate.max_items=24", "generate.min_probe_accuracy=0.7"
        )
    )
    d_model = 64
    for corpus in (patching, features):
        manifest = read_manifest(corpus)
        files = [str(corpus.local_path / s["file"]) for s in manifest["shards"]]
        table = pq.read_table(files)
        assert table.num_rows == manifest["rows"] > 0
        vector_type = table.schema.field("vector").type
        assert pa.types.is_fixed_size_list(vector_type) and vector_type.list_size == d_model
        assert vector_type.value_type == pa.float32()
        data_files = [str(corpus.local_path / name) for name in manifest["data_files"]]
        loaded = datasets.load_dataset("parquet", data_files=data_files, split="train")
        assert len(loaded) == table.num_rows and len(loaded[0]["vector"]) == d_model
        rejects = pq.read_table(
            [str(corpus.local_path / REJECTS / s["file"]) for s in manifest["shards"]]
        )
        assert rejects.num_rows == manifest["rejected"]
        assert set(table["split"].to_pylist()) <= {"train", "test"}

    patched = read_corpus(patching).to_pandas()
    assert set(patched.layer) == {0, 2, 3}
    # held out by entity: a pair is kept only when both of its entities are on one side, so no
    # entity (original or counterfactual) appears on both sides ...
    train, test = patched[patched.split == "train"], patched[patched.split == "test"]
    assert len(test) and len(train)
    assert not (set(train.entity) | set(train.cf_entity)) & (set(test.entity) | set(test.cf_entity))

    # ... and no held-out vector is (nearly) a training vector
    def unit(frame):
        vectors = np.stack(frame.vector.to_numpy())
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    assert (unit(test) @ unit(train).T).max() < 0.999
    reasons = read_manifest(patching)["rejected_by_reason"]
    assert any("different lengths" in reason for reason in reasons)
    assert any("fall on both sides of the held-out split" in reason for reason in reasons)
    feats = read_corpus(features).to_pandas()
    assert feats.groupby("feature_id").split.nunique().max() == 1
    assert (feats.quality >= 0.7).all()


def test_generation_killed_halfway_resumes_to_the_same_corpus(ray_cluster, tiny_config, pairs_file):
    overrides = (
        "task=patching",
        f"generate.pairs={pairs_file}",
        "generate.items_per_shard=3",
        "generate.layers=[1,3]",
    )
    corpus = generate(tiny_config("name=whole", *overrides))
    expected = _sorted(read_corpus(corpus))

    halfway = tiny_config("name=killed", *overrides)
    partial = generate(halfway)
    # what a kill leaves: some shards finished, the rest and the manifest never written
    os.remove(partial.local_path / "manifest.json")
    for index in (1, 3):
        os.remove(partial.local_path / shard_name(index))
    mtime_kept = os.path.getmtime(partial.local_path / shard_name(0))
    resumed = generate(halfway)
    assert (
        os.path.getmtime(resumed.local_path / shard_name(0)) == mtime_kept
    )  # finished shards are not redone
    assert _sorted(read_corpus(resumed)) == expected


@ray.remote(num_cpus=0)
class CallCounter:
    def __init__(self):
        self.calls = 0

    def next(self) -> int:
        self.calls += 1
        return self.calls


class WorkerThatCrashesOnce(GroundTruthWorker):
    """The first call anywhere kills its actor process, as a preempted node would."""

    def __call__(self, batch):
        if ray.get(ray.get_actor("crash-counter").next.remote()) == 1:
            os._exit(1)
        return super().__call__(batch)


def test_an_actor_that_dies_once_loses_and_duplicates_nothing(ray_cluster, tiny_config):
    counter = CallCounter.options(name="crash-counter").remote()
    overrides = (
        "task=features",
        "generate.max_items=12",
        "generate.items_per_shard=3",
        "generate.num_actors=1",
    )
    clean = _sorted(read_corpus(generate(tiny_config("name=clean", *overrides))))
    crashed = generate(tiny_config("name=crashed", *overrides), worker=WorkerThatCrashesOnce)
    assert ray.get(counter.next.remote()) > 2  # the crash happened and the work went on
    rows = _sorted(read_corpus(crashed))
    assert [r["record_id"] for r in rows] == [r["record_id"] for r in clean]
    assert rows == clean
    ray.kill(counter)


def test_generate_says_how_many_items_cross_the_split_and_warns_on_an_empty_side(caplog):
    from collections import Counter

    from selfexplain.config import load_config
    from selfexplain.jobs.generate import CROSS, report_split

    config = load_config("tiny", ["task=patching", "generate.held_out_by=entity"])
    with caplog.at_level("INFO", logger="selfexplain.jobs.generate"):
        report_split(config, Counter({"train": 40, CROSS: 20}), "items")
    messages = [record.getMessage() for record in caplog.records]
    assert any("20 of 60 items have entity values on both sides" in m for m in messages)
    warning = next(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert (
        "held-out split has no items" in warning and "raise generate.held_out_fraction" in warning
    )
