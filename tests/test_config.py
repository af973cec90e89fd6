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


# Every config key when runs in the field were first fingerprinted. A key added since is listed in
# KEYS_ADDED_AFTER_FINGERPRINTS instead, so that it leaves those runs' fingerprints alone.
FINGERPRINTED_KEYS = """
name output_dir target task seed templates corpus_from trust_remote_code
generate.max_items generate.held_out_fraction generate.held_out_by generate.layers
generate.max_tokens generate.items_per_shard generate.num_actors generate.cpus_per_actor
generate.gpus_per_actor generate.max_actor_restarts generate.prompts generate.questions
generate.hints_per_fact generate.hint_filter generate.pairs generate.layer_blocks
generate.component generate.features generate.explanations generate.min_probe_accuracy
generate.top_contexts train.explainer train.epochs train.learning_rate train.weight_decay
train.batch_size train.grad_accum train.max_length train.zero_stage train.offload
train.gradient_clipping train.warmup_steps train.lr_schedule train.length_buckets
train.select_best train.patience train.num_workers train.use_gpu train.precision
train.gpu_memory_gib train.gradient_checkpointing train.cpus_per_worker train.torch_threads
train.projection train.projection_learning_rate train.projection_init train.freeze_projection
train.vector_control train.rescale_vectors train.tensorboard train.keep_checkpoints
train.keep_finished_checkpoints train.checkpoint_every train.max_failures
train.in_distribution_holdout train.validation_examples train.validate_every train.data_fraction
train.lora_rank train.lora_alpha train.lora_dropout train.lora_target_modules train.mix
evaluate.max_examples evaluate.batch_size evaluate.max_new_tokens evaluate.untrained_baseline
evaluate.candidate_choice evaluate.candidate_outputs evaluate.selfie_scales evaluate.explainer
ray.num_cpus ray.address ray.dashboard storage.shared_filesystem
""".split()


def test_a_key_added_later_leaves_earlier_fingerprints_alone(monkeypatch):
    """A run fingerprinted before a key existed resumes under the code that adds it, as long as
    the key stays at its default; set away from it, the key changes the fingerprint."""
    import selfexplain.config as config_module

    base = load_config("tiny")
    new_keys = {key for key, _, _ in describe_fields(RunConfig, instance=base)}
    new_keys -= set(FINGERPRINTED_KEYS)
    assert new_keys == set(config_module.KEYS_ADDED_AFTER_FINGERPRINTS), (
        "a config key was added: list it in selfexplain.config.KEYS_ADDED_AFTER_FINGERPRINTS "
        f"so that runs fingerprinted before it still resume ({sorted(new_keys)})"
    )
    # as if train.lora_dropout had been added after this fingerprint was taken: the code before
    # it hashed a config without the key
    to_dict = RunConfig.to_dict

    def without_lora_dropout(self):
        data = to_dict(self)
        del data["train"]["lora_dropout"]
        return data

    monkeypatch.setattr(RunConfig, "to_dict", without_lora_dropout)
    without_the_key = base.fingerprint("train")
    monkeypatch.undo()
    added = config_module.KEYS_ADDED_AFTER_FINGERPRINTS | {"train.lora_dropout"}
    monkeypatch.setattr(config_module, "KEYS_ADDED_AFTER_FINGERPRINTS", added)
    assert base.fingerprint("train") == without_the_key
    assert load_config("tiny", ["train.lora_dropout=0.3"]).fingerprint("train") != without_the_key


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
