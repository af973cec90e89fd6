"""Driving a training run: encode the corpus, fit with Ray Train, export the explainer.

Checkpoints live under ``<run>/ray_train`` (local or object storage). Ray Train restores its
checkpoint bookkeeping when a run with the same name starts again, and the loop resumes from
the last finished epoch, so a rerun or a resubmitted job continues instead of starting over.
Once the export is written the checkpoints are deleted (``train.keep_finished_checkpoints``).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
import ray.train
import torch
from ray.train.torch import TorchTrainer
from transformers import AutoConfig

from selfexplain import internals
from selfexplain.config import ConfigError, RunConfig
from selfexplain.corpus.io import claim_plan, corpus_files, read_corpus
from selfexplain.corpus.subsets import in_distribution_keys, rows_trained_on
from selfexplain.explainer.export import (
    EXPLAINER_INFO,
    EXPORT_DIR,
    MODEL_CARD,
    ExplainerInfo,
    has_export,
)
from selfexplain.explainer.interface import VectorInterface
from selfexplain.explainer.vectors import controlled_vectors
from selfexplain.interrupts import run_off_main_thread
from selfexplain.jobs.ray_session import started_local_cluster
from selfexplain.models.loading import resolve_model_dir
from selfexplain.storage import Location
from selfexplain.tasks import get_task
from selfexplain.train.examples import encode_examples
from selfexplain.train.loop import LoopConfig, train_loop_per_worker
from selfexplain.train.mixture import (
    CorpusSource,
    corpus_sources,
    mixed_tasks,
    repeat_factors,
    resample,
)
from selfexplain.train.order import example_columns

log = logging.getLogger(__name__)


def encoded_examples(
    config: RunConfig,
    sources: list[CorpusSource],
    tokenizer_ref: str,
    vector_width: int = 0,
    target_tokenizer_ref: str = "",
) -> pd.DataFrame:
    """Every corpus row encoded once, with its ``role``: ``train`` (trained on), or the validation
    queries ``in-distribution`` and ``held-out``; and its ``source``. ``vector_width`` (the
    target's hidden size) gives text tasks in a mix with vector tasks the same columns;
    ``target_tokenizer_dir`` is what the length filter counts in.

    Encoded here, in the driver, one corpus after another; :func:`train` hands the frames'
    columns to the workers through the object store. Tokenizing is serial per corpus either way
    (the Ray Data pass this replaced ran one task at a time), and the driver has already
    imported torch and transformers. The Ray Data
    pass cost 4.5 s warm and 11 s cold for the tiny run's 210 rows: a cold worker imports them
    first, and Ray 2.60's Parquet reader starts 32 footer-reading actors for every read
    (measured). The row order is the corpus's shard order, so validation batches
    are the same in every run and a resumed run's validation losses match an uninterrupted one's.
    """
    t = config.train
    frames = [
        encode_examples(
            read_corpus(source.corpus).to_pandas(),
            task=source.task,
            tokenizer_dir=tokenizer_ref,
            max_length=t.max_length,
            trust_remote_code=config.trust_remote_code,
            in_distribution_holdout=t.in_distribution_holdout,
            in_distribution_by=t.in_distribution_by,
            data_fraction=t.data_fraction,
            seed=config.seed,
            source=source.run,
            vector_width=vector_width,
            target_tokenizer_dir=target_tokenizer_ref or tokenizer_ref,
            templates=config.templates,
        )
        for source in sources
    ]
    return pd.concat(frames, ignore_index=True)


def with_vector_control(encoded: pd.DataFrame, control: str) -> pd.DataFrame:
    """The examples with their vectors withheld as ``train.vector_control`` says, each role's
    rows among themselves (so a training query never borrows a validation query's vector)."""
    if control == "none" or "vector" not in encoded:
        return encoded

    encoded = encoded.copy()
    for _, part in encoded.groupby(["role", "source"], sort=False):
        vectors = torch.from_numpy(np.stack(part["vector"].to_list()))
        layers = torch.tensor(part["layer"].to_numpy())
        withheld = controlled_vectors(vectors, control, layers, part["record_id"].to_list()).numpy()
        encoded.loc[part.index, "vector"] = pd.Series(list(withheld), index=part.index)
    return encoded


def examples_with_role(
    encoded: pd.DataFrame, role: str, limit: int = 0, source: str = ""
) -> pd.DataFrame:
    selected = encoded[encoded["role"] == role]
    if source:
        selected = selected[selected["source"] == source]
    return (selected.head(limit) if limit else selected).reset_index(drop=True)


def training_examples(
    config: RunConfig, sources: list[CorpusSource], examples: pd.DataFrame
) -> pd.DataFrame:
    """The rows trained on (``examples``: the encoded rows of role ``train``); in a task mix,
    resampled to the configured ratios (the loop's per-epoch shuffle interleaves the tasks)."""
    if len(sources) == 1:
        return examples
    counts = {
        source.run: len(examples_with_role(examples, "train", source=source.run))
        for source in sources
    }
    factors = repeat_factors(counts, {source.run: source.ratio for source in sources})
    log.info(
        "task mix: %s",
        ", ".join(f"{run} {counts[run]} rows x{factor:.2f}" for run, factor in factors.items()),
    )
    return resample(examples, factors, config.seed)


VALIDATION_SETS = {"val_held_out": "held-out", "val_in_distribution": "in-distribution"}


def validation_sets(
    config: RunConfig, sources: list[CorpusSource], encoded: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """The non-empty validation query sets, each capped at ``train.validation_examples``; one pair
    per corpus in a task mix, so each task's progress shows (``val_held_out.<run>``)."""
    if not config.train.validation_examples:
        return {}
    limit = config.train.validation_examples
    if len(sources) == 1:
        sets = {
            name: examples_with_role(encoded, role, limit) for name, role in VALIDATION_SETS.items()
        }
    else:
        sets = {
            f"{name}.{source.run}": examples_with_role(encoded, role, limit, source=source.run)
            for source in sources
            for name, role in VALIDATION_SETS.items()
        }
    return {name: frame for name, frame in sets.items() if len(frame)}


def export_location(config: RunConfig) -> Location:
    return config.run_dir / EXPORT_DIR


TRAINING_STORAGE = "ray_train"  # a run's checkpoints, under its folder
TRAINING_RUN = "train"  # Ray Train's run name inside it


def training_storage(config: RunConfig) -> Location:
    return config.run_dir / TRAINING_STORAGE


def is_trained(config: RunConfig) -> bool:
    return has_export(export_location(config))


def training_fingerprint(config: RunConfig) -> str:
    """What an explainer's training depends on, hashed: its checkpoints and export are reused
    only under the same. ``train.validate_every`` is an operational key for the config as a
    whole, but with ``train.select_best`` the validations decide which step is exported and
    when patience stops training, so here it counts."""
    settings = _settings_fingerprint(config)
    if not config.train.select_best:
        return settings
    cadence = f"{settings} validate_every={config.train.validate_every}"
    return hashlib.sha256(cadence.encode()).hexdigest()[:16]


def _settings_fingerprint(config: RunConfig) -> str:
    """The fingerprint runs recorded before the validation cadence counted: still accepted from
    their plans and exports, so they resume and are reused as they were."""
    return config.fingerprint("target", "task", "seed", "generate", "train")


def _check_trained_with(config: RunConfig, export_dir: Location) -> None:
    """A finished export is reused only for the settings it was trained with (older exports
    record none and are reused as they were)."""
    recorded = (export_dir / EXPLAINER_INFO).read_json().get("training_fingerprint", "")
    if recorded and recorded not in (training_fingerprint(config), _settings_fingerprint(config)):
        raise ConfigError(
            f"{export_dir} was trained with other settings; pick a new run name (name=...) or "
            f"delete {config.run_dir}"
        )


def train(
    config: RunConfig, loop=train_loop_per_worker, warm_start: Location | None = None
) -> Location:
    """Fine-tune the explainer on the run's corpus and return the exported HF directory.

    A finished export is reused; an interrupted run resumes from its last checkpoint. A run with
    no checkpoint of its own goes on from ``warm_start``, the last checkpoint of a shorter run
    of the same training (the caller vouches for that: :mod:`selfexplain.study.warm_start`).
    ``loop`` is the per-worker function (tests wrap it to inject worker failures).
    """
    sources = corpus_sources(config)
    export_dir = export_location(config)
    if is_trained(config):
        _check_trained_with(config, export_dir)
        log.info("explainer already trained at %s; skipping training", export_dir)
        return export_dir
    storage = training_storage(config)
    # by corpus run: what each corpus was generated with (one entry, or one per corpus of a mix)
    corpus_hashes = {source.run: source.manifest["config_hash"] for source in sources}
    corpus = corpus_hashes if config.train.mix else corpus_hashes[sources[0].run]
    claim_plan(
        storage,
        {"fingerprint": training_fingerprint(config), "corpus": corpus},
        also_accepted=[{"fingerprint": _settings_fingerprint(config), "corpus": corpus}],
    )
    interface = vector_interface(config, sources, resolve_model_dir(config.explainer_ref))
    plan = training_plan(config, sources, interface)
    trainer_class = internals.local_cluster_trainer() if started_local_cluster() else TorchTrainer
    trainer = trainer_class(
        loop,
        train_loop_config={
            "loop": loop_config(config, sources, plan, interface, corpus_hashes, warm_start)
        },
        scaling_config=_scaling_config(config.train),
        torch_config=internals.bound_rendezvous_torch_config(),
        run_config=ray.train.RunConfig(
            name=TRAINING_RUN,
            storage_path=storage.uri,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=config.train.keep_checkpoints),
            failure_config=ray.train.FailureConfig(max_failures=config.train.max_failures),
            # Ray Train's INFO lines (resources requested, the worker group started) stay in the
            # session folder's ray-train-sys-* files; its warnings still reach the console
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),
        ),
    )
    # Ray Train's fit() would replace Ctrl-C's handler with one that exits 0
    result = run_off_main_thread(trainer.fit, name="ray-train-fit")
    with result.checkpoint.as_directory() as folder:
        export_dir.upload_dir(Path(folder) / EXPORT_DIR, marker=MODEL_CARD)
    kept = {"final_checkpoint": Path(result.checkpoint.path).name}  # see final_checkpoint()
    (config.run_dir / "train_metrics.json").write_json({
        "examples": len(plan.training),
        "dropped_over_max_length": plan.dropped,
        **result.metrics,
        **(kept if config.train.keep_finished_checkpoints else {}),
    })  # fmt: skip
    if not config.train.keep_finished_checkpoints:
        delete_checkpoints(config)
    return export_dir


def delete_checkpoints(config: RunConfig) -> None:
    """Delete a run's Ray Train folder: its checkpoints and their index. ``plan.json`` beside it
    stays, so a rerun with other settings is still refused; without the export a rerun trains
    from scratch."""
    folder = training_storage(config) / TRAINING_RUN
    if folder.exists():
        folder.delete_dir()


def final_checkpoint(config: RunConfig) -> Location | None:
    """The last checkpoint of a finished run that kept its checkpoints
    (``train.keep_finished_checkpoints``), if it is still there."""
    metrics = config.run_dir / "train_metrics.json"
    name = metrics.read_json().get("final_checkpoint") if metrics.exists() else None
    folder = training_storage(config) / TRAINING_RUN / name if name else None
    return folder if folder is not None and folder.exists() else None


class TrainingPlan(NamedTuple):
    """The examples a run trains and validates on, as the driver encoded them."""

    training: pd.DataFrame
    validation: dict[str, pd.DataFrame]
    dropped: int
    """Training rows left out for being over ``train.max_length``."""
    steps_per_epoch: int


def training_plan(config: RunConfig, sources: list[CorpusSource], interface) -> TrainingPlan:
    """Encode the corpora once; refuse an empty training set, naming the cause."""
    t = config.train
    encoded = encoded_examples(
        config,
        sources,
        config.explainer_ref,
        vector_width=interface.d_target if interface and t.mix else 0,
        target_tokenizer_ref=config.target,
    )
    encoded = with_vector_control(encoded, t.vector_control)
    encoded_train = examples_with_role(encoded, "train")
    training = training_examples(config, sources, encoded_train)
    dropped = _dropped_over_max_length(config, sources, len(encoded_train))
    if len(training) == 0:
        if not dropped:
            raise ValueError(
                f"the training split of {', '.join(s.run for s in sources)} is empty: every "
                "group was held out; lower generate.held_out_fraction or use more items "
                "(generate.max_items)"
            )
        raise ValueError(f"no training examples fit in train.max_length={t.max_length}; raise it")
    micro = t.batch_size // t.grad_accum
    steps_per_epoch = max(1, -(-(len(training) // t.num_workers) // micro) // t.grad_accum)
    log.info(
        "training on %d examples (%d over max_length dropped), %d worker%s, %d steps/epoch",
        len(training), dropped, t.num_workers, "" if t.num_workers == 1 else "s", steps_per_epoch,
    )  # fmt: skip
    return TrainingPlan(
        training, validation_sets(config, sources, encoded), dropped, steps_per_epoch
    )


def loop_config(
    config: RunConfig,
    sources: list[CorpusSource],
    plan: TrainingPlan,
    interface,
    corpus_hashes: dict[str, str],
    warm_start: Location | None = None,
) -> LoopConfig:
    """Everything a worker needs, decided on the driver."""
    t = config.train
    tasks = tuple(mixed_tasks(sources))
    manifests = {source.run: source.manifest for source in sources}
    return LoopConfig(
        run=config,
        explainer=config.explainer_ref,  # a reference, resolved by each worker on its node
        steps_per_epoch=plan.steps_per_epoch,
        model_card=_model_card(config, sources, manifests, len(plan.training)),
        info=ExplainerInfo(
            tasks, config.target, config.explainer_ref, config.name, corpus_hashes,
            config.templates, training_fingerprint(config),
        ),
        # In the object store, not Ray Datasets: each rank holds every example anyway, and
        # datasets would add Ray Data's stats actor and Ray Train's dataset manager, two more
        # processes waking beside the training threads.
        training_examples=ray.put(example_columns(plan.training)),
        validation_examples={name: ray.put(example_columns(frame))
                             for name, frame in sorted(plan.validation.items())},
        vector_interface=interface,
        tensorboard_dir=(str(config.run_dir.local_path / "tensorboard")
                         if t.tensorboard and config.run_dir.is_local else None),
        warm_start=(ray.train.Checkpoint(warm_start.path, filesystem=warm_start.fs)
                    if warm_start is not None else None),
    )  # fmt: skip


def _scaling_config(t) -> ray.train.ScalingConfig:
    resources = {"CPU": t.cpus_per_worker, **({"GPU": 1} if t.use_gpu else {})}
    return ray.train.ScalingConfig(
        num_workers=t.num_workers, use_gpu=t.use_gpu, resources_per_worker=resources
    )


def _dropped_over_max_length(
    config: RunConfig, sources: list[CorpusSource], encoded_train_rows: int
) -> int:

    t = config.train
    # a unit's key may need any of the task's columns; a row's, its id alone
    columns = None if t.in_distribution_by == "group" else ["split", "record_id"]
    kept = 0
    for source in sources:
        train_split = read_corpus(source.corpus, split="train", columns=columns)
        keys = in_distribution_keys(get_task(source.task), train_split, t.in_distribution_by)
        kept += rows_trained_on(
            train_split, t.in_distribution_holdout, t.data_fraction, config.seed, keys
        ).num_rows
    return kept - encoded_train_rows


def vector_interface(
    config: RunConfig, sources: list[CorpusSource], explainer_dir: Path
) -> VectorInterface | None:
    """How vectors enter this explainer (None when no task carries vectors): sizes, layers
    (over every vector corpus of a mix), projection."""

    vector_sources = [source for source in sources if get_task(source.task).vector_input]
    if not vector_sources:
        return None
    widths, layers = set(), set()
    for source in vector_sources:
        files = corpus_files(source.corpus)
        widths.add(
            pq.read_schema(files[0], filesystem=source.corpus.fs).field("vector").type.list_size
        )
        layers |= set(
            pc.unique(
                pq.read_table(files, filesystem=source.corpus.fs, columns=["layer"])["layer"]
            ).to_pylist()
        )
    if len(widths) > 1:
        raise ConfigError(
            f"config key 'train.mix': the vector corpora have different widths {sorted(widths)}; "
            "mix corpora of one target model"
        )
    (d_target,) = widths
    layers = sorted(layers)
    explainer_config = AutoConfig.from_pretrained(
        explainer_dir, trust_remote_code=config.trust_remote_code
    )
    d_explainer = (
        getattr(explainer_config, "hidden_size", None)
        or explainer_config.get_text_config().hidden_size
    )
    mode = config.train.projection
    if mode == "never" and d_target != d_explainer:
        raise ConfigError(
            f"train.projection=never, but the target's vectors have {d_target} dimensions and the "
            f"explainer's embeddings {d_explainer}; use train.projection=auto"
        )
    projected = mode == "always" or (mode == "auto" and d_target != d_explainer)
    t = config.train
    return VectorInterface(
        config.target,
        tuple(layers),
        d_target,
        d_explainer,
        projected,
        t.rescale_vectors,
        vector_control=t.vector_control,
        projection_init=t.projection_init,
        projection_frozen=t.freeze_projection,
    )


def _model_card(
    config: RunConfig, sources: list[CorpusSource], manifests: dict, examples: int
) -> str:
    kind = "self" if config.train.explainer == "self" else "other"
    total = sum(source.ratio for source in sources)
    corpora = "".join(
        f"- corpus `{source.run}`: task `{source.task}`, share {source.ratio / total:.0%}, rows "
        f"by split "
        f"{manifests[source.run]['rows_by_split']}, config hash "
        f"`{manifests[source.run]['config_hash']}`\n"
        for source in sources
    )
    return (
        f"# selfexplain explainer: {config.name}\n\n"
        f"- target model: `{config.target}`\n"
        f"- explainer base: `{config.explainer_ref}` ({kind})\n"
        f"- tasks: {', '.join(f'`{t}`' for t in mixed_tasks(sources))}\n"
        f"- training examples: {examples}\n{corpora}\n"
        "Load with `transformers.AutoModelForCausalLM.from_pretrained(<this folder>)`; vector "
        "tasks add\n"
        "`vector_interface.json` (and `vector_projection.safetensors`): load both with\n"
        "`selfexplain.explainer.export.load_explainer(<this folder>)`, or ask it with "
        "`selfexplain explain`.\n"
    )
