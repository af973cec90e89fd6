"""The stages of a run, each usable alone, and ``run`` that chains them in one Ray session.

Every stage checks all its inputs (:mod:`selfexplain.preflight`) before Ray starts and before it
writes anything, and reuses finished work: generation
skips written shards, training skips when the explainer is exported, so rerunning a run picks
up where it stopped.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import yaml

from selfexplain.config import ConfigError, RunConfig
from selfexplain.corpus.io import withdrawn_on_failure
from selfexplain.jobs.ray_session import ray_session
from selfexplain.places import check_output_dir
from selfexplain.preflight import check_cluster_storage, check_model, check_run

log = logging.getLogger(__name__)


def save_config(config: RunConfig) -> None:
    (config.run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def run_generate(config: RunConfig):
    # deferred: bad input is refused before Ray Data, torch and DeepSpeed load
    from selfexplain.jobs.generate import generate

    if config.train.mix:
        raise ConfigError(
            f"run {config.name} trains on the corpora of train.mix "
            f"({', '.join(config.train.mix)}); "
            "generate those runs, then train this one"
        )
    plan = check_run(config, ("generate",))
    with withdrawn_on_failure(), ray_session(config.ray):
        check_cluster_storage(config)
        corpus = generate(config, items=plan.items)
    save_config(config)
    return corpus


def run_import(config: RunConfig, source: str):
    """The paper's released data at ``source`` as the run's corpus (no Ray session: one process
    reads the files and, for patching, runs the target on the counterfactual prompts)."""
    # deferred: as in run_generate
    from selfexplain.jobs.importing import import_corpus

    check_output_dir(config.output_dir)
    check_model(config.target, config.trust_remote_code)
    with withdrawn_on_failure():
        corpus = import_corpus(config, source)
    save_config(config)
    return corpus


def run_train(config: RunConfig):
    # deferred: bad input is refused before Ray Train, torch and DeepSpeed load
    from selfexplain.train.trainer import train

    check_run(config, ("train",))
    with withdrawn_on_failure(), ray_session(config.ray):
        check_cluster_storage(config)
        return train(config)


def run_evaluate(config: RunConfig) -> dict[str, dict]:
    """Held-out results by corpus run (one for an ordinary run, one per corpus of a task mix)."""
    # deferred: bad input is refused before torch and the explainers load
    from selfexplain.evaluate.evaluate import evaluate_run

    check_run(config, ("evaluate",))
    with withdrawn_on_failure(), ray_session(config.ray):
        check_cluster_storage(config)
        return evaluate_run(config)


@dataclass(frozen=True)
class RunOutcome:
    results: dict[str, dict[str, dict]]
    """Held-out results by corpus run, then by system (see ``evaluate_run``)."""
    seconds: dict[str, float]
    """Wall time of each stage."""


def run_all(config: RunConfig) -> RunOutcome:
    """Generate, train and evaluate in one Ray session. A task mix has no corpus of its own: it
    trains on those of ``train.mix``."""
    # deferred: bad input is refused before the stages' heavy modules load
    from selfexplain.evaluate.evaluate import evaluate_run
    from selfexplain.jobs.generate import generate
    from selfexplain.train.trainer import train

    later = ["train", "evaluate"]
    plan = check_run(config, later if config.train.mix else ["generate", *later])
    stages = [("generate", lambda c: generate(c, items=plan.items))] if not config.train.mix else []
    timings = {}
    with withdrawn_on_failure(), ray_session(config.ray):
        check_cluster_storage(config)
        for stage, step in (*stages, ("train", train), ("evaluate", evaluate_run)):
            started = time.time()
            log.info("== stage: %s", stage)
            output = step(config)
            timings[stage] = round(time.time() - started, 1)
            if stage == "generate":
                save_config(config)
    return RunOutcome(results=output, seconds=timings)
