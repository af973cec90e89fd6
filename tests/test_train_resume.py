"""Fault tolerance: a worker dies right after a checkpoint taken in the middle of an epoch; Ray
Train restarts the group, the loop resumes from the last persisted checkpoint's exact step and
data position, and the loss curve equals an uninterrupted run's."""

import sys

import pytest
import ray
from ray import cloudpickle

from selfexplain.config import ConfigError
from selfexplain.jobs.generate import generate
from selfexplain.storage import Location
from selfexplain.train.loop import train_loop_per_worker
from selfexplain.train.safe_checkpoint import CheckpointError, read_progress
from selfexplain.train.trainer import train

cloudpickle.register_pickle_by_value(sys.modules[__name__])


@ray.remote(num_cpus=0)
class AttemptCounter:
    def __init__(self):
        self.attempts = 0

    def next(self) -> int:
        self.attempts += 1
        return self.attempts

    def failed_at(self, step: int | None = None) -> int | None:
        self.step = step if step is not None else getattr(self, "step", None)
        return self.step


def loop_that_fails_once(loop_config):
    """Run the real loop; on the first attempt, rank 1 dies right after the first checkpoint
    taken inside an epoch after the first (so a whole epoch and part of the next are done)."""
    import ray.train

    counter = ray.get_actor("attempts")
    context = ray.train.get_context()
    first_attempt = context.get_world_rank() != 1 or ray.get(counter.next.remote()) == 1
    real_report = ray.train.report

    def report_then_fail(metrics, checkpoint=None, **kwargs):
        real_report(metrics, checkpoint=checkpoint, **kwargs)
        if (
            first_attempt
            and context.get_world_rank() == 1
            and metrics["epoch"] >= 1
            and metrics["epoch_step"] > 0
        ):
            ray.get(counter.failed_at.remote(metrics["step"]))
            raise RuntimeError(
                f"injected worker failure at step {metrics['step']}, inside an epoch"
            )

    ray.train.report = report_then_fail
    try:
        train_loop_per_worker(loop_config)
    finally:
        ray.train.report = real_report


def test_resume_after_worker_failure_matches_uninterrupted_run(ray_cluster, tiny_config):
    overrides = (
        "generate.max_items=12",
        "train.epochs=3",
        "train.max_failures=1",
        "train.checkpoint_every=2",
    )
    straight = tiny_config("name=straight", *overrides)
    generate(straight)
    train(straight)
    expected = straight.run_dir.__truediv__("train_metrics.json").read_json()

    failing = tiny_config("name=failing", *overrides)
    generate(failing)
    counter = AttemptCounter.options(name="attempts").remote()
    try:
        train(failing, loop=loop_that_fails_once)
        assert ray.get(counter.next.remote()) == 3  # rank 1 started twice: the group was restarted
        failed_at = ray.get(counter.failed_at.remote())
    finally:
        ray.kill(counter)
    resumed = (failing.run_dir / "train_metrics.json").read_json()

    assert failed_at is not None and failed_at % 2 == 0
    steps_per_epoch = expected["step"] // 3
    assert failed_at % steps_per_epoch != 0  # the failure came inside an epoch, not at its end
    # The last attempt started from a persisted checkpoint: the one taken at the failure, or an
    # earlier one when that one had not reached storage yet (under load it can lag). Which one is
    # not assumed; it was taken at a checkpoint step (every 2 steps, or an epoch's end) no later
    # than the failure, after the first epoch, and the run then ended at the same last step with
    # the same loss at every step: exactly the remaining steps ran, none twice, none skipped.
    start = resumed["resumed_from_step"]
    assert steps_per_epoch <= start <= failed_at
    assert start % 2 == 0 or start % steps_per_epoch == 0
    assert expected["resumed_from_step"] == 0
    assert resumed["step"] == expected["step"]
    assert len(resumed["loss_curve"]) == len(expected["loss_curve"])
    assert resumed["loss_curve"] == pytest.approx(expected["loss_curve"], abs=1e-4)
    # validation losses of the epochs before the failure came back with the checkpoint
    assert [v["step"] for v in resumed["validation_curve"]] == [
        v["step"] for v in expected["validation_curve"]
    ]
    assert [v["val_held_out"] for v in resumed["validation_curve"]] == pytest.approx(
        [v["val_held_out"] for v in expected["validation_curve"]], abs=1e-4
    )


def test_kept_checkpoints_a_changed_rerun_and_a_corrupt_checkpoint(ray_cluster, tiny_config):
    """One finished run serves four checks: a local cluster trains without Ray Train's
    placement-group cleaner and dataset manager; only the newest checkpoints are kept; a rerun of
    the name with other training settings is refused before it writes, with or without the
    finished export; a checkpoint that lost its progress record fails with that reason."""
    from ray.util.state import list_actors

    config = tiny_config(
        "name=keep",
        "generate.max_items=8",
        "train.epochs=3",
        "train.keep_checkpoints=2",
        "train.keep_finished_checkpoints=true",
    )
    generate(config)
    train(config)
    assert [
        actor.class_name for actor in list_actors(filters=[("class_name", "=", "TrainController")])
    ]
    for idle in ("PlacementGroupCleaner", "DatasetManager"):
        assert not list_actors(filters=[("class_name", "=", idle)])
    storage = config.run_dir.local_path / "ray_train" / "train"

    def checkpoint_folders():
        return sorted(
            p for p in storage.iterdir() if p.is_dir() and p.name.startswith("checkpoint_")
        )

    checkpoints = checkpoint_folders()
    assert len(checkpoints) == 2  # epochs 2 and 3; epoch 1 was pruned

    changed = tiny_config(
        "name=keep",
        "generate.max_items=8",
        "train.epochs=3",
        "train.keep_checkpoints=2",
        "train.keep_finished_checkpoints=true",
        "train.learning_rate=0.5",
    )
    with pytest.raises(ConfigError, match="explainer was trained with other settings"):
        train(changed)  # the finished export is not reused for other settings
    (config.run_dir / "explainer").delete_dir()
    with pytest.raises(ConfigError, match="made with other settings or inputs"):
        train(changed)  # nor are its checkpoints
    assert checkpoint_folders() == checkpoints  # refused before it wrote anything

    # The newest checkpoint loses its progress record; a rerun must say so, not crash in DeepSpeed.
    (checkpoints[-1] / "progress.json").unlink()
    with pytest.raises(Exception, match="has no readable progress.json"):
        train(config)


def test_read_progress_names_what_is_wrong_with_a_checkpoint(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="is empty; delete the run's ray_train folder"):
        read_progress(str(empty), "progress.json")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "progress.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="no readable progress.json"):
        read_progress(str(broken), "progress.json")
    (broken / "progress.json").write_text(
        '{"tag": "epoch-1", "epoch": 1, "step": 2, "loss_curve": [1.0]}'
    )
    with pytest.raises(CheckpointError, match="lacks DeepSpeed state epoch-1"):
        read_progress(str(broken), "progress.json")
    (broken / "epoch-1").mkdir()
    (broken / "epoch-1" / "mp_rank_00_model_states.pt").write_bytes(b"")
    assert read_progress(str(broken), "progress.json")["step"] == 2


def test_a_killed_workers_best_export_folder_is_removed_by_the_next(tmp_path):
    """A worker killed mid-run leaves its temporary best export behind (1 GB for Gemma-3-270M);
    the next worker deletes those of processes that no longer run, and only those."""
    import os
    import socket
    import subprocess

    from selfexplain.train.loop import best_export_folder

    host = socket.gethostname()
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    stale = tmp_path / f"selfexplain-best-{finished.pid}@{host}-k1ll3d"
    (stale / "explainer").mkdir(parents=True)
    (stale / "explainer" / "model.safetensors").write_bytes(b"weights")
    running = tmp_path / f"selfexplain-best-{os.getpid()}@{host}-4l1v3"
    # another node's folder in a shared temporary folder, and an older unnamed one: not ours
    elsewhere = tmp_path / f"selfexplain-best-{finished.pid}@another-node-0th3r"
    unnamed = tmp_path / "selfexplain-best-n0p1d"
    for folder in (running, elsewhere, unnamed):
        folder.mkdir()

    fresh = best_export_folder(str(tmp_path))
    assert not stale.exists() and running.exists() and elsewhere.exists() and unnamed.exists()
    assert fresh.is_dir() and fresh.name.startswith(f"selfexplain-best-{os.getpid()}@{host}-")


def test_the_validation_cadence_counts_where_it_chooses_the_export(tiny_config, tmp_path):
    """With select_best the validations decide which step is exported, so a finished export is
    not reused under another cadence; exports recorded before the cadence counted still are."""
    import json

    from selfexplain.train.trainer import (
        _check_trained_with,
        _settings_fingerprint,
        training_fingerprint,
    )

    every_2 = tiny_config("train.select_best=true", "train.validate_every=2")
    every_4 = tiny_config("train.select_best=true", "train.validate_every=4")
    assert training_fingerprint(every_2) != training_fingerprint(every_4)
    plain_2, plain_4 = (tiny_config(f"train.validate_every={n}") for n in (2, 4))
    assert training_fingerprint(plain_2) == training_fingerprint(plain_4)  # nothing chosen by it

    export = tmp_path / "explainer"
    export.mkdir()
    for recorded, reused in (
        (training_fingerprint(every_2), True),
        (training_fingerprint(every_4), False),
        (_settings_fingerprint(every_4), True),  # an export from before the cadence counted
    ):
        (export / "selfexplain.json").write_text(json.dumps({"training_fingerprint": recorded}))
        if reused:
            _check_trained_with(every_2, Location(str(export)))
        else:
            with pytest.raises(ConfigError, match="was trained with other settings"):
                _check_trained_with(every_2, Location(str(export)))
