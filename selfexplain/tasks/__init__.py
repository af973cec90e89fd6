"""Explanation tasks. Each is a small :class:`Task`: work items planned on the driver, ground truth
computed from the target model on a Ray Data actor, the explainer's question and answer in
words, and how answers are read back, compared with baselines and scored.

Job runners, training, evaluation, ``explain``, the config and the study only talk to this
protocol, never to a task module: adding a task is a module in this folder and one line of
:data:`REGISTRY`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import pyarrow as pa

from selfexplain.errors import InputError

# name -> "module:object". The only place that lists the tasks.
REGISTRY: dict[str, str] = {
    "ablation": "selfexplain.tasks.ablation:ABLATION",
    "hint": "selfexplain.tasks.hint:HINT_TASK",
    "patching": "selfexplain.tasks.patching:PATCHING",
    "features": "selfexplain.tasks.features:FEATURES",
}
TASK_NAMES: tuple[str, ...] = tuple(REGISTRY)
# name -> "module:class" of the task's generate options (``generate.<key>``), each in a light
# module of its own, so the config gathers them without importing a task's model code.
OPTIONS: dict[str, str] = {
    "ablation": "selfexplain.tasks.ablation_options:AblationOptions",
    "hint": "selfexplain.tasks.hint_options:HintOptions",
    "patching": "selfexplain.tasks.patching_options:PatchingOptions",
    "features": "selfexplain.tasks.features_options:FeaturesOptions",
}
TaskName = Literal[TASK_NAMES]  # type: ignore[valid-type]  # built from the registry: --help lists it


class Rejected(Exception):
    """A work item (or one of its rows) that cannot become ground truth. The job records it in the
    rejects table with this reason instead of crashing or dropping it silently."""


class QueryError(InputError):
    """A query (``selfexplain explain``) lacks what its task needs; the message names the field."""


@dataclass
class GroundTruthContext:
    """What a task's ground truth needs on an actor: the loaded target and the job's options."""

    model: Any
    tokenizer: Any
    target_name: str
    options: Any
    """The run's :class:`selfexplain.config.GenerateConfig`."""
    layers: list[int]
    """Target layers to use (``generate.layers`` with ``[]`` resolved to every layer)."""
    cache: dict = field(default_factory=dict)
    """Per-actor memo for work shared between items (e.g. activations of a text set)."""
    partial_rejects: list[str] = field(default_factory=list)
    """Reasons for parts of the current item that were dropped while the rest was kept; the job
    moves them to the rejects table after each item."""

    def reject_part(self, reason: str) -> None:
        self.partial_rejects.append(reason)


@dataclass(frozen=True)
class QueryContext:
    """What turning a user's query into a corpus-like row may need (``selfexplain explain``)."""

    target: Any
    """A function returning the loaded ``(model, tokenizer)`` of the target; called only by
    tasks whose queries need the target's activations or chat template."""
    tokenizer: Any
    """The explainer's tokenizer (the target's for a self-explainer)."""
    layers: tuple[int, ...] = ()
    """The layers the explainer was trained on (empty: not a vector explainer)."""
    width: int = 0
    """The width of the vectors the explainer reads (0: not a vector explainer)."""


@dataclass(frozen=True)
class ScoringContext:
    """What a task's baselines and scores may use besides the queries and the answers."""

    seed: int
    train_rows: list[dict]
    """The rows the explainer was trained on: all that a memorizing baseline may look at."""
    corpus: Any
    """The whole corpus (a pandas frame), e.g. every description as a retrieval distractor."""
    target_layers: int
    """How many decoder blocks the target has (a rule may split early from late layers)."""
    candidate_outputs: int = 0
    """Change tasks' candidate choice: how many of the training outputs (most common first) a
    query's candidates name (0 = every output seen in training)."""


class Task(Protocol):
    name: str
    vector_input: bool
    """Whether the explainer's query carries the row's ``vector`` as a continuous token."""
    query_templates: int
    """How many phrasings the query has (``row["template_variant"]`` picks one; 1 = fixed)."""
    held_out_by: tuple[str, ...]
    """The groups the held-out split can be made of, the default first; the keys of each work
    item's ``groups``."""
    unit_name: str
    """What one held-out unit is, in words (``prompt families``): the clusters intervals
    resample."""
    query_fields: dict[str, type | tuple[type, ...]]
    """The fields a ``selfexplain explain`` query of this task holds, with their types."""
    headline_metric: str
    """The one results key per task that headlines a report (the paper's metric)."""
    per_query_metric: str
    """The per-query outcome behind the headline (``predictions.parquet`` column prefix)."""
    answers_are_free_text: bool
    """Whether answers are free text (features); else every explainer is also scored by
    candidate choice, among :meth:`candidate_answers`."""
    selfie_baseline: bool
    """Whether the untrained target reading its own vector (SelfIE) is a baseline."""

    # --- ground truth -------------------------------------------------------------------
    def schema(self, d_model: int) -> pa.Schema:
        """The corpus schema; vector columns are ``fixed_size_list<float32>[d_model]``."""

    def work_items(self, config, tokenizer) -> list[dict]:
        """JSON-able work items in a deterministic order; each has ``groups``, the keys it can be
        held out by (``{"prompt": ...}``, ``{"entity": [...], "template": ...}``...). A list value
        names several groups (a pair's two entities): the item is kept only when all of them
        fall on the same side of the split."""

    def ground_truth(self, item: dict, context: GroundTruthContext) -> list[dict]:
        """Corpus rows (without ``split``) for one item; raises :class:`Rejected` for bad input."""

    def held_out_unit(self, row: dict) -> str:
        """The group a corpus row belongs to for resampling: rows of one unit share their input
        (a prompt family, a question, an entity pair, a feature), so intervals resample units."""

    def family(self, row: dict) -> str:
        """The family a row's results are also reported by, separately ("" when a task has one):
        features keep token-identity words apart from category concepts."""

    # --- the explainer's question and answer --------------------------------------------
    def format_query(self, row: dict) -> str:
        """The explainer's question about a row, ending where the answer begins."""

    def format_answer(self, row: dict) -> str:
        """The answer the explainer is trained to give (with a leading space)."""

    def parse_answer(self, text: str) -> Any:
        """What an answer says (None when it cannot be read); baselines answer in the same type."""

    def query_row(self, query: dict, context: QueryContext) -> dict:
        """A row that :meth:`format_query` can ask, from a user's query holding
        :attr:`query_fields`; raises :class:`QueryError` naming a bad field."""

    # --- evaluation -----------------------------------------------------------------------
    def baselines(self, rows: list[dict], context: ScoringContext) -> dict[str, list]:
        """Parsed answers of the systems that need no explainer, by system name."""

    def candidate_answers(
        self, rows: list[dict], context: ScoringContext
    ) -> list[list[str]] | None:
        """Per query, the well-formed answers every explainer is also scored by choosing among
        (None: free text). They may not depend on anything the query hides."""

    def score(
        self, rows: list[dict], answers: dict[str, list], context: ScoringContext
    ) -> dict[str, dict]:
        """Aggregate scores with cluster-bootstrap intervals, per system."""

    def per_query(self, rows: list[dict], answers: dict[str, list]) -> dict[str, list]:
        """Per-query outcomes, ``"<metric>: <system>"`` columns (systems are paired on these)."""


def task_option_classes() -> list[type]:
    """Every task's generate-options dataclass, in registry order. Each has ``rules()``: its
    checks as (valid, key, fix)."""
    classes = []
    for name in TASK_NAMES:
        module, attribute = OPTIONS[name].split(":")
        classes.append(getattr(importlib.import_module(module), attribute))
    return classes


def get_task(name: str) -> Task:
    if name not in REGISTRY:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(REGISTRY)}")
    module, attribute = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), attribute)
