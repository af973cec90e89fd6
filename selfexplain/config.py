"""Typed, documented configuration: YAML files plus `key=value` overrides, validated up front.

A run is described by one :class:`RunConfig`. Packaged configs live in ``selfexplain/configs/``
and are found by name (``demo``, ``tiny``); any other argument is read as a path. Every field
carries a docstring; an unknown key or a bad value raises :class:`ConfigError` naming the key
and the fix, before any output is written.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import inspect
import json
import math
import os
import re
import sys
import types
import typing
import unicodedata
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from selfexplain.errors import ConfigError
from selfexplain.inputs import kind_of
from selfexplain.storage import Location
from selfexplain.tasks import TASK_NAMES, TaskName, get_task, task_option_classes
from selfexplain.yaml_values import DuplicateKeyError, as_written, load_yaml

# Enumerated values: `--help` lists the choices, and a value outside them is refused by name.
HeldOutBy = Literal[
    "auto",
    "family",
    "prompt",
    "question",
    "subject",
    "entity",
    "template",
    "relation",
    "feature",
    "kind",
]


# Run names become folder names and URI parts: a safe set only (no '.', '..', '/', spaces).
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
NAME_FIX = "use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"


@dataclass
class SharedGenerateOptions:
    """Ground-truth generation: a Ray Data job over work items (prompts, prompt pairs or
    features), written as Parquet shards. The keys every task shares; each task adds its own
    (``tasks/<name>_options.py``), and :data:`GenerateConfig` holds them all."""

    max_items: int = 0
    """Use at most this many work items (prompts, pairs or features; 0 = all). Prompts are taken
    evenly spread over the prompt file, so a subset spans many template families."""
    held_out_fraction: float = 0.2
    """Fraction of groups held out for evaluation (see ``held_out_by``)."""
    held_out_by: HeldOutBy = "auto"
    """What the held-out split is made of, so evaluation measures generalization to new queries:
    ``family`` (prompts a word or two apart, the default) or ``prompt`` (ablation), ``question`` or
    ``entity`` or ``subject`` (hint), ``entity`` (a pair is kept only when both its entities fall on
    one side), ``template`` or ``relation`` (patching), ``feature`` or ``kind`` (features). ``auto``
    picks the first of these the task knows."""
    layers: list[int] = field(default_factory=list)
    """patching and features: target layers (block indices) to use; empty = every layer."""
    max_tokens: int = 256
    """Inputs that tokenize to more tokens than this are rejected (recorded, never silently
    lost)."""
    items_per_shard: int = 16
    """Work items per Parquet shard: the unit of work for one actor call and of resume."""
    num_actors: int = 1
    """Ray Data actors, each loading the target model once."""
    cpus_per_actor: float = 1.0
    """Logical CPUs reserved per actor."""
    gpus_per_actor: float = 0.0
    """GPUs per actor (0 = run on CPU). Fractions share a GPU between actors."""
    max_actor_restarts: int = 3
    """Times a crashed actor is restarted (its unfinished shard rerun) before the job fails."""


def _generate_config_class() -> type:
    """``generate``: the shared keys, then each task's own, flat (``generate.questions``)."""
    bases = (*reversed(task_option_classes()), SharedGenerateOptions)  # shared keys list first
    namespace = {
        "__module__": __name__,
        "__qualname__": "GenerateConfig",
        "__doc__": SharedGenerateOptions.__doc__,
    }
    return dataclass(type("GenerateConfig", bases, namespace))  # fmt: skip


GenerateConfig = _generate_config_class()


@dataclass
class TrainConfig:
    """Explainer fine-tuning: Ray Train TorchTrainer running DeepSpeed."""

    explainer: str = "self"
    """Explainer model: ``self`` (the target explains itself), an embedded name, an HF
    directory or a .gguf file."""
    epochs: int = 1
    """Passes over the training split."""
    learning_rate: float = 5e-5
    """Peak AdamW learning rate (the paper used 5e-5)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    batch_size: int = 8
    """Examples per optimizer step per worker (micro-batch x gradient accumulation)."""
    grad_accum: int = 1
    """Gradient accumulation steps; micro-batch = batch_size / grad_accum."""
    max_length: int = 500
    """Rows whose query + answer exceed this many tokens of the *target's* tokenizer are left out
    of training and of evaluation alike (one filter for every explainer, so self and other see
    the same rows; 500 as in the paper)."""
    zero_stage: int = -1
    """DeepSpeed ZeRO stage: 0, 1, 2 or 3; -1 (auto) picks 0 for one worker (on one rank ZeRO only
    adds copies: +69% step time for ZeRO-2 vs +23% for ZeRO-0 over plain torch, measured) and 2 for
    several."""
    offload: bool = False
    """ZeRO-3 only: offload parameters and optimizer state to CPU memory."""
    gradient_clipping: float = 1.0
    """Clip the global gradient norm to this value (0 = off)."""
    warmup_steps: int = 10
    """Linear learning-rate warmup steps."""
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    """After the warm-up: ``cosine`` decay to zero over the run, or ``constant`` (the paper's)."""
    length_buckets: bool = True
    """Batch examples of similar length together (within windows of the epoch's shuffled order),
    so short examples do not pay for padding to a long one."""
    select_best: bool = False
    """Export the weights of the validation (every ``validate_every`` steps, else each epoch's
    end) with the lowest in-distribution loss rather than the last; never chosen by held-out
    loss. Needs ``in_distribution_holdout`` > 0 and validation."""
    patience: int = 0
    """With ``select_best``: stop after this many validations in a row without a new best (0 =
    train every epoch). With it, ``epochs`` is a budget and training runs to convergence."""
    num_workers: int = 1
    """Ray Train workers (data-parallel ranks)."""
    use_gpu: bool = False
    """Train on GPUs (NCCL); CPU training uses gloo."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """``auto``: bf16 on GPUs (DeepSpeed's bf16 mode), fp32 on CPU. ``bf16`` on CPU runs the
    forward and backward under bf16 autocast with fp32 master weights (1.76x the tokens/s of fp32
    for SmolLM2-135M on an avx512_bf16 CPU, measured by ``make bench``)."""
    gpu_memory_gib: float = 80.0
    """Memory of each training GPU (80 for an 80 GB A100 or H100). GPU runs are checked against
    it before Ray starts: a run whose estimate (model states, activations; see
    ``selfexplain/train/memory.py``) exceeds it is refused with the setting to change."""
    gradient_checkpointing: bool = False
    """Recompute each decoder layer's activations in the backward pass instead of keeping them:
    less memory (what lets long sequences or large micro-batches fit a GPU), about a third more
    compute."""
    cpus_per_worker: float = 1.0
    """Logical CPUs reserved per train worker. Keep some free for Ray Data streaming."""
    torch_threads: int = 0
    """torch intra-op threads per worker (0 = CPU cores / workers)."""
    projection: Literal["auto", "always", "never"] = "auto"
    """Vector tasks: learn a linear map per target layer from the target's vectors into the
    explainer's embedding space: ``auto`` (only when the hidden sizes differ), ``always`` or
    ``never``."""
    projection_learning_rate: float = 0.0
    """Learning rate of the projection (0 = the model's ``learning_rate``). After rescaling the
    vectors at the token scale, a separate, higher rate is not needed."""
    projection_init: Literal["default", "orthogonal", "lstsq"] = "default"
    """How the projection starts: ``default`` (the identity for equal widths, else random),
    ``orthogonal`` (a random orthogonal map) or ``lstsq`` (a least-squares fit between the
    target's and the explainer's embeddings of the tokens both vocabularies hold: the paper's
    "pre-trained projection")."""
    freeze_projection: bool = False
    """Keep the projection at its starting map (with ``projection=always`` and
    ``projection_init=orthogonal``: the target reading its own vectors in a scrambled basis)."""
    vector_control: Literal["none", "zero", "shuffled"] = "none"
    """Vector tasks, a control: withhold the vector in training and scoring alike, as zeros
    (``zero``) or as another query's vector of the same layer (``shuffled``). Scored against the
    same explainer with its vectors, it gives "gain from the vector"."""
    rescale_vectors: bool = True
    """Vector tasks: scale each injected vector to the mean norm of the explainer's looked-up
    token embeddings (the scale of the tokens around it)."""
    tensorboard: bool = True
    """Write TensorBoard scalars (loss, learning rate, tokens/s) to ``<run>/tensorboard`` (local
    runs)."""
    keep_checkpoints: int = 1
    """Checkpoints kept in storage (the newest ones); a rerun resumes from the last."""
    keep_finished_checkpoints: bool = False
    """Keep the checkpoints of a finished run. By default they are deleted once the export is
    written: a finished run is reused from its export and never resumes from them, and they are
    large (weights and optimizer state: 1.6 GB for SmolLM2-135M, 4.1 GB for Gemma-3-270M; a
    study of 18 runs kept 46 GB). True keeps them, e.g. to restore the optimizer state by hand."""
    checkpoint_every: int = 0
    """Also checkpoint every N optimizer steps inside an epoch (0 = at each epoch's end only).
    Resume is step-exact either way: the interrupted epoch's first steps are skipped, not redone."""
    max_failures: int = 0
    """Worker failures Ray Train recovers from by restarting from the last checkpoint."""
    in_distribution_holdout: float = 0.1
    """Fraction of training-split rows kept out of training and scored as *in-distribution*
    queries (their prompts/concepts/entities are seen in training), next to the held-out split."""
    in_distribution_by: Literal["row", "group"] = "row"
    """What the in-distribution draw keeps out: single rows (``row``: a query's concept, entity or
    prompt family is seen in training), or whole held-out units of the training split (``group``:
    every row of a feature, entity pair or prompt family together). ``group`` for features over
    several layers: a concept trained on at one layer and asked at another has the same
    description, so row-level queries, and the loss that selects checkpoints and learning rates
    on them, reward memory."""
    validation_examples: int = 64
    """Validation: the answer loss on up to this many held-out and in-distribution queries,
    logged and reported (0 = no validation)."""
    validate_every: int = 0
    """Validate every N optimizer steps (0 = at the end of each epoch only)."""
    data_fraction: float = 1.0
    """Train on this fraction of the training rows (nested: the 25% rows are inside the 50%);
    the study's data-scaling sweep varies it."""
    lora_rank: int = 0
    """LoRA (peft): adapter rank on the explainer's linear layers, base weights frozen; 0 = full
    fine-tuning. The export merges the adapters, so it loads like any fine-tuned model."""
    lora_alpha: float = 16.0
    """LoRA scaling numerator (the update is scaled by lora_alpha / lora_rank)."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA path."""
    lora_target_modules: str = "all-linear"
    """Modules that get adapters: ``all-linear`` or comma-separated names (``q_proj,v_proj``)."""
    mix: dict[str, float] = field(default_factory=dict)
    """Task mixing: train one explainer on the corpora of several runs (names in output_dir), each
    with its share of every epoch, e.g. ``{demo-features: 2, demo-patching: 1, demo-ablation: 1}``.
    Each corpus brings its own task. Empty = this run's own corpus (or ``corpus_from``'s)."""

    @property
    def zero(self) -> int:
        """The ZeRO stage used: ``zero_stage``, with auto (-1) resolved by the worker count."""
        if self.zero_stage >= 0:
            return self.zero_stage
        return 0 if self.num_workers == 1 else 2


@dataclass
class EvaluateConfig:
    """Scoring the explainer on held-out queries against baselines."""

    max_examples: int = 0
    """Evaluate at most this many held-out examples (0 = all), sampled deterministically."""
    batch_size: int = 32
    """Queries decoded together."""
    max_new_tokens: int = 0
    """Generated tokens per answer (0 = the longest ground-truth answer of the corpus in the
    explainer's tokenizer, plus 4: a budget that fits real descriptions and the change form)."""
    untrained_baseline: bool = True
    """Also score the explainer before fine-tuning (zero-shot), the same two ways as the trained
    one."""
    candidate_choice: bool = True
    """Change tasks: score every explainer (trained and untrained) twice: by greedy decoding (the
    headline, as in the paper) and by the candidate answer it finds most likely, among one fixed
    set per query that depends on nothing the query hides (an untrained model's free text rarely
    takes the answer form, so its greedy score is near 0)."""
    candidate_outputs: int = 16
    """Candidate choice: how many of the new outputs seen in training, most common first, the
    "change to <<<y>>>" candidates name (0 = every one). Still label-free; each candidate costs a
    continuation per query (every one of the demo's 172 would cost about 15 minutes a system on
    2 cores), and a query whose new output is not among them is out of reach for every system."""
    selfie_scales: list[float] = field(default_factory=lambda: [1.0, 5.0, 10.0, 25.0, 50.0])
    """features, self-explainer runs with ``untrained_baseline``: the SelfIE baseline reads the
    unit vector times each of these scales and reports the best scale (an upper bound, as in the
    paper); [] = off."""
    explainer: str = ""
    """Score this exported explainer folder (local or URI) instead of the run's own, e.g. one
    trained on concepts, scored on a SAELens/Neuronpedia feature set generated in this run."""


@dataclass
class RayConfig:
    """The local Ray session used when no cluster is given."""

    num_cpus: int = 4
    """Logical CPUs for a local cluster. More than the physical cores on purpose: Ray Train
    workers and Ray Data actors reserve CPUs, and on 2 cores they would otherwise starve each
    other and `fit()` would hang."""
    address: str = ""
    """Connect to this cluster (``auto`` or ``ray://...``); empty starts a local one."""
    dashboard: bool = False
    """Start Ray's dashboard with a local cluster: its web UI (http://127.0.0.1:8265) and the
    state API (``ray list actors``, ``ray.util.state``). Off unless asked: its dozen processes
    wake hundreds of times a second beside the training threads. On 2 cores, one-worker training
    ran 8% faster with them and Ray Data's idle actors left out (measured on 2 cores). A
    cluster joined by address keeps the dashboard it was started with."""


@dataclass
class StorageConfig:
    """Where a run's outputs live, as seen from every node of the cluster."""

    shared_filesystem: bool = False
    """A local ``output_dir`` is on a filesystem every node mounts at the same path (NFS, EFS,
    Lustre...). Without it a run on a cluster of several nodes refuses a local ``output_dir``:
    each node would write its shards and checkpoints to its own disk."""


@dataclass
class RunConfig:
    """One experiment: a target model, its ground truth, an explainer and its evaluation."""

    name: str = "demo"
    """Run name; outputs go to ``<output_dir>/<name>/``. Rerunning a name reuses finished stages."""
    output_dir: str = "runs"
    """Root folder for all runs: a local path or a URI of any pyarrow filesystem (s3://bucket/runs)."""
    target: str = "smollm2-135m"
    """Target model: an embedded name (smollm2-135m, gemma3-270m, tiny-llama), an HF directory
    or a .gguf file."""
    task: TaskName = TASK_NAMES[0]
    """Explanation task: ``ablation`` (input ablation), ``hint`` (hint removal), ``patching``
    (activation patching) or ``features`` (feature descriptions); patching and features hand their
    vector to the explainer as a continuous token."""
    seed: int = 0
    """Seed for splits, sampling, model init and training."""
    templates: Literal["selfexplain", "paper"] = "selfexplain"
    """How the vector tasks' queries are phrased: ``selfexplain`` (configs/prompts/templates.yaml)
    or ``paper``, the paper's own templates (configs/prompts/paper.yaml). The trained explainer
    records its set, and is scored and asked in it."""
    corpus_from: str = ""
    """Use the corpus of this run (a name in ``output_dir``) instead of this run's own, so several
    explainers train and are scored on identical data; empty = ``<run>/corpus``."""
    trust_remote_code: bool = False
    """Let transformers run Python shipped inside a model folder. Off: only turn it on for models
    whose code you have read."""
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)

    def __post_init__(self) -> None:
        _check_choices(self)
        _check(is_safe_name(self.name), "name", f"{self.name!r} is not a safe run name; {NAME_FIX}")
        _check_finite(self)
        rules = (
            _run_rules(self)
            + _generate_rules(self.generate, self.task)
            + _train_rules(self.train)
            + _train_input_rules(self.train, self.corpus_from)
            + _evaluate_rules(self.evaluate)
        )
        for ok, key, fix in rules:
            _check(ok, key, fix)

    @property
    def held_out_by(self) -> str:
        """The group the held-out split is made of, ``auto`` resolved for this task."""
        return (
            get_task(self.task).held_out_by[0]
            if self.generate.held_out_by == "auto"
            else self.generate.held_out_by
        )

    @property
    def explainer_ref(self) -> str:
        """The explainer's model reference: the target itself for ``self``."""
        return self.target if self.train.explainer == "self" else self.train.explainer

    @property
    def run_dir(self) -> Location:
        return Location(self.output_dir) / self.name

    @property
    def corpus_dir(self) -> Location:
        """Where the ground-truth corpus is read and written: this run's, or ``corpus_from``'s."""
        return Location(self.output_dir) / (self.corpus_from or self.name) / "corpus"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self, *sections: str) -> str:
        """A short hash of the named sections (or everything), to tell if a stage's inputs changed.
        Keys that cannot change a result (:data:`OPERATIONAL_KEYS`) are left out: a rerun that
        only keeps more checkpoints or logs elsewhere resumes instead of being refused."""
        data = self.to_dict()
        for dotted in OPERATIONAL_KEYS:
            section, key = dotted.split(".")
            data[section].pop(key, None)
        for dotted in KEYS_ADDED_AFTER_FINGERPRINTS:
            section, key = dotted.split(".")
            default = getattr(RunConfig.__dataclass_fields__[section].default_factory(), key)
            if data[section][key] == _plain(default):
                del data[section][key]
        if sections:
            data = {key: data[key] for key in sections}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


OPERATIONAL_KEYS = frozenset(
    {
        # where and how often training writes checkpoints and logs, and how it survives failures:
        # resume is step-exact and validation never touches the weights, so none changes the result
        "train.tensorboard",
        "train.keep_checkpoints",
        "train.keep_finished_checkpoints",
        "train.checkpoint_every",
        "train.max_failures",
        "train.validate_every",
        "train.cpus_per_worker",
        "train.torch_threads",
        # where a local cluster's processes run and what they show
        "ray.num_cpus",
        "ray.address",
        "ray.dashboard",
    }
)


# Keys added to the config after runs in the field were fingerprinted. Each is hashed only when set
# away from its default, so a run started before the key existed keeps its fingerprint, and an
# interrupted training or corpus resumes under the newer code instead of being refused as "made
# with other settings". Every new section key goes here (tests/test_config.py checks); a changed
# default of an older key still changes the fingerprint, as it should.
KEYS_ADDED_AFTER_FINGERPRINTS: frozenset[str] = frozenset({"train.in_distribution_by"})


def _plain(value: Any) -> Any:
    """A default as ``to_dict`` gives it (dataclasses as dicts)."""
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


TASKS = set(TASK_NAMES)


# Upper bounds that catch a typo (an extra zero or three) before it runs for days.
MAX_COUNT = 100_000_000
MAX_NEW_TOKENS = 1024


def is_printable(text: str) -> bool:
    """No control characters (a newline or tab pasted into a path)."""
    return not any(unicodedata.category(char) == "Cc" for char in text)


def is_safe_name(name: str) -> bool:
    return isinstance(name, str) and SAFE_NAME.fullmatch(name) is not None


def _check_choices(config, prefix: str = "") -> None:
    """Every ``Literal`` field holds one of its choices (a dataclass built directly skips
    ``from_dict``)."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value, kind = getattr(config, f.name), hints[f.name]
        if dataclasses.is_dataclass(value):
            _check_choices(value, f"{prefix}{f.name}.")
        elif typing.get_origin(kind) is Literal:
            _check(
                value in typing.get_args(kind),
                f"{prefix}{f.name}",
                f"{value!r} is not one of {', '.join(typing.get_args(kind))}",
            )


def _check_finite(config, prefix: str = "") -> None:
    """No NaN or infinity in any float (a NaN passes every ``x > 0`` check by failing it
    silently)."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            _check_finite(value, f"{key}.")
        values = (
            value.values()
            if isinstance(value, dict)
            else value
            if isinstance(value, list)
            else [value]
        )
        _check(
            all(not isinstance(v, float) or math.isfinite(v) for v in values),
            key,
            "use finite numbers",
        )


Rule = tuple[bool, str, str]
"""(the value is valid, the key, the fix): one check of :meth:`RunConfig.__post_init__`."""
RETRY_FIX = "use a count >= 0 (Ray's -1, retry forever, would hide a crash that repeats)"


def _run_rules(config: RunConfig) -> list[Rule]:
    return [
        (bool(config.output_dir.strip()), "output_dir", "give a folder or URI, e.g. runs or s3://bucket/runs"),
        (0 <= config.seed < 2**32, "seed", "use an integer in [0, 2**32)"),
        (not config.corpus_from or is_safe_name(config.corpus_from), "corpus_from",
         f"give the name of a run in output_dir; {NAME_FIX}"),
        (bool(config.target.strip()), "target",
         "name the model to explain: smollm2-135m, a model folder, a .gguf file or a hub id"),
        (is_printable(config.output_dir), "output_dir",
         "remove the control characters (a newline, a tab) from the path"),
        (2 <= config.ray.num_cpus <= MAX_LOGICAL_CPUS, "ray.num_cpus",
         f"use 2 to {MAX_LOGICAL_CPUS} (logical CPUs of the local cluster; a few times the cores)"),
    ]  # fmt: skip


# Queries decoded at once: more only spends memory (and larger batches pad more).
MAX_EVAL_BATCH = 4096

# A local cluster's logical CPUs: more than cores keeps Ray Data streaming beside training, but
# thousands would start thousands of workers on one machine.
MAX_LOGICAL_CPUS = max(64, 8 * (os.cpu_count() or 1))


def _generate_rules(g: GenerateConfig, task: str) -> list[Rule]:
    groups = get_task(task).held_out_by
    return [
        (g.max_actor_restarts >= 0, "generate.max_actor_restarts", RETRY_FIX),
        (g.cpus_per_actor > 0 and g.gpus_per_actor >= 0, "generate.cpus_per_actor",
         "use cpus_per_actor > 0 and gpus_per_actor >= 0"),
        (0 <= g.max_items <= MAX_COUNT, "generate.max_items",
         f"use 0 (all) or a count up to {MAX_COUNT:,}"),
        (0.0 < g.held_out_fraction < 1.0, "generate.held_out_fraction", "use a value in (0, 1)"),
        (g.items_per_shard >= 1, "generate.items_per_shard", "use 1 or more"),
        (g.num_actors >= 1, "generate.num_actors", "use 1 or more"),
        (g.held_out_by in groups + ("auto",), "generate.held_out_by",
         f"task {task} can hold out by {', '.join(groups)} or auto"),
        (all(isinstance(x, int) and x >= 0 for x in g.layers)
         and len(set(g.layers)) == len(g.layers), "generate.layers",
         "give distinct block indices, e.g. [0, 4, 8], or [] for all"),
        (g.max_tokens >= 2, "generate.max_tokens", "use 2 or more"),
    ] + [rule for options in task_option_classes() for rule in options.rules(g)]  # fmt: skip


def _train_rules(t: TrainConfig) -> list[Rule]:
    return [
        (t.max_failures >= 0, "train.max_failures", RETRY_FIX),
        (t.cpus_per_worker > 0 and t.torch_threads >= 0, "train.cpus_per_worker",
         "use cpus_per_worker > 0 and torch_threads >= 0 (0 = cores / workers)"),
        (t.batch_size >= 1, "train.batch_size", "use 1 or more"),
        (t.weight_decay >= 0 and t.gradient_clipping >= 0 and t.warmup_steps >= 0,
         "train.weight_decay",
         "use weight_decay, gradient_clipping and warmup_steps >= 0"),
        (not (t.freeze_projection and t.projection == "never"), "train.freeze_projection",
         "a frozen projection needs one: set train.projection=always"),
        (t.projection_learning_rate >= 0, "train.projection_learning_rate",
         "use 0 (the model's learning rate) or a positive number"),
        (t.zero_stage in (-1, 0, 1, 2, 3), "train.zero_stage", "use 0, 1, 2 or 3, or -1 (auto)"),
        (not t.offload or t.zero_stage == 3, "train.offload", "offload needs train.zero_stage=3"),
        (not t.select_best or (t.in_distribution_holdout > 0 and t.validation_examples > 0),
         "train.select_best", "choosing the best epoch needs in-distribution validation: set "
         "train.in_distribution_holdout > 0 and train.validation_examples > 0"),
        (t.patience >= 0 and (not t.patience or t.select_best), "train.patience",
         "use 0, or a number of validations together with train.select_best=true"),
        (t.num_workers >= 1, "train.num_workers", "use 1 or more"),
        (t.epochs >= 1, "train.epochs", "use 1 or more"),
        (0 < t.learning_rate <= 1, "train.learning_rate",
         "use a positive number up to 1 (the paper's is 5e-5)"),
        (bool(t.explainer.strip()), "train.explainer",
         "use self, other, or a model (an embedded name, a folder, a .gguf file, a hub id)"),
        (t.grad_accum >= 1 and t.batch_size % t.grad_accum == 0, "train.grad_accum",
         f"use a divisor of train.batch_size={t.batch_size}"),
        (t.checkpoint_every >= 0, "train.checkpoint_every",
         "use 0 (epoch ends only) or a step count"),
        (t.keep_checkpoints >= 1, "train.keep_checkpoints", "use 1 or more"),
    ]  # fmt: skip


def _train_input_rules(t: TrainConfig, corpus_from: str) -> list[Rule]:
    """The rows a run trains on, and how: lengths, held-out shares, the mix, LoRA."""
    return [
        (t.max_length >= 16, "train.max_length", "use 16 or more"),
        (0.0 <= t.in_distribution_holdout < 1.0, "train.in_distribution_holdout",
         "use a value in [0, 1)"),
        (t.validation_examples >= 0 and t.validate_every >= 0, "train.validation_examples",
         "use 0 or more for train.validation_examples and train.validate_every"),
        (0.0 < t.data_fraction <= 1.0, "train.data_fraction", "use a value in (0, 1]"),
        (all(is_safe_name(run) and ratio > 0 for run, ratio in t.mix.items()), "train.mix",
         "map run names in output_dir to positive ratios, e.g. {a-features: 1, a-ablation: 1}; "
         f"names: {NAME_FIX}"),
        (not (t.mix and corpus_from), "train.mix",
         "a mixed run reads the corpora train.mix names; leave corpus_from empty"),
        (t.gpu_memory_gib > 0, "train.gpu_memory_gib", "use the GPUs' memory in GiB, e.g. 80"),
        (t.lora_rank >= 0 and t.lora_alpha > 0 and 0.0 <= t.lora_dropout < 1.0, "train.lora_rank",
         "use lora_rank >= 0 (0 = full fine-tuning), lora_alpha > 0 and lora_dropout in [0, 1)"),
        (not (t.lora_rank and t.zero_stage == 3), "train.lora_rank",
         "LoRA runs with train.zero_stage 0-2 (its export merges adapters from whole weights); "
         "its optimizer state is small, so ZeRO-2 suffices, or set lora_rank=0 for ZeRO-3"),
    ]  # fmt: skip


def _evaluate_rules(e: EvaluateConfig) -> list[Rule]:
    return [
        (0 <= e.max_examples <= MAX_COUNT, "evaluate.max_examples",
         f"use 0 (all) or a count up to {MAX_COUNT:,}"),
        (e.max_new_tokens <= MAX_NEW_TOKENS, "evaluate.max_new_tokens",
         f"use 0 (fit the longest answer) or at most {MAX_NEW_TOKENS}"),
        (all(scale > 0 for scale in e.selfie_scales), "evaluate.selfie_scales",
         "use positive scales, e.g. [1, 5, 10, 25, 50], or [] for no SelfIE baseline"),
        (e.candidate_outputs >= 0, "evaluate.candidate_outputs",
         "use 0 (every output seen in training) or a positive count"),
        (1 <= e.batch_size <= MAX_EVAL_BATCH and e.max_new_tokens >= 0, "evaluate",
         f"use a batch_size of 1 to {MAX_EVAL_BATCH} and max_new_tokens >= 0 (0 = fit the "
         "longest answer)"),
    ]  # fmt: skip


def _check(ok: bool, key: str, fix: str) -> None:
    if not ok:
        raise ConfigError(f"config key '{key}': {fix}")


def packaged_configs(kind: str = "config") -> list[str]:
    """Names of the packaged run configs (``kind="config"``) or studies (``kind="study"``)."""
    folder = resources.files("selfexplain") / PACKAGED[kind]
    names = (p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))
    return sorted(name for name in names if name not in NOT_RUN_CONFIGS)


# Where packaged YAML files of each kind live inside the package.
PACKAGED = {"config": "configs", "study": "configs/studies"}
# YAML beside the run configs that is not one: Ray Data's logging setup, a job's runtime env.
NOT_RUN_CONFIGS = frozenset({"ray_data_logging", "runtime_env"})


def resolve_config_path(name_or_path: str, kind: str = "config") -> Path:
    """A packaged config (or study) by name (``demo``) or a YAML path."""
    path = Path(name_or_path)
    packaged = resources.files("selfexplain") / PACKAGED[kind] / f"{name_or_path}.yaml"
    if path.suffix not in (".yaml", ".yml") and path.is_dir() and packaged.is_file():
        return Path(str(packaged))  # a packaged name, whatever folder of that name is here
    if path.suffix in (".yaml", ".yml") or path.exists():
        if path.exists() and not path.is_file():
            raise ConfigError(
                f"{kind} file {path} is {kind_of(path)}, not a file; give a YAML path or one of "
                f"{packaged_configs(kind)}"
            )
        if not path.is_file():
            raise ConfigError(
                f"{kind} file {path} not found; give a YAML path or one of {packaged_configs(kind)}"
            )
        return path
    if not packaged.is_file():
        raise ConfigError(
            f"no {kind} named {name_or_path!r}; give a YAML path or one of {packaged_configs(kind)}"
        )
    return Path(str(packaged))


def read_yaml_mapping(path: Path, what: str) -> dict:
    """A YAML file that must hold a mapping of keys; errors name the file."""
    try:
        data = load_yaml(path.read_text(encoding="utf-8")) or {}
    except DuplicateKeyError as err:
        raise ConfigError(
            f"{what} {path}:{err.line}: key {err.key!r} appears twice (the second would replace "
            "the first); keep one"
        ) from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(
            f"{what} {path} is not valid YAML ({' '.join(str(err).split())})"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a mapping of keys, not {type(data).__name__}")
    return data


def load_config(name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a YAML config and apply ``section.key=value`` overrides (values parsed as YAML)."""
    data = read_yaml_mapping(resolve_config_path(name_or_path), "config file")
    for item in overrides:
        key, value = parse_override(item, RunConfig)
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"config key '{key}': '{part}' is not a section")
        set_key(node, leaf, value, field_kind(RunConfig, key))
    return from_dict(RunConfig, data)


def parse_override(item: str, root: type) -> tuple[str, Any]:
    """``key=value`` -> (key, value). A key typed as text gets the text as written (``name=
    2024.10`` stays "2024.10", ``name=trial #2`` keeps its "#"); quote it to have YAML read it.
    Any other value is YAML."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {item!r} is not key=value; write e.g. train.epochs=2")
    quoted = len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\""
    if _is_text(field_kind(root, key)) and not quoted:
        return key, raw
    try:
        return key, load_yaml(raw) if raw else ""
    except yaml.YAMLError:
        raise ConfigError(
            f"override {item!r}: the value is not valid YAML; quote text, e.g. key='a: b'"
        ) from None


def set_key(node: dict, leaf: str, value: Any, kind: Any) -> None:
    """``node[leaf] = value``, except that a mapping given for a section merges into it (``train=
    {epochs: 2}`` changes the epochs and keeps every other train setting)."""
    current = node.get(leaf)
    if dataclasses.is_dataclass(kind) and isinstance(value, dict) and isinstance(current, dict):
        for key, item in value.items():
            set_key(current, key, item, field_kind(kind, key))
    else:
        node[leaf] = value


def field_kind(root: type, dotted: str) -> Any:
    """The declared type of a dotted key under the dataclass ``root``; None for an unknown key."""
    kind: Any = root
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(kind):
            return None
        kind = typing.get_type_hints(kind).get(part)
    return kind


def _is_text(kind: Any) -> bool:
    options = (
        typing.get_args(kind)
        if typing.get_origin(kind) in (typing.Union, types.UnionType)
        else (kind,)
    )
    return str in options


def from_dict(cls: type, data: dict[str, Any], prefix: str = ""):
    """Build a dataclass from a nested dict, checking every key and value type."""
    if not isinstance(data, dict):
        raise ConfigError(f"config key '{prefix.rstrip('.')}' must be a section (a mapping)")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(
                f"unknown config key '{full}'; valid keys here: {', '.join(sorted(names))}"
            )
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            kwargs[key] = from_dict(kind, value, prefix=f"{full}.")
        else:
            kwargs[key] = _coerce(value, kind, full)
    return cls(**kwargs)


def _coerce(value: Any, kind: Any, key: str) -> Any:
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        for option in typing.get_args(kind):
            if option is type(None) and value is None:
                return None
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key '{key}': {value!r} is not a {kind}")
    if typing.get_origin(kind) is dict:
        if isinstance(value, dict):
            key_kind, value_kind = typing.get_args(kind)
            return {
                _coerce(k, key_kind, key): _coerce(v, value_kind, key) for k, v in value.items()
            }
        raise ConfigError(
            f"config key '{key}': expected a mapping such as {{a: 1, b: 2}}, got {value!r}"
        )
    if typing.get_origin(kind) is list:
        if isinstance(value, (list, tuple)):
            (item_kind,) = typing.get_args(kind)
            return [_coerce(item, item_kind, key) for item in value]
        raise ConfigError(f"config key '{key}': expected a list such as [0, 4, 8], got {value!r}")
    if typing.get_origin(kind) is Literal:
        if value in typing.get_args(kind):
            return value
        raise ConfigError(
            f"config key '{key}': {value!r} is not one of "
            f"{', '.join(map(str, typing.get_args(kind)))}"
        )
    if kind is dict:
        if value is None or isinstance(value, dict):
            return value or {}
        raise ConfigError(
            f"config key '{key}': expected a mapping such as {{key: value}}, got {value!r}"
        )
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "2e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(as_written(value))
    else:
        return value
    raise ConfigError(f"config key '{key}': expected {kind.__name__}, got {value!r}")


def describe_fields(
    cls: type = RunConfig, prefix: str = "", instance=None
) -> list[tuple[str, str, str]]:
    """(key, default, doc) for every field, from the attribute docstrings in the source of the
    module that defines ``cls`` (``instance``: the defaults, for a class whose fields need
    values)."""
    rows = []
    instance = instance if instance is not None else cls()
    for f in dataclasses.fields(cls):
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(value):
            rows.extend(describe_fields(type(value), f"{prefix}{f.name}.", value))
        else:
            owner = next(c for c in cls.__mro__ if f.name in vars(c).get("__annotations__", {}))
            doc = _field_docs(owner.__module__).get((owner.__name__, f.name), "")
            kind = typing.get_type_hints(cls)[f.name]
            if typing.get_origin(kind) is Literal:
                doc += f" [one of: {', '.join(typing.get_args(kind))}]"
            rows.append((f"{prefix}{f.name}", repr(value), doc))
    return rows


@functools.cache
def _field_docs(module: str = __name__) -> dict[tuple[str, str], str]:
    tree = ast.parse(inspect.getsource(sys.modules[module]))
    docs = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        body = node.body
        for stmt, nxt in zip(body, body[1:]):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[(node.name, stmt.target.id)] = " ".join(nxt.value.value.split())
    return docs
