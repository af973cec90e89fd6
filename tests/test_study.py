"""The study end to end on tiny models: a corpus, self and other explainers (different hidden
sizes) on identical rows, a scaling sweep, evaluation with baselines, and the report, which is
rendered in headless Chromium."""

import dataclasses
import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml

from selfexplain.config import ConfigError, load_config
from selfexplain.models.loading import resolve_model_dir
from selfexplain.study.config import load_study
from selfexplain.study.runner import run_study
from tests.families import save_tiny_family

STUDY = {
    "name": "mini",
    "base": "tiny",
    "target": "tiny-llama",
    "other_explainer": "tiny-llama-wide",
    "data_fractions": [0.5, 1.0],
    "scaling_explainers": ["self"],
    "overrides": {"train.num_workers": 1, "evaluate.max_examples": 12},
    "tasks": {
        "features": {
            "generate.max_items": 40,
            "generate.min_probe_accuracy": 0.7,
            "generate.layers": [1, 3],
        }
    },
}


# the study-paper preset (the paper's templates and recipe: bf16, constant learning rate, best
# checkpoint by in-distribution loss), cut to one task on CPU, a tiny random llama as target and
# self and a tiny random qwen3 as the other explainer
TINY_PAPER_STUDY = [
    "name=mini",
    "base=tiny",
    "target=tiny-llama",
    "data_fractions=[0.5, 1.0]",
    "scaling_explainers=[self]",
    f"tasks={json.dumps(STUDY['tasks'])}",
    "swapped={}",
    "train.use_gpu=false",
    "train.zero_stage=-1",
    "train.num_workers=1",
    "train.cpus_per_worker=1",
    "train.batch_size=8",
    "train.grad_accum=1",
    "train.epochs=2",
    "train.learning_rate=1e-3",
    "train.validation_examples=32",
    "generate.num_actors=1",
    "generate.cpus_per_actor=1",
    "generate.gpus_per_actor=0",
    "evaluate.max_examples=12",
]


@pytest.fixture(scope="module")
def finished_study(ray_cluster, tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    qwen3 = save_tiny_family("qwen3", folder / "tiny-qwen3", resolve_model_dir("tiny-llama"))
    overrides = [*TINY_PAPER_STUDY, f"other_explainer={qwen3}", f"output_dir={folder / 'runs'}"]
    study = load_study("study-paper", overrides)
    summary = run_study(study)
    return study, folder / "runs" / "mini", summary


def test_study_trains_self_and_other_on_identical_rows_and_reports(finished_study):
    study, root, summary = finished_study
    report = root / "report"
    for name in (
        "results.csv",
        "results.json",
        "report.md",
        "report.html",
        "self_vs_other.png",
        "scaling.png",
        "training.png",
    ):
        assert (report / name).stat().st_size > 0, name
    assert (report / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the training figure draws each main run's validation curve, both explainers on every task
    from selfexplain.study.report import main_run_metrics

    curves = main_run_metrics(study)
    assert set(curves) == {(task, role) for task in study.tasks for role in ("self", "other")}
    assert all(metrics["validation_curve"] for metrics in curves.values())
    # the report's table of trained runs says how each ended, the scaling point included
    runs = (report / "report.md").read_text().split("## Training runs")[1]
    for name in ("features-self-100", "features-other-100", "features-self-50"):
        ended = r"(patience \(\d+\)|budget \(\d+ epochs\))"
        assert re.search(rf"\| {name} \|.*\| {ended} \|", runs), name

    frame = pd.read_csv(report / "results.csv")
    systems = set(frame.system)
    assert {
        "self (tiny-llama)",
        f"other ({study.other_explainer})",
        "untrained self (tiny-llama)",
        f"untrained other ({study.other_explainer})",
        "nearest-neighbour baseline",
    } <= systems
    assert any(system.startswith("SelfIE (untrained target, best scale x") for system in systems)
    assert set(frame.query_set) == {"held-out", "in-distribution"}
    sweep = frame[
        (frame.system == "self (tiny-llama)")
        & (frame.metric == "similarity")
        & (frame.query_set == "held-out")
    ]
    assert sorted(sweep.data_fraction) == [0.5, 1.0]
    assert set(frame[frame.system.str.startswith("other")].data_fraction) == {
        1.0
    }  # no sweep for other
    with_ci = frame[frame.metric == "similarity"].dropna(subset=["ci_low"])
    assert (with_ci.ci_low <= with_ci.value + 1e-9).all() and (
        with_ci.value <= with_ci.ci_high + 1e-9
    ).all()

    # identical data and steps for self and other: same rows trained on, same number of steps
    self_metrics = json.loads((root / "features-self-100" / "train_metrics.json").read_text())
    other_metrics = json.loads((root / "features-other-100" / "train_metrics.json").read_text())
    half = json.loads((root / "features-self-50" / "train_metrics.json").read_text())
    assert self_metrics["examples"] == other_metrics["examples"] > half["examples"] > 0
    assert len(self_metrics["loss_curve"]) == len(other_metrics["loss_curve"])
    # each exports its epoch of lowest in-distribution validation loss
    for metrics in (self_metrics, other_metrics):
        losses = [point["val_in_distribution"] for point in metrics["validation_curve"]]
        assert len(losses) == 2 and metrics["best_loss"] == min(losses)
        assert metrics["best_epoch"] == 1 + losses.index(min(losses))
    # the paper's templates, recorded with the explainer and asked in evaluation
    info = json.loads((root / "features-self-100" / "explainer" / "selfexplain.json").read_text())
    queries = pd.read_parquet(root / "features-self-100" / "predictions.parquet")["query"]
    paper = ("encodes ", "activates at layer", "as encoding", "Generate a description", "What does")
    assert info["templates"] == "paper" and all(any(p in q for p in paper) for q in queries)
    # one corpus, shared: the explainer runs have none of their own
    assert (root / "features" / "corpus" / "manifest.json").is_file()
    assert not (root / "features-self-100" / "corpus").exists()

    markdown = (report / "report.md").read_text()
    assert "features: held-out queries" in markdown and "self (tiny-llama)" in markdown
    assert "features / held-out" in summary["tables"]

    # the headline: self - other, paired on the same queries, with a cluster interval
    comparisons = summary["comparisons"]
    paired = {
        (row["query_set"], row["metric"]): row
        for row in comparisons["self - other"]
        if row["task"] == "features"
    }
    held = paired[("held-out", "similarity")]
    assert held["n"] == self_scores_n(root) and held["units"] <= held["n"]
    assert held["difference"] == pytest.approx(held["first"] - held["second"])
    assert held["ci_low"] <= held["difference"] <= held["ci_high"]
    assert {"word F1", "exact match"} <= {metric for _, metric in paired}
    assert "Headline: self - other" in markdown
    # trained self - the strongest other system of its run, per family of features too
    versus = {
        (row["task"], row["query_set"], row["metric"]): row
        for row in comparisons["trained self - best other system"]
    }
    held = versus[("features", "held-out", "similarity")]
    assert not held["baseline"].startswith("trained explainer")
    assert held["ci_low"] <= held["difference"] <= held["ci_high"]
    # ... and minus each of them, on the headline metric alone
    each = [r for r in comparisons["trained self - each baseline"] if r["task"] == "features"]
    assert {r["metric"] for r in each} == {"similarity"}
    predictions = pd.read_parquet(root / "features-self-100" / "predictions.parquet")
    scored = {c.removeprefix("similarity: ") for c in predictions if c.startswith("similarity: ")}
    assert {r["baseline"] for r in each} == scored - {"trained explainer"}
    assert "nearest-neighbour baseline" in scored
    # the control: each explainer against itself trained and scored without the vector
    gains = {
        row["query_set"]
        for row in comparisons["gain from the vector"]
        if row["task"] == "features, self" and row["metric"] == "similarity"
    }
    assert (
        gains == {"held-out", "in-distribution"} and len(comparisons["gain from the vector"]) >= 6
    )
    assert "same-family baseline (another concept's description)" in systems
    # the summary: one row per query set, each cell one of the rows above
    across = {row["query_set"]: row for row in summary["summary"] if row["task"] == "features"}
    held = across["held-out"]["differences"]
    assert set(held) == {
        "untrained self",
        "SelfIE",
        "nearest neighbour",
        "trained other",
        "self without the vector",
    }  # features has no majority answer
    assert held["trained other"] == paired[("held-out", "similarity")]
    assert held["nearest neighbour"]["baseline"] == "nearest-neighbour baseline"
    assert "Summary: trained self minus each system" in markdown


def test_the_summary_of_a_change_task_reads_exact_match_and_has_changed_f1_against_each():
    from selfexplain.study.comparisons import Comparison
    from selfexplain.study.summary import summary_markdown, summary_rows

    def row(metric, baseline=None, difference=0.1, query_set="held-out", decoding="greedy"):
        found = {"task": "patching", "query_set": query_set, "decoding": decoding}
        found |= {"metric": metric, "first": 0.9, "second": 0.9 - difference}
        found |= {"difference": difference, "ci_low": 0.0, "ci_high": 0.2, "n": 9, "units": 3}
        return found | ({"baseline": baseline} if baseline else {})

    each = [
        row("exact match", "majority baseline", -0.1),
        row("has-changed F1", "majority baseline", 0.6),
        row("exact match", "untrained explainer (candidate choice)", 0.5),  # not the greedy one
        row("exact match", "nearest-neighbour baseline", 0.3, decoding="candidate choice"),
    ]
    other = [row("exact match (changed rows)"), row("has-changed F1", difference=0.2)]
    comparisons = [
        Comparison("trained self - each baseline", "", "trained self", "baseline", each),
        Comparison("self - other", "", "self", "other", other),
    ]
    rows = summary_rows(comparisons, ["patching"])
    assert [(r["metric"], sorted(r["differences"])) for r in rows] == [
        ("exact match", ["majority answer"]),
        ("has-changed F1", ["majority answer", "trained other"]),
    ]
    assert "| patching | held-out | has-changed F1 | 0.900 | +0.600 [+0.00, +0.20] | - |" in (
        summary_markdown(rows)
    )


def test_families_are_reported_apart_and_the_best_baseline_is_picked_per_query_set():
    from selfexplain.study.comparisons import best_other_system, families

    frame = pd.DataFrame(
        {
            "query_set": ["held-out"] * 4 + ["in-distribution"] * 2,
            "family": ["words", "words", "countries", "countries", "words", "countries"],
            "similarity: trained explainer": [0.9, 0.9, 0.9, 0.9, 0.9, 0.9],
            "similarity: trained explainer (candidate choice)": [1.0] * 6,
            "similarity: nearest-neighbour baseline": [0.1, 0.2, 0.8, 0.8, 0.7, 0.7],
            "similarity: untrained explainer": [0.5, 0.5, 0.1, 0.1, 0.1, 0.1],
        }
    )
    assert [name for name, _ in families(frame)] == ["", "countries", "words"]
    words = dict(families(frame))["words"]
    held, seen = (frame[frame.query_set == q] for q in ("held-out", "in-distribution"))
    assert (
        best_other_system(words[words.query_set == "held-out"], "similarity")
        == "untrained explainer"
    )
    assert (
        best_other_system(held, "similarity") == "nearest-neighbour baseline"
    )  # never a trained explainer
    assert best_other_system(seen, "similarity") == "nearest-neighbour baseline"


def test_a_paired_join_that_is_not_one_to_one_is_refused():
    from selfexplain.study.comparisons import PairedJoinError, compare

    frame = pd.DataFrame(
        {
            "record_id": ["a", "b", "b"],
            "query_set": ["held-out"] * 3,
            "unit": ["u", "v", "v"],
            "family": [""] * 3,
            "similarity: trained explainer": [0.1, 0.2, 0.2],
        }
    )
    with pytest.raises(PairedJoinError, match="1 repeated queries"):
        compare(frame, frame.iloc[:2], "features", "trained explainer", "trained explainer")
    row = compare(
        frame.iloc[:2], frame.iloc[:2], "features", "trained explainer", "trained explainer"
    )[0]
    assert (row["n"], row["difference"]) == (2, 0.0)


def test_controls_and_swapped_roles_add_their_stages():
    study = load_study(
        "study", ["controls=[no-vector, random-projection]", "swapped={features: {}}"]
    )
    names = [stage.name for stage in study.stages()]
    assert {
        "features-self-100-novector",
        "features-other-100-novector",
        "patching-self-100-randproj",
        "features-swapped",
        "features-swapped-self-100",
        "features-swapped-other-100",
    } <= set(names)
    assert "hint-self-100-novector" not in names  # hint carries no vector
    self_only = load_study("study", ["controls=[no-vector]", "control_explainers=[self]"])
    controls = [stage.name for stage in self_only.stages() if stage.variant]
    assert controls == ["features-self-100-novector", "patching-self-100-novector"]
    swapped = study.run_config(
        next(s for s in study.stages() if s.name == "features-swapped-other-100")
    )
    assert (swapped.target, swapped.train.explainer, swapped.corpus_from) == (
        study.other_explainer,
        study.target,
        "features-swapped",
    )
    control = study.run_config(
        next(s for s in study.stages() if s.name == "patching-self-100-randproj")
    )
    assert (
        control.train.projection,
        control.train.projection_init,
        control.train.freeze_projection,
    ) == ("always", "orthogonal", True)
    assert not control.evaluate.untrained_baseline


def test_a_learning_rate_sweep_chooses_by_in_distribution_loss_alone(tmp_path):
    """Each explainer trains at each rate for the same budget before its runs; its runs take the
    rate of lowest in-distribution loss, whatever the held-out loss says."""
    from selfexplain.study.report import sweep_markdown

    study = load_study(
        "study",
        ["learning_rates=[3e-5, 1e-4, 3e-4]", "sweep_epochs=2", f"output_dir={tmp_path}"],
    )
    names = [stage.name for stage in study.stages()]
    sweep = [name for name in names if "-lr" in name]
    # (3 tasks + features with the roles swapped) x explainers x rates: the same for self and other
    assert len(sweep) == 4 * 2 * 3
    # self's sweep and runs on every task come first, then other's: a study stopped early
    # answers whether the self-explainer learns; each run comes right after its sweep, which it
    # goes on from
    first_other_sweep = min(names.index(n) for n in sweep if "-other-" in n)
    assert names.index("hint-self-100") < first_other_sweep
    for run in ("patching-self-100", "features-other-100", "features-swapped-other-100"):
        at = names.index(run)
        assert [n.rsplit("-lr", 1)[0] for n in names[at - 3 : at]] == [run[: -len("-100")]] * 3
    stage = next(s for s in study.stages() if s.name == "patching-self-lr0.0001")
    config = study.run_config(stage)
    assert (config.train.learning_rate, config.train.epochs) == (1e-4, 2)
    assert config.train.select_best and config.train.data_fraction == 0.12
    main_stage = next(s for s in study.stages() if s.name == "patching-self-100")
    unswept = load_config(study.base).train.learning_rate
    assert study.run_config(main_stage).train.learning_rate == unswept  # the sweep has not run
    losses = {3e-5: (0.9, 0.1), 1e-4: (0.8, 0.2), 3e-4: (0.7, 0.9)}  # (in-distribution, held-out)
    for rate, (in_distribution, held_out) in losses.items():
        run = tmp_path / "study" / f"patching-self-lr{rate:g}"
        run.mkdir(parents=True)
        metrics = {
            "best_loss": in_distribution,
            "validation_curve": [
                {"step": 10, "val_in_distribution": in_distribution, "val_held_out": held_out}
            ],
        }
        (run / "train_metrics.json").write_text(json.dumps(metrics))
    epochs = {}
    for name in ("patching-self-100", "patching-self-100-randproj", "patching-self-12"):
        stage = next(s for s in study.stages() if s.name == name)
        config = study.run_config(stage)
        assert config.train.learning_rate == 3e-4, name
        epochs[name] = config.train.epochs
    # a scaling point on 1/8 of the rows gets the full set's step budget, patience stopping it
    assert epochs["patching-self-12"] == 8 * epochs["patching-self-100"]
    assert study.run_config(next(s for s in study.stages() if s.name == "patching-other-100")
                            ).train.learning_rate == unswept  # fmt: skip
    assert "| patching | self | **0.0003** | 0.7000 | 0.9000 |" in sweep_markdown(study)

    # every sweep kept its last checkpoint; once the rate is chosen only the winner's is kept,
    # and once the run that went on from it is trained, none
    from selfexplain.study.warm_start import release_sweep_checkpoints

    def kept() -> list[float]:
        return [r for r in losses if (tmp_path / "study" / f"patching-self-lr{r:g}" /
                                      "ray_train" / "train").is_dir()]  # fmt: skip

    for rate in losses:
        (tmp_path / "study" / f"patching-self-lr{rate:g}" / "ray_train" / "train").mkdir(
            parents=True
        )
    release_sweep_checkpoints(study, main_stage)
    assert kept() == [3e-4]
    (tmp_path / "study" / "patching-self-100" / "explainer").mkdir(parents=True)
    (tmp_path / "study" / "patching-self-100" / "explainer" / "README.md").write_text("trained")
    release_sweep_checkpoints(study, main_stage)
    assert kept() == []


def self_scores_n(root) -> int:
    return json.loads((root / "features-self-100" / "results.json").read_text())["results"][
        "trained explainer"
    ]["n"]


def test_rerun_reuses_every_finished_stage(finished_study):
    study, root, _ = finished_study
    results = root / "features-other-100" / "results.json"
    before = results.stat().st_mtime_ns
    timings = json.loads((root / "timings.json").read_text())
    run_study(study)
    assert results.stat().st_mtime_ns == before
    assert json.loads((root / "timings.json").read_text()) == timings


def test_status_names_each_stage_state_and_the_hours_done(finished_study, capsys):
    from selfexplain.cli import main

    study, root, _ = finished_study
    overrides = [
        *TINY_PAPER_STUDY,
        f"other_explainer={study.other_explainer}",
        f"output_dir={root.parent}",
        "data_fractions=[0.25, 0.5, 1.0]",  # one stage more than was run
    ]
    assert main(["study", "study-paper", *overrides, "--status"]) == 0
    out = capsys.readouterr().out
    stages = len(study.stages())
    minutes = json.loads((root / "timings.json").read_text())["features-self-100"] / 60
    assert f"| features-self-100 | done | {minutes:.1f} min |" in out
    assert "| features-self-25 | not started | - |" in out
    assert f"{stages} of {stages + 1} stages done" in out


def test_status_names_the_sweep_a_finished_run_went_on_from(tmp_path):
    from selfexplain.storage import Location
    from selfexplain.study.status import went_on_from

    study = Location(tmp_path / "study-long")
    metrics = study / "patching-other-100" / "train_metrics.json"
    assert went_on_from(metrics, study) is None  # not trained yet
    metrics.write_json({"step": 400})
    assert went_on_from(metrics, study) is None  # trained from scratch
    sweep_checkpoint = f"{study.path}/patching-other-lr1e-05/ray_train/train/checkpoint_1"
    metrics.write_json({"step": 400, "warm_started_from": sweep_checkpoint})
    assert went_on_from(metrics, study) == "patching-other-lr1e-05"


@pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="headless Chromium (Debian package chromium) not installed",
)
def test_report_renders_in_headless_chromium(finished_study, tmp_path):
    from PIL import Image

    _, root, _ = finished_study
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            "--window-size=1200,1600",
            (root / "report" / "report.html").as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape == (1600, 1200)
    figure_band = pixels[150:700]  # the plots sit under the title: a blank or broken image is flat
    assert figure_band.std() > 20 and (figure_band < 128).mean() > 0.01


def test_study_config_errors_name_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**STUDY, "tasks": {"poetry": {}}}))
    with pytest.raises(ConfigError, match="tasks"):
        load_study(str(path))
    path.write_text(yaml.safe_dump({**STUDY, "data_fractions": [0, 1]}))
    with pytest.raises(ConfigError, match="data_fractions"):
        load_study(str(path))
    path.write_text(yaml.safe_dump({**STUDY, "tasks": {"features": {"train.epochs": 0}}}))
    with pytest.raises(ConfigError, match="train.epochs"):
        load_study(str(path))
    with pytest.raises(ConfigError, match="no study named"):
        load_study("nonexistent-study")


def test_a_run_goes_on_from_its_sweep_only_where_the_sweep_is_its_beginning(tmp_path):
    """The chosen sweep's steps are a run's first steps only for the same training, learning
    rate at every step and (under patience) best weights; anything else trains from scratch."""
    from selfexplain.study.warm_start import continues

    study = load_study("study-long", [f"output_dir={tmp_path}"])
    stages = {stage.name: stage for stage in study.stages()}
    sweep = study.run_config(stages["hint-self-lr0.0001"])
    curve = [
        {"step": s, "val_in_distribution": v} for s, v in ((100, 0.3), (200, 0.2), (300, 0.25))
    ]
    metrics = {"step": 347, "best_step": 200, "validation_curve": curve}
    main = study.run_config(stages["hint-self-100"])  # at the base's rate, 1e-4: none chosen yet
    assert continues(sweep, main, metrics)
    assert not continues(study.run_config(stages["hint-self-lr0.0003"]), main, metrics)
    cosine = dataclasses.replace(main, train=dataclasses.replace(main.train, lr_schedule="cosine"))
    other_data = dataclasses.replace(main, train=dataclasses.replace(main.train, data_fraction=0.3))
    assert not continues(sweep, cosine, metrics)  # the rate at each step depends on the length
    assert not continues(sweep, other_data, metrics)
    # patience 1 stops the run at step 300 with step 200 best; with a later best the sweep's
    # export is not the weights that run exports
    impatient = dataclasses.replace(main, train=dataclasses.replace(main.train, patience=1))
    assert continues(sweep, impatient, metrics)
    later_best = [*curve, {"step": 347, "val_in_distribution": 0.1}]
    assert not continues(
        sweep, impatient, {**metrics, "best_step": 347, "validation_curve": later_best}
    )
    # the pre-trained projection control: other at its chosen rate, trained from scratch
    pretrained = study.run_config(stages["features-other-100-lstsq"])
    assert pretrained.train.projection_init == "lstsq" and pretrained.train.explainer != "self"
    other_sweep = study.run_config(stages["features-other-lr1e-05"])
    assert not continues(other_sweep, pretrained, metrics)
