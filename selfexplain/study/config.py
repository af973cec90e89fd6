"""A study's configuration: which target, which explainers, which tasks, which data fractions.

Studies live in ``selfexplain/configs/studies/`` (found by name: ``study``, ``study-quick``) or
any YAML path. Every run of a study is an ordinary run config: the ``base`` run config, the
study-wide ``overrides``, then the task's own overrides, so anything a run can do a study can.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from selfexplain.config import (NAME_FIX, TASKS, ConfigError, RunConfig, from_dict, is_safe_name, load_config,
                                packaged_configs, read_yaml_mapping, resolve_config_path)


@dataclass
class StudyConfig:
    name: str
    """Study name; its runs and report go to ``<output_dir>/<name>/``."""
    target: str
    """The model whose computations are explained."""
    other_explainer: str
    """The *other* explainer: a different model, given the same data and steps as the target."""
    tasks: dict[str, dict]
    """Task name -> run-config overrides for that task (``{}`` for none)."""
    base: str = "demo"
    """The run config every run starts from (a packaged name or a YAML path)."""
    output_dir: str = "runs"
    """Root folder; the study writes ``<output_dir>/<name>/``."""
    data_fractions: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0])
    """Training-set fractions of the scaling sweep (1.0 is the main comparison)."""
    scaling_explainers: list[str] = field(default_factory=lambda: ["self", "other"])
    """Which explainers get the scaling sweep (the others train on the full set only)."""
    overrides: dict = field(default_factory=dict)
    """Run-config overrides for every run, as ``{key: value}`` (dotted keys)."""

    @property
    def folder(self) -> str:
        return f"{self.output_dir.rstrip('/')}/{self.name}"

    def explainers(self) -> dict[str, str]:
        """Role -> explainer reference for ``train.explainer``."""
        return {"self": "self", "other": self.other_explainer}

    def fractions_for(self, role: str) -> list[float]:
        return sorted(set(self.data_fractions) | {1.0}) if role in self.scaling_explainers else [1.0]

    def run_config(self, task: str, role: str | None = None, fraction: float = 1.0) -> RunConfig:
        """The run config of one stage: the corpus run for ``task`` (``role=None``), or the run that
        trains and scores explainer ``role`` on ``fraction`` of that corpus."""
        settings = {**self.overrides, **(self.tasks[task] or {})}
        # a task's own train.data_fraction is what its "100%" trains on; the sweep scales it
        budget = float(settings.pop("train.data_fraction", 1.0))
        pairs = [f"{k}={_yaml(v)}" for k, v in settings.items()]
        name = task if role is None else run_name(task, role, fraction)
        pairs += [f"task={task}", f"target={self.target}", f"output_dir={self.folder}", f"name={name}"]
        if role is not None:
            pairs += [f"corpus_from={task}",
                      f"train.explainer={self.explainers()[role]}", f"train.data_fraction={_yaml(budget * fraction)}",
                      # the untrained model does not change with the data fraction: score it once
                      f"evaluate.untrained_baseline={_yaml(fraction == 1.0)}"]
        return load_config(self.base, pairs)


def run_name(task: str, role: str, fraction: float) -> str:
    return f"{task}-{role}-{round(fraction * 100)}"


def _yaml(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def packaged_studies() -> list[str]:
    return packaged_configs("study")


def load_study(name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> StudyConfig:
    """Read a study YAML; ``key=value`` overrides set study keys (``name=...``, ``data_fractions=[0.5,1]``)
    and any other dotted key becomes a run-config override for every run (``train.epochs=1``)."""
    import dataclasses

    path = resolve_config_path(name_or_path, kind="study")
    data = read_yaml_mapping(path, "study file")
    known = {f.name for f in dataclasses.fields(StudyConfig)}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not key=value; write e.g. train.epochs=1")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: the value is not valid YAML") from None
        if key in known:
            data[key] = value
        else:
            data.setdefault("overrides", {})[key] = value
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"unknown study keys {sorted(unknown)}; valid keys: {', '.join(sorted(known))}")
    missing = {"name", "target", "other_explainer", "tasks"} - set(data)
    if missing:
        raise ConfigError(f"study file {path} lacks {sorted(missing)}")
    study = from_dict(StudyConfig, data)
    if not study.tasks or set(study.tasks) - TASKS:
        raise ConfigError(f"study key 'tasks': give a mapping of task -> overrides; tasks are {sorted(TASKS)}")
    if not is_safe_name(study.name):
        raise ConfigError(f"study key 'name': {study.name!r} is not a safe name; {NAME_FIX}")
    if not study.output_dir.strip():
        raise ConfigError("study key 'output_dir': give a folder or URI, e.g. runs (an empty one would write "
                          "the study at the filesystem root)")
    if not study.data_fractions or not all(0 < f <= 1 for f in study.data_fractions):
        raise ConfigError("study key 'data_fractions': give fractions in (0, 1], e.g. [0.25, 0.5, 1.0]")
    if set(study.scaling_explainers) - {"self", "other"}:
        raise ConfigError("study key 'scaling_explainers': use a list of self and/or other")
    for task in study.tasks:  # every run config is valid before anything runs
        for role in study.explainers():
            for fraction in study.fractions_for(role):
                study.run_config(task, role, fraction)
    return study
