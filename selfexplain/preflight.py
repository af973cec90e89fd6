"""Everything a run's inputs can get wrong, checked before Ray starts and before anything is
written.

Each stage's own code checks its inputs too, but only after a Ray session is up (30-60 s on a
small machine) and sometimes after folders exist. ``check_run`` reads every input a run's stages
will read (config values that depend on the machine, the output location, model files, task
input files, an existing corpus's plan, manifest and shards) and raises an :class:`InputError`
naming the file or key and the fix. The stages call it first; so does the command line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from selfexplain.config import ConfigError, RunConfig
from selfexplain.corpus.integrity import (
    REGENERATE,
    CorpusFileError,
    check_shard_files,
    check_unique_records,
    shard_names,
)
from selfexplain.corpus.io import MANIFEST, PLAN, corpus_plan
from selfexplain.places import check_output_dir, check_ray_address
from selfexplain.storage import Location
from selfexplain.tasks import TASK_NAMES, get_task
from selfexplain.train.memory import check_fits

STAGES = ("generate", "train", "evaluate")


@dataclass(frozen=True)
class RunPlan:
    """What the pre-run check resolved, handed to the stages so that nothing is resolved twice."""

    target_dir: Path
    """The target's local model folder (an embedded name or URI resolved on this machine)."""
    items: list[dict] | None = None
    """The generate stage's work items, when it runs (the tokenizer loaded and the task's
    inputs read once)."""


def check_run(
    config: RunConfig, stages: Iterable[str] = STAGES, corpus_ready: bool = True
) -> RunPlan:
    """Raise an :class:`InputError` for the first thing the given stages would trip over;
    return what was resolved on the way. ``corpus_ready=False``: training's corpus is written
    earlier in the same session (a study)."""
    stages = set(stages)
    output = check_output_dir(config.output_dir)
    check_ray_address(config.ray.address or os.environ.get("RAY_ADDRESS", ""))
    target_dir, tokenizer = check_model(config.target, config.trust_remote_code)
    if stages & {"train", "evaluate"}:
        explainer_dir = (
            target_dir  # a self-explainer: the folder just checked
            if config.explainer_ref == config.target
            else check_model(config.explainer_ref, config.trust_remote_code)[0]
        )
        check_text_explainer(config, explainer_dir)
        if "train" in stages:
            check_lora_modules(config, explainer_dir)
            if config.train.use_gpu:  # before the local check: a run that fits no GPU
                check_fits(config.train, explainer_dir, config.trust_remote_code)
    check_local_resources(config, stages)
    if config.evaluate.explainer:
        check_output_dir(config.evaluate.explainer, "evaluate.explainer")
    items = None
    if "generate" in stages and not config.train.mix:
        check_layers(config, target_dir)
        items = get_task(config.task).work_items(config, tokenizer)
        if not items:
            raise ConfigError(
                f"config key 'generate': task {config.task} found no work items; check "
                "generate.* sources"
            )
        check_corpus_files(config.corpus_dir, plan=corpus_plan(config, items))
    elif corpus_ready:
        check_finished_corpora(config, output, target_dir)
    if "evaluate" in stages and ("train" not in stages or config.evaluate.explainer):
        check_export(config)
    return RunPlan(target_dir, items)


def check_model(reference: str, trust_remote_code: bool):
    """A model reference resolves to a folder whose config.json, weights' headers, model type and
    tokenizer all read; returns the folder and the tokenizer."""
    # deferred: a bad config key is refused before torch and transformers load
    from selfexplain.models.files import check_model_type_known
    from selfexplain.models.loading import load_tokenizer, resolve_model_dir

    folder = resolve_model_dir(reference)
    check_model_type_known(folder, trust_remote_code)
    return folder, load_tokenizer(folder, trust_remote_code)


def check_text_explainer(config: RunConfig, explainer_dir: Path) -> None:
    """An explainer answers in text from embedded queries, which a multimodal wrapper's
    ``generate`` does not take; its language model can explain (as a target, the wrapper's
    language model is explained as it is)."""
    from selfexplain.models.files import is_multimodal  # deferred: as in check_model

    if is_multimodal(explainer_dir):
        key = "target" if config.train.explainer == "self" else "train.explainer"
        raise ConfigError(
            f"config key 'train.explainer': {config.explainer_ref} ({key}) is a multimodal model; "
            "an explainer must be a text model: give its language model, or another explainer "
            "(train.explainer=...)"
        )


def check_layers(config: RunConfig, target_dir: Path) -> None:
    """``generate.layers`` are blocks the target has."""
    from selfexplain.models.files import model_depth  # deferred: as in check_model

    depth = model_depth(target_dir)
    beyond = [layer for layer in config.generate.layers if depth is not None and layer >= depth]
    if beyond:
        raise ConfigError(
            f"config key 'generate.layers': layer {beyond[0]} is beyond the target "
            f"{config.target}'s {depth} blocks; use layers 0 to {depth - 1}"
        )


def check_lora_modules(config: RunConfig, explainer_dir: Path) -> None:
    """Each module that ``train.lora_target_modules`` names exists in the explainer (peft matches
    a name or a dotted suffix of one)."""
    from selfexplain.models.files import module_names  # deferred: as in check_model

    t = config.train
    if t.lora_rank == 0 or t.lora_target_modules == "all-linear":
        return
    names = module_names(explainer_dir, config.trust_remote_code)
    leaves = {name.rsplit(".", 1)[-1] for name in names}
    for wanted in (part.strip() for part in t.lora_target_modules.split(",")):
        if wanted not in leaves and not any(name.endswith(f".{wanted}") for name in names):
            raise ConfigError(
                f"config key 'train.lora_target_modules': the explainer has no module {wanted!r}; "
                f"name some of {', '.join(sorted(leaves)[:12])}, or use all-linear"
            )


def check_finished_corpora(config: RunConfig, output: Location, target_dir: Path) -> None:
    """The corpora that training and evaluation read, each complete and intact."""
    from selfexplain.models.files import model_width  # deferred: as in check_model

    corpora = (
        [output / run / "corpus" for run in config.train.mix]
        if config.train.mix
        else [config.corpus_dir]
    )
    width = model_width(target_dir)
    for corpus in corpora:
        check_corpus_files(corpus, finished=True, width=width)


def check_export(config: RunConfig) -> None:
    """The explainer that evaluation scores is a complete export (evaluation's own checks, before
    Ray starts): its config.json and weights' headers read, its ``selfexplain.json`` names the
    run's task (a task mix is scored per corpus, each with its own task)."""
    # deferred: a bad config key is refused before torch, Ray and transformers load
    from selfexplain.evaluate.evaluate import check_trained_for, trained_export
    from selfexplain.models.loading import resolve_model_dir

    export = trained_export(config)
    local_export = resolve_model_dir(export.uri)
    if not config.train.mix:
        check_trained_for(config.task, export, local_export)


def check_cluster_storage(config: RunConfig) -> None:
    """Once Ray is up: a local ``output_dir`` works on one node only. On a cluster of several nodes
    (or whose head runs no work, so everything runs elsewhere) each node would write its shards
    and checkpoints to its own disk, and the driver would read its own."""
    import ray  # deferred: the command line checks inputs before any Ray session

    if not Location(config.output_dir).is_local or config.storage.shared_filesystem:
        return
    nodes = [node for node in ray.nodes() if node["Alive"]]
    workless_head = any(
        node["Resources"].get("CPU", 0) == 0 and not node["Resources"].get("GPU") for node in nodes
    )
    if len(nodes) > 1 or workless_head:
        raise ConfigError(
            f"config key 'output_dir': {config.output_dir} is a folder on this machine, but the "
            f"Ray cluster has "
            f"{len(nodes)} node(s) and runs work on other machines; use an s3://bucket/prefix or "
            f"gs:// URI, or a "
            "filesystem mounted at the same path on every node and storage.shared_filesystem=true"
        )


def check_local_resources(config: RunConfig, stages: set[str]) -> None:
    """A local cluster has ``ray.num_cpus`` logical CPUs and this machine's GPUs: a request beyond
    them would wait forever for resources that never come."""
    if config.ray.address or os.environ.get("RAY_ADDRESS"):
        return  # a cluster (autoscaling or not) decides for itself
    cpus = config.ray.num_cpus
    g, t = config.generate, config.train
    if "generate" in stages and g.num_actors * g.cpus_per_actor > cpus:
        raise ConfigError(
            f"config key 'generate.num_actors': {g.num_actors} actors x {g.cpus_per_actor} CPUs "
            f"exceed the local cluster's ray.num_cpus={cpus}; lower one or raise ray.num_cpus"
        )
    if "train" in stages and t.num_workers * t.cpus_per_worker > cpus:
        raise ConfigError(
            f"config key 'train.num_workers': {t.num_workers} workers x {t.cpus_per_worker} CPUs "
            f"exceed the local cluster's ray.num_cpus={cpus}; lower one or raise ray.num_cpus"
        )
    wants_gpu = ("generate" in stages and g.gpus_per_actor > 0) or ("train" in stages and t.use_gpu)
    if wants_gpu:
        import torch

        if not torch.cuda.is_available():
            key = "generate.gpus_per_actor" if g.gpus_per_actor > 0 else "train.use_gpu"
            raise ConfigError(
                f"config key '{key}': this machine has no GPU; set it to 0/false or "
                "connect to a cluster with GPUs (ray.address)"
            )


def check_corpus_files(
    corpus: Location, plan: dict | None = None, finished: bool = False, width: int | None = None
) -> None:
    """An existing corpus folder: its plan matches ``plan`` (when given), its manifest and every
    shard it has are readable. ``finished``: the manifest must exist (training reads it), and
    every shard must be the one it lists, with its task's schema (vectors ``width`` wide) and
    record ids unique across shards."""
    import pyarrow.parquet as pq  # deferred: only when a corpus exists

    plan_file, manifest_file = corpus / PLAN, corpus / MANIFEST
    if finished and not manifest_file.exists():
        raise FileNotFoundError(
            f"no corpus at {corpus} ({MANIFEST} missing); run `selfexplain generate` first"
        )
    if plan is not None and plan_file.exists() and _read_json(plan_file) != plan:
        raise ConfigError(
            f"{corpus} was made with other settings or inputs; pick a new run name (name=...) "
            "or delete that folder"
        )
    if manifest_file.exists():
        manifest = _read_json(manifest_file)
        if not isinstance(manifest, dict) or not isinstance(manifest.get("shards"), list):
            raise CorpusFileError(f"{manifest_file} is not a selfexplain manifest; {REGENERATE}")
        if finished:
            schema = _task_schema(manifest_file, manifest, width)
            check_unique_records(corpus, check_shard_files(corpus, manifest, schema))
            return
    for name in shard_names(corpus):
        shard = corpus / name
        try:
            metadata = pq.read_metadata(shard.path, filesystem=corpus.fs)
        except (OSError, ValueError) as err:
            damaged = f"corpus shard {shard} is damaged ({err}); {REGENERATE}"
            raise CorpusFileError(damaged) from None
        if "split" not in metadata.schema.names:
            raise CorpusFileError(f"corpus shard {shard} is not a selfexplain shard; {REGENERATE}")


def _task_schema(manifest_file: Location, manifest: dict, width: int | None):
    """The schema the manifest's task writes, or None when the target's width is unknown."""
    task = manifest.get("task")
    if task not in TASK_NAMES:
        raise CorpusFileError(f"{manifest_file} names no known task ({task!r}); {REGENERATE}")
    return get_task(task).schema(width) if width else None


def _read_json(file: Location):
    try:
        return json.loads(file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CorpusFileError(f"{file} is not valid JSON; {REGENERATE}") from None
