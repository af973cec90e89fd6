"""Running a study: corpus per task, then train and score every (explainer, data fraction).

All stages run in one Ray session. Each stage is an ordinary run under ``<output_dir>/<study>/``,
so it reuses finished work as any run does (written shards, exported explainers), and scoring is
skipped when a run's ``results.json`` was written for the same config. A study that is stopped
and started again continues where it stopped.
"""

from __future__ import annotations

import logging
import time

from selfexplain.storage import Location
from selfexplain.study.config import StudyConfig

log = logging.getLogger(__name__)


def run_study(study: StudyConfig) -> dict:
    """Run every stage not yet done, then write the report; return the report's summary."""
    # deferred: loading a study and `--report-only` need none of the stages' heavy modules
    from selfexplain.corpus.io import withdrawn_on_failure
    from selfexplain.evaluate.evaluate import evaluate
    from selfexplain.jobs.generate import generate
    from selfexplain.jobs.ray_session import ray_session
    from selfexplain.pipeline import save_config
    from selfexplain.preflight import check_cluster_storage, check_run
    from selfexplain.study.report import write_report
    from selfexplain.study.status import is_done, is_scored
    from selfexplain.study.warm_start import release_sweep_checkpoints, sweep_checkpoint
    from selfexplain.train.trainer import train

    stages = study.stages()
    timings_file = Location(study.folder) / "timings.json"
    seconds = timings_file.read_json() if timings_file.exists() else {}
    plans = {}  # every input of every stage, checked before Ray starts
    for stage in stages:
        kind = ("generate",) if stage.role is None else ("train", "evaluate")
        if stage.learning_rate is not None:
            kind = ("train",)
        plans[stage.name] = check_run(study.run_config(stage), kind, corpus_ready=False)
    first = study.run_config(stages[0])
    with withdrawn_on_failure(), ray_session(first.ray):
        check_cluster_storage(first)
        for number, stage in enumerate(stages, 1):
            config = study.run_config(stage)
            started = time.time()
            sweep = stage.learning_rate is not None  # trained, never scored
            done = is_done(stage, config)
            log.info("== study %s: stage %d/%d: %s", study.name, number, len(stages), stage.name)
            try:
                if stage.role is None:
                    generate(config, items=plans[stage.name].items)
                    save_config(config)
                else:
                    train(config, warm_start=sweep_checkpoint(study, stage))
                    save_config(config)
                    release_sweep_checkpoints(study, stage)
                    if not sweep and not is_scored(config):
                        evaluate(config)
            finally:
                # a reused stage keeps its time; a stage that ran adds this sitting's, stopped
                # or failed ones included, so the times add up to the study's cost
                if not done:
                    elapsed = time.time() - started
                    seconds[stage.name] = round(seconds.get(stage.name, 0.0) + elapsed, 1)
                    timings_file.write_json(seconds)
    return write_report(study, seconds)
