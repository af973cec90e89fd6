"""A study's configuration: which target, which explainers, which tasks, which data fractions.

Studies live in ``selfexplain/configs/studies/`` (found by name: ``study``, ``study-quick``) or
any YAML path. Every run of a study is an ordinary run config: the ``base`` run config, the
study-wide ``overrides``, then the task's own overrides, so anything a run can do a study can.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import yaml

from selfexplain.config import (
    NAME_FIX,
    TASKS,
    ConfigError,
    RunConfig,
    from_dict,
    is_safe_name,
    load_config,
    packaged_configs,
    parse_override,
    read_yaml_mapping,
    resolve_config_path,
)
from selfexplain.storage import Location
from selfexplain.tasks import get_task

CONTROLS = ("no-vector", "random-projection", "pretrained-projection")
VARIANT_OF_CONTROL = {
    "no-vector": "novector",
    "random-projection": "randproj",
    "pretrained-projection": "lstsq",
}


@dataclass(frozen=True)
class Stage:
    """One stage of a study: a task's corpus (``role`` None), or one explainer trained and scored
    on it. ``variant`` names a control (``novector``: the vector withheld; ``randproj``: self
    through a fixed random orthogonal map; ``lstsq``: other with a pre-trained projection);
    ``swapped`` runs the task with target and other explainer exchanged, on a corpus of its
    own."""

    task: str
    role: str | None = None
    fraction: float = 1.0
    variant: str = ""
    swapped: bool = False
    learning_rate: float | None = None
    """A learning-rate sweep's stage: train only, at this rate, for ``sweep_epochs``."""

    @property
    def corpus(self) -> str:
        """The corpus run this stage reads or writes."""
        return f"{self.task}-swapped" if self.swapped else self.task

    @property
    def name(self) -> str:
        if self.role is None:
            return self.corpus
        if self.learning_rate is not None:
            return f"{self.corpus}-{self.role}-lr{self.learning_rate:g}"
        return run_name(self.corpus, self.role, self.fraction) + (
            f"-{self.variant}" if self.variant else ""
        )


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
    controls: list[str] = field(default_factory=list)
    """Controls for the tasks whose query carries a vector, on the full data: ``no-vector``
    (self and other trained and scored with the vector withheld: "gain from the vector"),
    ``random-projection`` (self reading its own vectors through a fixed random orthogonal map)
    and ``pretrained-projection`` (other with its projection started as the least-squares map
    between the two models' token embeddings, the paper's "pre-trained projection", against
    the main runs' random start)."""
    control_explainers: list[str] = field(default_factory=lambda: ["self", "other"])
    """Which explainers train the ``no-vector`` control (the gain from the vector is self's
    question first; the other's control doubles its cost)."""
    vector_control: str = "zero"
    """How ``no-vector`` withholds the vector: ``zero`` or ``shuffled`` (another query's)."""
    learning_rates: list[float] = field(default_factory=list)
    """A learning-rate sweep: each explainer (per task and role) trains ``sweep_epochs`` at each
    rate, and every later run of that explainer uses the rate of lowest in-distribution
    validation loss (the held-out split chooses nothing). Self and other get the same rates and
    budget. Empty: ``train.learning_rate`` for all."""
    sweep_epochs: int = 1
    """The sweep's budget per rate, in epochs of the full-data training rows."""
    swapped: dict[str, dict] = field(default_factory=dict)
    """Tasks also run with the roles swapped (``other_explainer`` as target and self, ``target``
    as other), each with overrides for that target (its layers differ), e.g.
    ``{features: {generate.layers: [4, 9, 14]}}``."""

    @property
    def folder(self) -> str:
        return f"{self.output_dir.rstrip('/')}/{self.name}"

    def explainers(self, swapped: bool = False) -> dict[str, str]:
        """Role -> explainer reference for ``train.explainer``."""
        return {"self": "self", "other": self.target if swapped else self.other_explainer}

    def fractions_for(self, role: str) -> list[float]:
        return (
            sorted(set(self.data_fractions) | {1.0}) if role in self.scaling_explainers else [1.0]
        )

    def stages(self) -> list[Stage]:
        """Every stage in the order a study runs them, the headline first (so a study stopped
        early has the comparisons that matter most): the corpora; self on the full data of every
        task, each after its learning-rate sweep (does the explainer learn at all), then the
        same for other; the no-vector control, the swapped roles, the random projection, then
        the scaling sweep's smaller fractions. A sweep comes right before its main run, which
        goes on from the chosen rate's checkpoint (so at most one task's sweep checkpoints are
        kept at a time)."""
        stages = [Stage(task) for task in self.tasks]
        for role in self.explainers():
            for task in self.tasks:
                stages += self.sweep_stages(swapped=False, tasks=[task], roles=[role])
                stages.append(Stage(task, role))
        vector_tasks = [task for task in self.tasks if get_task(task).vector_input]
        if "no-vector" in self.controls:
            stages += [
                Stage(task, role, variant="novector")
                for task in vector_tasks
                for role in self.explainers()
                if role in self.control_explainers
            ]
        for task in self.swapped:
            stages.append(Stage(task, swapped=True))
            for role in self.explainers():
                stages += self.sweep_stages(True, [task], [role])
                stages.append(Stage(task, role, swapped=True))
        if "random-projection" in self.controls:
            stages += [Stage(task, "self", variant="randproj") for task in vector_tasks]
        if "pretrained-projection" in self.controls:
            stages += [Stage(task, "other", variant="lstsq") for task in vector_tasks]
        stages += [
            Stage(task, role, fraction)
            for task in self.tasks
            for role in self.explainers()
            for fraction in self.fractions_for(role)
            if fraction < 1.0
        ]
        return stages

    def sweep_stages(self, swapped: bool, tasks=None, roles=None) -> list[Stage]:
        return [
            Stage(task, role, swapped=swapped, learning_rate=rate)
            for task in (tasks if tasks is not None else self.tasks)
            for role in (roles if roles is not None else self.explainers())
            for rate in self.learning_rates
        ]

    def sweep_losses(self, stage: Stage) -> dict[float, float | None]:
        """Each swept rate's lowest in-distribution validation loss for ``stage``'s explainer
        (task, role, roles swapped or not); None for a rate not trained yet."""
        losses = {}
        for rate in self.learning_rates:
            sweep = Stage(stage.task, stage.role, swapped=stage.swapped, learning_rate=rate)
            metrics = Location(self.folder) / sweep.name / "train_metrics.json"
            losses[rate] = metrics.read_json().get("best_loss") if metrics.exists() else None
        return losses

    def chosen_learning_rate(self, stage: Stage) -> float | None:
        """The swept rate of lowest in-distribution validation loss for ``stage``'s explainer;
        None before its sweep has finished."""
        losses = self.sweep_losses(stage)
        if not losses or None in losses.values():
            return None
        return min(losses, key=lambda rate: (losses[rate], rate))

    def run_config(
        self, stage: Stage | str, role: str | None = None, fraction: float = 1.0
    ) -> RunConfig:
        """The run config of one stage (or, given a task name, of the stage
        ``role``/``fraction``)."""
        if isinstance(stage, str):
            stage = Stage(stage, role, fraction)
        task = stage.task
        settings = {**self.overrides, **(self.tasks[task] or {})}
        if stage.swapped:
            settings.update(self.swapped[task] or {})
        # a task's own train.data_fraction is what its "100%" trains on; the sweep scales it
        budget = float(settings.pop("train.data_fraction", 1.0))
        settings.update(variant_overrides(stage.variant, self.vector_control))
        settings.update(self._rate_overrides(stage))
        pairs = [f"{k}={_yaml(v)}" for k, v in settings.items()]
        target = self.other_explainer if stage.swapped else self.target
        pairs += [
            f"task={task}",
            f"target={target}",
            f"output_dir={self.folder}",
            f"name={stage.name}",
        ]
        if stage.role is not None:
            pairs += [
                f"corpus_from={stage.corpus}",
                f"train.explainer={self.explainers(stage.swapped)[stage.role]}",
                f"train.data_fraction={_yaml(budget * stage.fraction)}",
                # the untrained model does not change with the data fraction or a control: score it
                # once
                f"evaluate.untrained_baseline={_yaml(stage.fraction == 1.0 and not stage.variant)}",
            ]
        config = load_config(self.base, pairs)
        if stage.role is None or stage.fraction == 1.0:
            return config
        # the scaling sweep's smaller sets get the full set's step budget (epochs x 1/fraction),
        # stopped by the same patience: each point is trained to convergence, not cut off after
        # the full set's epoch count, which on 1/16 of the rows is 1/16 of its steps
        epochs = math.ceil(config.train.epochs / stage.fraction)
        return dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=epochs))

    def _rate_overrides(self, stage: Stage) -> dict:
        """A sweep stage trains only, at its rate, for the sweep's budget, choosing by the
        in-distribution loss; an explainer's other stages take the rate its sweep chose."""
        if stage.learning_rate is not None:
            return {
                "train.learning_rate": stage.learning_rate,
                "train.epochs": self.sweep_epochs,
                "train.select_best": True,
                "train.patience": 0,
                # the chosen rate's main run goes on from it (selfexplain.study.warm_start)
                "train.keep_finished_checkpoints": True,
            }
        chosen = self.chosen_learning_rate(stage) if stage.role and self.learning_rates else None
        return {"train.learning_rate": chosen} if chosen is not None else {}


def variant_overrides(variant: str, vector_control: str) -> dict:
    """The run-config keys a control sets."""
    if variant == "novector":
        return {"train.vector_control": vector_control}
    if variant == "randproj":
        return {
            "train.projection": "always",
            "train.projection_init": "orthogonal",
            "train.freeze_projection": True,
        }
    if variant == "lstsq":
        return {"train.projection_init": "lstsq"}
    return {}


def run_name(task: str, role: str, fraction: float) -> str:
    return f"{task}-{role}-{round(fraction * 100)}"


def _yaml(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def packaged_studies() -> list[str]:
    return packaged_configs("study")


def load_study(name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> StudyConfig:
    """Read a study YAML; ``key=value`` overrides set study keys (``name=...``,
    ``data_fractions=[0.5,1]``) and any other dotted key becomes a run-config override for every run
    (``train.epochs=1``)."""
    path = resolve_config_path(name_or_path, kind="study")
    data = read_yaml_mapping(path, "study file")
    known = {f.name for f in dataclasses.fields(StudyConfig)}
    for item in overrides:
        study_key = item.partition("=")[0] in known
        key, value = parse_override(item, StudyConfig if study_key else RunConfig)
        if study_key:
            data[key] = value
        else:
            data.setdefault("overrides", {})[key] = value
    unknown = set(data) - known
    if unknown:
        raise ConfigError(
            f"unknown study keys {sorted(unknown)}; valid keys: {', '.join(sorted(known))}"
        )
    missing = {"name", "target", "other_explainer", "tasks"} - set(data)
    if missing:
        raise ConfigError(f"study file {path} lacks {sorted(missing)}")
    study = from_dict(StudyConfig, data)
    if not study.tasks or set(study.tasks) - TASKS:
        raise ConfigError(
            f"study key 'tasks': give a mapping of task -> overrides; tasks are {sorted(TASKS)}"
        )
    if not is_safe_name(study.name):
        raise ConfigError(f"study key 'name': {study.name!r} is not a safe name; {NAME_FIX}")
    if not study.output_dir.strip():
        raise ConfigError(
            "study key 'output_dir': give a folder or URI, e.g. runs (an empty one would write "
            "the study at the filesystem root)"
        )
    if not study.data_fractions or not all(0 < f <= 1 for f in study.data_fractions):
        raise ConfigError(
            "study key 'data_fractions': give fractions in (0, 1], e.g. [0.25, 0.5, 1.0]"
        )
    if set(study.scaling_explainers) - {"self", "other"}:
        raise ConfigError("study key 'scaling_explainers': use a list of self and/or other")
    if not study.control_explainers or set(study.control_explainers) - {"self", "other"}:
        raise ConfigError("study key 'control_explainers': use a list of self and/or other")
    if set(study.controls) - set(CONTROLS):
        raise ConfigError(f"study key 'controls': use a list of {', '.join(CONTROLS)}")
    _check_sweep(study)
    if study.vector_control not in ("zero", "shuffled"):
        raise ConfigError("study key 'vector_control': use zero or shuffled")
    if set(study.swapped) - set(study.tasks):
        raise ConfigError(
            f"study key 'swapped': name tasks of the study ({', '.join(study.tasks)}), each with "
            "overrides for the swapped target ({} for none)"
        )
    for stage in study.stages():  # every run config is valid before anything runs
        study.run_config(stage)
    return study


def _check_sweep(study: StudyConfig) -> None:
    rates = study.learning_rates
    if not all(isinstance(r, (int, float)) and 0 < r < 1 for r in rates) or len(set(rates)) < len(
        rates
    ):
        raise ConfigError(
            "study key 'learning_rates': give distinct rates in (0, 1), e.g. [3e-5, 1e-4, 3e-4], "
            "or [] for no sweep"
        )
    if study.sweep_epochs < 1:
        raise ConfigError("study key 'sweep_epochs': give 1 or more epochs per swept rate")
