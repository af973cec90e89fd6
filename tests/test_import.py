"""``selfexplain import`` on small files built in the paper's three layouts (the columns and
pickles its loaders read: dataloaders/act_patch.py, hint_attribution.py, features_explain*.py),
with a tiny random llama as the target: rows in selfexplain's schemas, the paper's splits kept,
bad records rejected with their reason, a rerun that resumes, and training on the result."""

import json
import os
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from selfexplain.cli import main
from selfexplain.corpus.io import read_corpus, read_manifest
from selfexplain.models import load_model
from selfexplain.models.hooks import capture_residual
from selfexplain.storage import Location

PAIRS = [("The capital of France is", "The capital of Spain is", " Paris", " Madrid"),
         ("The capital of Spain is", "The capital of France is", " Madrid", " Paris"),
         ("The capital of Italy is", "The capital of Spain is", " Rome", " Rome")]  # fmt: skip


def act_patch_record(tokenizer, prompt, counterfactual, before, after, vector="given"):
    """One row as the paper's act_patch datasets hold it."""
    ids, cf_ids = tokenizer(prompt)["input_ids"], tokenizer(counterfactual)["input_ids"]
    position = next(i for i, (a, b) in enumerate(zip(ids, cf_ids)) if a != b)
    patch = {
        "orig_pos": position,
        "counterfact_pos": position,
        "orig_text_token": tokenizer.convert_ids_to_tokens(ids[position]),
        "counterfact_text_token": tokenizer.convert_ids_to_tokens(cf_ids[position]),
        "intervention_vector": None,
    }
    if vector == "given":
        patch["intervention_vector"] = np.linspace(-1, 1, 64).astype(np.float32).tolist()
    elif vector == "wrong width":
        patch["intervention_vector"] = [0.5] * 10
    return {
        "layer": [2],
        "input_tokens": tokenizer.tokenize(prompt),
        # token lists in the target's vocabulary, as the paper stores them
        "original_continuation": tokenizer.tokenize(before),
        "ablated_continuation": tokenizer.tokenize(after),
        "is_different": before != after,
        "patch_position": patch,
        "counterfactual_text": counterfactual,
        "gt_original_target": before.strip(),
        "gt_counterfactual_target": after.strip(),
    }


@pytest.fixture(scope="module")
def paper_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    _, tokenizer = load_model("tiny-llama")
    # activation patching: the hub's layout, data/<split>-00000-of-00001.parquet
    act = root / "act_patch_tiny_counterfact" / "data"
    act.mkdir(parents=True)
    ends = {**act_patch_record(tokenizer, *PAIRS[2]), "original_continuation": ["</s>"]}
    train = [act_patch_record(tokenizer, *PAIRS[0]),
             act_patch_record(tokenizer, *PAIRS[1], vector="none"),  # recomputed on the target
             act_patch_record(tokenizer, *PAIRS[0], vector="wrong width"),
             ends]  # fmt: skip
    test = [act_patch_record(tokenizer, *PAIRS[2])]
    for split, rows in (("train", train), ("test", test), ("validation", test)):
        pq.write_table(pa.Table.from_pylist(rows), act / f"{split}-00000-of-00001.parquet")
    # hint removal: the same layout
    hint = root / "input_ablation_tiny_hint" / "data"
    hint.mkdir(parents=True)
    questions = [("What is 2+2?", "B", "B", "A"), ("Which is a colour?", "C", "D", "D"),
                 ("Which is a planet?", "no letter", "A", "A")]  # fmt: skip
    hints = [hint_record(*question) for question in questions]
    pq.write_table(pa.Table.from_pylist(hints), hint / "train-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(hints[1:2]), hint / "test-00000-of-00001.parquet")
    # features: the explanation archive's pickles
    features = root / "SAE_feature_explanations_tiny"
    (features / "features").mkdir(parents=True)
    (features / "explanations").mkdir()
    decoder = np.random.default_rng(0).normal(size=(64, 6)).astype(np.float32)
    with open(features / "features" / "layer_1.pkl", "wb") as handle:
        pickle.dump(decoder, handle)
    labels = ["cities in Europe", "the colour red", "numbers", "code comments", "", "dogs"]
    pairs = [((1, i), {"chosen_label": labels[i], "all_labels": [labels[i]],
                       "all_label_scores": {labels[i]: 0.9}, "context": "Paris is big"})
             for i in range(6)]  # fmt: skip
    with open(features / "explanations" / "train_explanations.pkl", "wb") as handle:
        pickle.dump(pairs[:5] + [((1, 99), {"chosen_label": "beyond"})], handle)
    with open(features / "explanations" / "test_explanations.pkl", "wb") as handle:
        pickle.dump(pairs[5:], handle)
    return root, decoder


def hint_record(question, letter, with_hint, without):
    hint = f"\nHint: I think the answer is ({letter}) but I'm curious to hear what you think."
    if letter == "no letter":
        hint = "\nHint: I think I know."
    return {
        "ablation_prompt": question + hint,
        "system_prompt": "You are a helpful assistant.",
        "hint_user_prompt": question + hint,
        "original_user_prompt": question,
        "hint_prompt_full": f"User: {question}{hint}\n\nAssistant: Answer:",
        "original_prompt_full": f"User: {question}\n\nAssistant: Answer:",
        "random_hint_prediction": with_hint,
        "zeroshot_prediction": without,
        "changed_pred_bc_hint": with_hint != without,
        "hint": hint,
    }


def imported(tmp_path, source, task, *more):
    runs = tmp_path / "runs"
    argv = ["import", "tiny", str(source), f"output_dir={runs}", f"name={task}", f"task={task}"]
    assert main([*argv, *more]) == 0
    corpus = Location(runs / task / "corpus")
    return corpus, read_manifest(corpus), read_corpus(corpus).to_pylist()


def rejected_reasons(corpus):
    tables = [pq.read_table(p) for p in sorted((corpus.local_path / "rejects").glob("*.parquet"))]
    return sorted(r for t in tables for r in t["reason"].to_pylist())


def test_activation_patching_imports_trains_and_resumes(ray_cluster, paper_data, tmp_path):
    root, _ = paper_data
    source = root / "act_patch_tiny_counterfact"
    corpus, manifest, rows = imported(tmp_path, source, "patching")
    assert manifest["rows_by_split"] == {"test": 1, "train": 2}
    reasons = rejected_reasons(corpus)
    assert len(reasons) == 3 and manifest["rejected"] == 3
    assert any("end-of-text" in r for r in reasons)
    assert any("intervention_vector has 10 values" in r for r in reasons)
    assert any("'validation' is neither train nor test" in r for r in reasons)
    given, recomputed = sorted(
        (r for r in rows if r["split"] == "train"), key=lambda r: r["prompt"]
    )
    assert given["prompt"] == "The capital of France is" and given["token"] == " F"
    assert np.allclose(given["vector"], np.linspace(-1, 1, 64))
    assert given["changed"] and given["new_top1"] == " Madrid" and given["layers"] == [2]
    # a record without a vector gets the counterfactual's residual at its position, from the target
    model, tokenizer = load_model("tiny-llama")
    ids = torch.tensor([tokenizer(recomputed["counterfactual"])["input_ids"]])
    with torch.no_grad(), capture_residual(model, [2]) as captured:
        model(input_ids=ids)
    assert np.allclose(recomputed["vector"], captured[2][0, recomputed["position"]], atol=1e-5)
    # a rerun finds every shard written and leaves them as they are
    shard = corpus.local_path / "shard-00000.parquet"
    written = os.stat(shard).st_mtime_ns
    again = imported(tmp_path, source, "patching")[2]
    assert [r["record_id"] for r in again] == [r["record_id"] for r in rows]
    assert os.stat(shard).st_mtime_ns == written
    # the imported corpus trains and is scored like a generated one
    runs = tmp_path / "runs"
    common = [f"output_dir={runs}", "name=patching", "task=patching", "train.epochs=1",
              "train.in_distribution_holdout=0"]  # fmt: skip
    assert main(["train", "tiny", *common]) == 0
    assert main(["evaluate", "tiny", *common]) == 0
    results = json.loads((runs / "patching" / "results.json").read_text())
    assert results["results"]["trained explainer"]["n"] == 1


def test_hint_and_feature_archives_import_with_their_rejects(paper_data, tmp_path):
    root, decoder = paper_data
    corpus, manifest, rows = imported(tmp_path, root / "input_ablation_tiny_hint", "hint")
    assert manifest["rows_by_split"] == {"test": 1, "train": 2}
    assert rejected_reasons(corpus) == ["the hint names no answer letter in brackets, e.g. (B)"]
    changed = next(r for r in rows if r["question"] == "What is 2+2?")
    assert (changed["hint_answer"], changed["answer_with_hint"], changed["new_top1"]) == (
        "B",
        "B",
        "A",
    )
    assert changed["changed"] and changed["form"] == "choice"

    corpus, manifest, rows = imported(tmp_path, root / "SAE_feature_explanations_tiny", "features")
    assert manifest["rows_by_split"] == {"test": 1, "train": 4}
    assert rejected_reasons(corpus) == [
        "feature 99 is beyond features/layer_1.pkl's columns",
        "the label has no chosen_label (no description)",
    ]
    dogs = next(r for r in rows if r["description"] == "dogs")
    assert dogs["split"] == "test" and dogs["layer"] == 1
    assert np.allclose(np.asarray(dogs["vector"]) * dogs["scale"], decoder[:, 5], atol=1e-5)


class Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/selfexplain-pickle-ran",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path, capsys):
    archive = tmp_path / "archive"
    (archive / "explanations").mkdir(parents=True)
    (archive / "explanations" / "train_explanations.pkl").write_bytes(pickle.dumps(Payload()))
    code = main(
        ["import", "tiny", str(archive), f"output_dir={tmp_path / 'runs'}", "task=features"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "train_explanations.pkl" in err and "posix.system" in err
    assert not os.path.exists("/tmp/selfexplain-pickle-ran")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("shard-*"))
