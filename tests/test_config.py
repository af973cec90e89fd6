import pytest

from selfexplain.config import RunConfig, describe_fields, load_config, packaged_configs


def test_packaged_configs_load_and_start_with_the_command_that_runs_them():
    from importlib import resources

    assert {"demo", "tiny"} <= set(packaged_configs())
    for name in ("demo", "tiny"):
        config = load_config(name)
        assert isinstance(config, RunConfig)
        first_line = (
            (resources.files("selfexplain") / "configs" / f"{name}.yaml")
            .read_text()
            .splitlines()[0]
        )
        assert first_line.startswith("# Run with:") and name in first_line


def test_fingerprint_ignores_keys_that_cannot_change_a_result():
    base = load_config("tiny")
    operational = load_config(
        "tiny",
        [
            "train.tensorboard=false",
            "train.keep_finished_checkpoints=true",
            "train.max_failures=3",
            "train.checkpoint_every=5",
            "ray.num_cpus=8",
            "ray.dashboard=true",
        ],
    )
    assert operational.fingerprint() == base.fingerprint()
    assert operational.fingerprint("train") == base.fingerprint("train")
    assert load_config("tiny", ["train.learning_rate=0.5"]).fingerprint(
        "train"
    ) != base.fingerprint("train")


def test_overrides_are_typed_and_nested():
    config = load_config(
        "tiny", ["train.epochs=3", "train.learning_rate=2e-4", "name=other", "train.offload=false"]
    )
    assert config.train.epochs == 3
    assert config.train.learning_rate == pytest.approx(2e-4)
    assert config.name == "other"


def test_text_keys_keep_their_text_and_a_section_merges():
    """YAML would read these names as 2024.1 and 2024 (a date); a mapping given for a section
    changes only its keys."""
    assert load_config("tiny", ["name=2024.10"]).name == "2024.10"
    assert load_config("tiny", ["name='2024.10'"]).name == "2024.10"
    assert load_config("tiny", ["target=1e3"]).target == "1e3"
    merged = load_config("tiny", ["train={epochs: 2}"]).train
    assert (merged.epochs, merged.learning_rate, merged.num_workers) == (2, 1e-3, 2)


def test_every_field_is_documented():
    undocumented = [key for key, _, doc in describe_fields() if not doc]
    assert undocumented == []


def test_yaml_file_path(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: 2024.10\ntarget: tiny-llama\ntrain:\n  epochs: 2\n")
    config = load_config(str(path))
    assert (config.name, config.target, config.train.epochs) == ("2024.10", "tiny-llama", 2)


def test_enumerated_values_show_their_choices_and_match_the_tasks():
    import typing

    from selfexplain.config import HeldOutBy
    from selfexplain.tasks import TASK_NAMES, TaskName, get_task

    assert TASK_NAMES == typing.get_args(TaskName)
    groups = {group for name in TASK_NAMES for group in get_task(name).held_out_by}
    assert groups | {"auto"} == set(typing.get_args(HeldOutBy))
    docs = {key: doc for key, _, doc in describe_fields()}
    assert docs["generate.component"].endswith("[one of: residual, attn, mlp]")
    assert "[one of: ablation, hint, patching, features]" in docs["task"]


def test_a_packaged_name_wins_over_a_folder_of_that_name(tmp_path, monkeypatch):
    """`selfexplain study study` run from a folder that holds study outputs in ./study."""
    (tmp_path / "tiny").mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_config("tiny").name == "tiny"
