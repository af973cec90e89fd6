"""Where a study stands, read from its folder without starting Ray: each stage's state, the
stage time of the finished ones, and what is left (``selfexplain study NAME --status``).

A long study runs over several sittings; this is how a user sees how far it got and how many
hours its finished stages took, and which stage the next sitting resumes.
"""

from __future__ import annotations

from dataclasses import dataclass

from selfexplain.config import RunConfig
from selfexplain.corpus.io import MANIFEST, PLAN
from selfexplain.storage import Location
from selfexplain.study.config import Stage, StudyConfig
from selfexplain.train.trainer import TRAINING_RUN, is_trained, training_storage

SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train's list of a run's kept checkpoints


@dataclass(frozen=True)
class StageStatus:
    number: int
    name: str
    state: str
    """``done`` (``done, went on from <sweep stage>`` for a warm-started run); ``trained, not
    scored``; ``training, checkpoint at step N``; ``training, no checkpoint yet``;
    ``generating``; or ``not started``."""
    seconds: float | None
    """Stage wall time, summed over the sittings that worked on it (``timings.json``)."""

    @property
    def done(self) -> bool:
        return self.state.startswith("done")


def is_scored(config: RunConfig) -> bool:
    """Scored with this config, in the current results format (with each system's record)."""
    results = config.run_dir / "results.json"
    if not results.exists():
        return False
    saved = results.read_json()
    return saved.get("config_hash") == config.fingerprint() and "systems" in saved


def is_done(stage: Stage, config: RunConfig) -> bool:
    """A corpus stage has its manifest; a sweep stage its export; any other stage its export
    and its scores under this config."""
    if stage.role is None:
        return (config.corpus_dir / MANIFEST).exists()
    return is_trained(config) and (stage.learning_rate is not None or is_scored(config))


def went_on_from(metrics: Location, study_folder: Location) -> str | None:
    """The stage whose checkpoint a finished run went on from (a main run warm-started from its
    sweep, whose short stage time would otherwise read as a whole run's), if it did."""
    source = metrics.read_json().get("warm_started_from") if metrics.exists() else None
    if not source:
        return None
    for folder in (study_folder.uri, study_folder.path):  # a checkpoint's path has no scheme
        prefix = folder.rstrip("/") + "/"
        if source.startswith(prefix):
            return source[len(prefix) :].split("/")[0]
    return source


def _state(stage: Stage, config: RunConfig, study_folder: Location) -> str:
    if is_done(stage, config):
        source = went_on_from(config.run_dir / "train_metrics.json", study_folder)
        return f"done, went on from {source}" if source else "done"
    if stage.role is None:
        return "generating" if (config.corpus_dir / PLAN).exists() else "not started"
    if is_trained(config):
        return "trained, not scored"
    snapshot = training_storage(config) / TRAINING_RUN / SNAPSHOT
    if snapshot.exists():
        kept = snapshot.read_json().get("checkpoint_results") or [{}]
        step = kept[-1].get("metrics", {}).get("step")
        return f"training, checkpoint at step {step}" if step is not None else "training"
    if training_storage(config).exists():  # claimed by a sitting, before its first checkpoint
        return "training, no checkpoint yet"
    return "not started"


def study_status(study: StudyConfig) -> list[StageStatus]:
    timings = Location(study.folder) / "timings.json"
    seconds = timings.read_json() if timings.exists() else {}
    return [
        StageStatus(
            number,
            stage.name,
            _state(stage, study.run_config(stage), Location(study.folder)),
            seconds.get(stage.name),
        )
        for number, stage in enumerate(study.stages(), 1)
    ]


def status_markdown(rows: list[StageStatus]) -> str:
    lines = ["| # | stage | state | stage time |", "|---:|---|---|---:|"]
    for row in rows:
        time = "-" if row.seconds is None else f"{row.seconds / 60:.1f} min"
        lines.append(f"| {row.number} | {row.name} | {row.state} | {time} |")
    done = [row for row in rows if row.done]
    hours = sum(row.seconds or 0.0 for row in done) / 3600
    lines.append(f"\n{len(done)} of {len(rows)} stages done; their stage time: {hours:.1f} h.")
    return "\n".join(lines)
