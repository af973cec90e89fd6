"""A table of bad inputs, each fed to the command line's ``main`` in-process.

Every case must end with exit code 2 and one line, ``selfexplain: error: ...``, that names the
culprit (the key, or the file) and says what to do; Ray must not start (``ray.init`` is made to
fail loudly) and nothing may be written in the sandbox the case runs in. The cases are grouped:
config values, run names, config files, input files, model files, an existing corpus, studies
and ``selfexplain explain``.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from selfexplain.cli import main
from selfexplain.models.loading import resolve_model_dir
from tests.families import save_tiny_family

NOT_UTF8 = b"The capital of \xff\xfe is\n"


@dataclass
class Case:
    id: str
    argv: list[str]
    expected: str
    """A piece of the message: the key or file named, or the fix."""
    files: dict[str, bytes | str | None] = field(default_factory=dict)
    """Inputs to create under the sandbox first, in order (``IN`` in argv is the inputs folder;
    ``RUNS/...`` the runs folder): bytes or text, the name of a prepared file or folder to copy,
    or None to delete a file of a folder copied before it."""


def run(*overrides: str, command: str = "run", config: str = "tiny") -> list[str]:
    return [command, config, "output_dir=RUNS", *overrides]


def gen(task: str, *overrides: str) -> list[str]:
    return ["generate", "tiny", "output_dir=RUNS", f"task={task}", *overrides]


CONFIG_VALUES = [
    Case("unknown-key", run("train.lrr=1"), "unknown config key 'train.lrr'"),
    Case("unknown-section", run("training.epochs=1"), "unknown config key 'training'"),
    Case("lr-negative", run("train.learning_rate=-1"), "train.learning_rate"),
    Case("lr-zero", run("train.learning_rate=0"), "train.learning_rate"),
    Case("lr-nan", run("train.learning_rate=.nan"), "train.learning_rate"),
    Case("lr-inf", run("train.learning_rate=.inf"), "train.learning_rate"),
    Case("lr-text", run("train.learning_rate=fast"), "train.learning_rate"),
    Case("weight-decay-negative", run("train.weight_decay=-0.1"), "train.weight_decay"),
    Case("epochs-zero", run("train.epochs=0"), "train.epochs"),
    Case("epochs-text", run("train.epochs=two"), "train.epochs"),
    Case("epochs-float", run("train.epochs=1.5"), "train.epochs"),
    Case("batch-zero", run("train.batch_size=0"), "train.batch_size"),
    Case("grad-accum-not-divisor", run("train.grad_accum=3"), "train.grad_accum"),
    Case("zero-stage-4", run("train.zero_stage=4"), "train.zero_stage"),
    Case("offload-without-zero3", run("train.offload=true"), "train.offload"),
    Case("workers-zero", run("train.num_workers=0"), "train.num_workers"),
    Case("workers-beyond-local-cpus", run("train.num_workers=8"), "train.num_workers"),
    Case("cpus-per-worker-zero", run("train.cpus_per_worker=0"), "train.cpus_per_worker"),
    Case("cpus-per-worker-negative", run("train.cpus_per_worker=-1"), "train.cpus_per_worker"),
    Case("torch-threads-negative", run("train.torch_threads=-2"), "train.cpus_per_worker"),
    Case("max-failures-forever", run("train.max_failures=-1"), "train.max_failures"),
    Case("max-length-tiny", run("train.max_length=8"), "train.max_length"),
    Case("projection-unknown", run("train.projection=sometimes"), "train.projection"),
    Case(
        "projection-lr-negative",
        run("train.projection_learning_rate=-1"),
        "train.projection_learning_rate",
    ),
    Case(
        "in-distribution-holdout-one",
        run("train.in_distribution_holdout=1.0"),
        "train.in_distribution_holdout",
    ),
    Case("data-fraction-zero", run("train.data_fraction=0"), "train.data_fraction"),
    Case("data-fraction-above-one", run("train.data_fraction=1.5"), "train.data_fraction"),
    Case("lora-rank-negative", run("train.lora_rank=-1"), "train.lora_rank"),
    Case("lora-with-zero3", run("train.lora_rank=8", "train.zero_stage=3"), "train.lora_rank"),
    Case("lora-dropout-one", run("train.lora_dropout=1.0"), "train.lora_rank"),
    Case("checkpoint-every-negative", run("train.checkpoint_every=-1"), "train.checkpoint_every"),
    Case("keep-checkpoints-zero", run("train.keep_checkpoints=0"), "train.keep_checkpoints"),
    Case("warmup-negative", run("train.warmup_steps=-5"), "train.weight_decay"),
    Case("clipping-negative", run("train.gradient_clipping=-1"), "train.weight_decay"),
    Case("validation-negative", run("train.validation_examples=-1"), "train.validation_examples"),
    Case("mix-share-nan", run("train.mix={a: .nan}"), "train.mix"),
    Case("mix-share-negative", run("train.mix={a: -1}"), "train.mix"),
    Case("mix-share-inf", run("train.mix={a: .inf}"), "train.mix"),
    Case("mix-a-list", run("train.mix=[a, b]"), "train.mix"),
    Case("mix-with-corpus-from", run("train.mix={a: 1}", "corpus_from=b"), "train.mix"),
    Case("use-gpu-without-gpu", run("train.use_gpu=true"), "train.use_gpu"),
    Case("bool-as-text", run("train.use_gpu=maybe"), "train.use_gpu"),
    Case(
        "held-out-fraction-zero", run("generate.held_out_fraction=0"), "generate.held_out_fraction"
    ),
    Case(
        "held-out-fraction-one", run("generate.held_out_fraction=1"), "generate.held_out_fraction"
    ),
    Case(
        "held-out-fraction-nan",
        run("generate.held_out_fraction=.nan"),
        "generate.held_out_fraction",
    ),
    Case("held-out-by-other-task", run("generate.held_out_by=subject"), "generate.held_out_by"),
    Case("items-per-shard-zero", run("generate.items_per_shard=0"), "generate.items_per_shard"),
    Case("actors-zero", run("generate.num_actors=0"), "generate.num_actors"),
    Case("actors-beyond-local-cpus", run("generate.num_actors=9"), "generate.num_actors"),
    Case("cpus-per-actor-zero", run("generate.cpus_per_actor=0"), "generate.cpus_per_actor"),
    Case("gpus-per-actor-negative", run("generate.gpus_per_actor=-1"), "generate.cpus_per_actor"),
    Case("gpus-per-actor-without-gpu", run("generate.gpus_per_actor=1"), "generate.gpus_per_actor"),
    Case(
        "actor-restarts-forever",
        run("generate.max_actor_restarts=-1"),
        "generate.max_actor_restarts",
    ),
    Case("max-items-negative", run("generate.max_items=-3"), "generate.max_items"),
    Case("max-items-absurd", run("generate.max_items=1000000000"), "generate.max_items"),
    Case("layers-negative", run("generate.layers=[-1]"), "generate.layers"),
    Case("layers-not-a-list", run("generate.layers=3"), "generate.layers"),
    Case("component-unknown", run("generate.component=head"), "generate.component"),
    Case("max-tokens-one", run("generate.max_tokens=1"), "generate.max_tokens"),
    Case("layer-blocks-negative", run("generate.layer_blocks=-1"), "generate.layer_blocks"),
    Case(
        "probe-accuracy-below-chance",
        run("generate.min_probe_accuracy=0.2"),
        "generate.min_probe_accuracy",
    ),
    Case("top-contexts-negative", run("generate.top_contexts=-1"), "generate.top_contexts"),
    Case("max-examples-negative", run("evaluate.max_examples=-1"), "evaluate.max_examples"),
    Case(
        "max-examples-absurd", run("evaluate.max_examples=1000000000000"), "evaluate.max_examples"
    ),
    Case("eval-batch-zero", run("evaluate.batch_size=0"), "evaluate"),
    Case("max-new-tokens-negative", run("evaluate.max_new_tokens=-1"), "evaluate"),
    Case("max-new-tokens-absurd", run("evaluate.max_new_tokens=100000"), "evaluate.max_new_tokens"),
    Case("selfie-scale-zero", run("evaluate.selfie_scales=[0]"), "evaluate.selfie_scales"),
    Case(
        "evaluate-explainer-bad-uri",
        run("evaluate.explainer=nosuch://bucket/x"),
        "evaluate.explainer",
    ),
    Case("lr-above-one", run("train.learning_rate=1e10"), "train.learning_rate"),
    Case("target-empty", run("target="), "config key 'target'"),
    Case("explainer-empty", run("train.explainer="), "config key 'train.explainer'"),
    Case("eval-batch-absurd", run("evaluate.batch_size=1000000000"), "batch_size of 1 to"),
    Case("layers-repeated", run("generate.layers=[1, 1]"), "distinct block indices"),
    Case(
        "candidate-outputs-negative",
        run("evaluate.candidate_outputs=-1"),
        "evaluate.candidate_outputs",
    ),
    Case("validate-every-negative", run("train.validate_every=-1"), "train.validate_every"),
    Case("patience-negative", run("train.patience=-1"), "train.patience"),
    Case(
        "patience-without-select-best",
        run("train.patience=2", "train.select_best=false"),
        "train.select_best=true",
    ),
    Case("epochs-exponent", run("train.epochs=1e9"), "train.epochs"),
    Case("lr-schedule-unknown", run("train.lr_schedule=exponential"), "cosine, constant"),
    Case("projection-init-unknown", run("train.projection_init=random"), "orthogonal, lstsq"),
    Case("vector-control-unknown", run("train.vector_control=maybe"), "none, zero, shuffled"),
    Case(
        "hints-per-fact-zero", gen("hint", "generate.hints_per_fact=0"), "generate.hints_per_fact"
    ),
    Case("hint-filter-text", gen("hint", "generate.hint_filter=maybe"), "generate.hint_filter"),
    Case(
        "probe-accuracy-above-one",
        gen("features", "generate.min_probe_accuracy=2"),
        "generate.min_probe_accuracy",
    ),
    Case("seed-text", run("seed=abc"), "config key 'seed'"),
    Case("task-wrong-case", run("task=Ablation"), "'Ablation' is not one of"),
    Case("dashboard-text", run("ray.dashboard=maybe"), "ray.dashboard"),
    Case("workers-float", run("train.num_workers=1.5"), "train.num_workers"),
    Case("lora-alpha-negative", run("train.lora_rank=8", "train.lora_alpha=-1"), "lora_alpha > 0"),
    Case("keep-checkpoints-float", run("train.keep_checkpoints=1.5"), "train.keep_checkpoints"),
    Case("grad-accum-zero", run("train.grad_accum=0"), "train.grad_accum"),
    Case("clipping-nan", run("train.gradient_clipping=.nan"), "train.gradient_clipping"),
    Case("override-double-dot", run("train..epochs=1"), "unknown config key 'train.'"),
    Case("ray-address-not-a-host", run("ray.address=not a host"), "nothing answers at not a host"),
    Case(
        "ray-address-http-refused",
        run("ray.address=http://127.0.0.1:3"),
        "nothing answers at 127.0.0.1:3",
    ),
    Case(
        "output-dir-unknown-user",
        run("output_dir=~nosuchuser/runs"),
        "home folder of a user this machine does not have",
    ),
    Case("output-dir-newline", run("output_dir=runs\nx"), "remove the control characters"),
    Case("num-cpus-one", run("ray.num_cpus=1"), "ray.num_cpus"),
    Case("num-cpus-absurd", run("ray.num_cpus=100000"), "ray.num_cpus"),
    Case("ray-address-refused", run("ray.address=127.0.0.1:1"), "nothing answers at 127.0.0.1:1"),
    Case("ray-address-no-port", run("ray.address=127.0.0.1"), "nothing answers at 127.0.0.1:6379"),
    Case(
        "ray-address-client-refused",
        run("ray.address=ray://127.0.0.1:2"),
        "nothing answers at 127.0.0.1:2",
    ),
    Case("seed-negative", run("seed=-1"), "seed"),
    Case("seed-beyond-32-bits", run("seed=4294967296"), "seed"),
    Case("seed-float", run("seed=1.5"), "seed"),
    Case("task-unknown", run("task=translation"), "task"),
    Case("trust-remote-code-text", run("trust_remote_code=maybe"), "trust_remote_code"),
    Case("override-without-equals", run("train.epochs"), "not key=value"),
    Case("override-without-key", run("=3"), "not key=value"),
    Case("override-bad-yaml", run("train.epochs=[1"), "not valid YAML"),
    Case("override-section-as-value", run("train=3"), "'train' must be a section"),
    Case("override-into-a-value", run("train.epochs.x=1"), "'epochs' is not a section"),
]

RUN_NAMES = [
    Case("name-dot-dot", run("name=.."), "config key 'name'"),
    Case("name-dot", run("name=."), "config key 'name'"),
    Case("name-slash", run("name=a/b"), "config key 'name'"),
    Case("name-space", run("name=my run"), "config key 'name'"),
    Case("name-empty", run("name="), "config key 'name'"),
    Case("name-hidden", run("name=.hidden"), "config key 'name'"),
    # YAML would read these as 750 (sexagesimal) and "trial" (a comment): the text is kept
    Case("name-clock-time", run("name=12:30"), "'12:30' is not a safe"),
    Case("name-with-hash", run("name=trial #2"), "'trial #2' is not a safe"),
    Case("name-a-list", run("name=[a, b]"), "config key 'name'"),
    Case("corpus-from-parent", run("corpus_from=../other"), "corpus_from"),
    Case("corpus-from-slash", run("corpus_from=a/b"), "corpus_from"),
    Case("mix-key-parent", run("train.mix={../x: 1}"), "train.mix"),
    Case("output-dir-empty", run("output_dir="), "output_dir"),
    Case("output-dir-is-a-file", run("output_dir=IN/plain.txt"), "is a file", {"plain.txt": "x"}),
    Case("output-dir-unknown-scheme", run("output_dir=nosuch://bucket/runs"), "output_dir"),
    Case("output-dir-in-proc", run("output_dir=/proc/selfexplain"), "is on proc"),
    Case("output-dir-in-sys", run("output_dir=/sys/kernel/runs"), "is on sysfs"),
    Case(
        "output-dir-a-fifo",
        run("output_dir=IN/pipe"),
        "is a FIFO (named pipe), not a folder",
        {"pipe": "FIFO"},
    ),
    Case("output-dir-a-device", run("output_dir=/dev/null/runs"), "is a character device"),
    Case(
        "output-dir-bucket-uppercase",
        run("output_dir=s3://My_Bucket/runs"),
        "'My_Bucket' is not a valid bucket name",
    ),
    Case(
        "output-dir-bucket-too-short",
        run("output_dir=gs://ab/runs"),
        "'ab' is not a valid bucket name",
    ),
    Case("output-dir-bucket-empty", run("output_dir=s3:///runs"), "'' is not a valid bucket name"),
    Case(
        "output-dir-invisible-character",
        run("output_dir=s3://runs\u200b/x"),
        "'runs\\u200b' is not a valid bucket name",
    ),
    Case("target-invisible-character", run("target=/models/tiny\u200b"), "tiny\\u200b"),
    Case("name-invisible-character", run("name=run\u00a0one"), "run\\xa0one"),
]

CONFIG_FILES = [
    Case(
        "config-section-twice",
        ["run", "IN/c.yaml"],
        "c.yaml:4: key 'generate' appears twice",
        {"c.yaml": "name: c\ngenerate:\n  max_items: 4\ngenerate:\n  layers: [1]\n"},
    ),
    Case(
        "config-key-twice-in-section",
        ["run", "IN/c.yaml"],
        "c.yaml:3: key 'epochs' appears twice",
        {"c.yaml": "train:\n  epochs: 1\n  epochs: 2\n"},
    ),
    Case(
        "study-file-key-twice",
        ["study", "IN/s.yaml"],
        "s.yaml:2: key 'name' appears twice",
        {"s.yaml": "name: s\nname: t\n"},
    ),
    Case("section-given-a-list", run("train=[1, 2]"), "'train' must be a section"),
    Case("config-a-folder", ["run", "IN/c.yaml"], "c.yaml", {"c.yaml/x": "x"}),
    Case("config-path-missing", ["run", "IN/missing.yaml"], "missing.yaml not found"),
    Case("config-name-unknown", ["run", "nosuchconfig"], "no config named 'nosuchconfig'"),
    Case(
        "config-bad-yaml",
        ["run", "IN/bad.yaml"],
        "bad.yaml is not valid YAML",
        {"bad.yaml": "a: [1\n"},
    ),
    Case(
        "config-a-list", ["run", "IN/list.yaml"], "must hold a mapping", {"list.yaml": "- a\n- b\n"}
    ),
    Case(
        "config-not-utf8",
        ["run", "IN/latin.yaml"],
        "latin.yaml is not valid YAML",
        {"latin.yaml": b"name: caf\xe9\n"},
    ),
    Case(
        "config-unknown-key",
        ["run", "IN/extra.yaml"],
        "unknown config key 'colour'",
        {"extra.yaml": "name: x\ncolour: red\n"},
    ),
    Case(
        "config-section-a-scalar",
        ["run", "IN/scalar.yaml"],
        "config key 'train' must be a section",
        {"scalar.yaml": "train: 3\n"},
    ),
]

PROMPTS, QUESTIONS, PAIRS = "generate.prompts=IN/", "generate.questions=IN/", "generate.pairs=IN/"
INPUT_FILES = [
    Case(
        "prompts-empty",
        gen("ablation", PROMPTS + "empty.txt"),
        "holds no prompts",
        {"empty.txt": "\n"},
    ),
    Case("prompts-missing", gen("ablation", PROMPTS + "missing.txt"), "missing.txt not found"),
    Case(
        "prompts-a-folder",
        gen("ablation", PROMPTS + "folder.txt"),
        "is a folder",
        {"folder.txt/x": "x"},
    ),
    Case(
        "prompts-not-utf8",
        gen("ablation", PROMPTS + "latin.txt"),
        "latin.txt:1 is not UTF-8",
        {"latin.txt": NOT_UTF8},
    ),
    Case(
        "prompts-jsonl-array",
        gen("ablation", PROMPTS + "p.jsonl"),
        "p.jsonl:2 holds a JSON list",
        {"p.jsonl": '{"prompt": "a b"}\n["The capital of France is"]\n'},
    ),
    Case(
        "prompts-jsonl-bad-json",
        gen("ablation", PROMPTS + "p.jsonl"),
        "p.jsonl:1 is not valid JSON",
        {"p.jsonl": "{prompt\n"},
    ),
    Case(
        "prompts-jsonl-no-field",
        gen("ablation", PROMPTS + "p.jsonl"),
        "p.jsonl:1 has no string field 'prompt'",
        {"p.jsonl": '{"text": "a"}\n'},
    ),
    Case(
        "prompts-jsonl-not-utf8",
        gen("ablation", PROMPTS + "p.jsonl"),
        "p.jsonl:1 is not UTF-8",
        {"p.jsonl": NOT_UTF8},
    ),
    Case(
        "prompts-json-object",
        gen("ablation", PROMPTS + "p.json"),
        "p.json holds a JSON dict",
        {"p.json": '{"a": 1}'},
    ),
    Case(
        "prompts-json-bad",
        gen("ablation", PROMPTS + "p.json"),
        "p.json:1 is not valid JSON",
        {"p.json": "[1,"},
    ),
    Case(
        "prompts-json-numbers",
        gen("ablation", PROMPTS + "p.json"),
        "entry 1 is not a prompt",
        {"p.json": "[1, 2]"},
    ),
    Case(
        "prompts-wrong-suffix",
        gen("ablation", PROMPTS + "p.csv"),
        "p.csv: use a .txt",
        {"p.csv": "a,b\n"},
    ),
    Case("questions-missing", gen("hint", QUESTIONS + "q.jsonl"), "q.jsonl not found"),
    Case(
        "questions-not-utf8",
        gen("hint", QUESTIONS + "q.jsonl"),
        "q.jsonl:1 is not UTF-8",
        {"q.jsonl": NOT_UTF8},
    ),
    Case(
        "questions-array-line",
        gen("hint", QUESTIONS + "q.jsonl"),
        "q.jsonl:1 holds a JSON list",
        {"q.jsonl": "[1]\n"},
    ),
    Case(
        "questions-bad-json",
        gen("hint", QUESTIONS + "q.jsonl"),
        "q.jsonl:1 is not valid JSON",
        {"q.jsonl": "{\n"},
    ),
    Case(
        "questions-answer-out-of-range",
        gen("hint", QUESTIONS + "q.jsonl"),
        "'answer' must be a choice",
        {"q.jsonl": '{"question": "2+2?", "choices": ["3", "4"], "answer": 5}\n'},
    ),
    Case(
        "questions-one-choice",
        gen("hint", QUESTIONS + "q.jsonl"),
        "needs 'question'",
        {"q.jsonl": '{"question": "2+2?", "choices": ["4"], "answer": 0}\n'},
    ),
    Case(
        "questions-empty",
        gen("hint", QUESTIONS + "q.jsonl"),
        "holds no questions",
        {"q.jsonl": "\n"},
    ),
    Case(
        "questions-csv-not-utf8",
        gen("hint", QUESTIONS + "q.csv"),
        "q.csv:1 is not UTF-8",
        {"q.csv": NOT_UTF8},
    ),
    Case(
        "questions-parquet-damaged",
        gen("hint", QUESTIONS + "q.parquet"),
        "not a readable Parquet file",
        {"q.parquet": b"PAR1 not really"},
    ),
    Case(
        "questions-wrong-suffix",
        gen("hint", QUESTIONS + "q.txt"),
        "q.txt: set generate.questions",
        {"q.txt": "x"},
    ),
    Case(
        "pairs-identical",
        gen("patching", PAIRS + "p.jsonl"),
        "must be non-empty and differ",
        {"p.jsonl": '{"prompt": "The capital is", "counterfactual": "The capital is"}\n'},
    ),
    Case(
        "pairs-empty-prompt",
        gen("patching", PAIRS + "p.jsonl"),
        "must be non-empty and differ",
        {"p.jsonl": '{"prompt": "", "counterfactual": "x"}\n'},
    ),
    Case(
        "pairs-entity-a-number",
        gen("patching", PAIRS + "p.jsonl"),
        "p.jsonl:2: field 'entity' must be text, not int",
        {
            "p.jsonl": '{"prompt": "a b", "counterfactual": "a c"}\n'
            '{"prompt": "a b", "counterfactual": "a d", "entity": 5}\n'
        },
    ),
    Case(
        "pairs-relation-a-list",
        gen("patching", PAIRS + "p.jsonl"),
        "field 'relation' must be text, not list",
        {"p.jsonl": '{"prompt": "a b", "counterfactual": "a c", "relation": ["x"]}\n'},
    ),
    Case(
        "questions-choices-numbers",
        gen("hint", QUESTIONS + "q.jsonl"),
        "'choices' and 'subject' must be text",
        {"q.jsonl": '{"question": "q", "choices": [1, 2], "answer": 0}\n'},
    ),
    Case(
        "questions-subject-a-number",
        gen("hint", QUESTIONS + "q.jsonl"),
        "'choices' and 'subject' must be text",
        {"q.jsonl": '{"question": "q", "choices": ["a", "b"], "answer": 0, "subject": 3}\n'},
    ),
    Case(
        "prompts-only-blank-lines",
        gen("ablation", PROMPTS + "p.txt"),
        "holds no prompts",
        {"p.txt": "  \n\n   \n"},
    ),
    Case(
        "prompts-a-fifo",
        gen("ablation", PROMPTS + "p.txt"),
        "is a FIFO (named pipe), not a file",
        {"p.txt": "FIFO"},
    ),
    Case("pairs-missing", gen("patching", PAIRS + "p.jsonl"), "p.jsonl not found"),
    Case(
        "pairs-not-utf8",
        gen("patching", PAIRS + "p.jsonl"),
        "p.jsonl:1 is not UTF-8",
        {"p.jsonl": NOT_UTF8},
    ),
    Case(
        "pairs-array-line",
        gen("patching", PAIRS + "p.jsonl"),
        "p.jsonl:1 holds a JSON list",
        {"p.jsonl": '["a", "b"]\n'},
    ),
    Case(
        "pairs-no-counterfactual",
        gen("patching", PAIRS + "p.jsonl"),
        "needs string fields",
        {"p.jsonl": '{"prompt": "a"}\n'},
    ),
    Case("pairs-empty", gen("patching", PAIRS + "p.jsonl"), "holds no pairs", {"p.jsonl": "\n\n"}),
    Case(
        "pairs-wrong-suffix",
        gen("patching", PAIRS + "p.json"),
        "p.json: set generate.pairs",
        {"p.json": "[]"},
    ),
    Case("lexicon-missing", gen("features", "generate.features=IN/l.tsv"), "l.tsv not found"),
    Case(
        "lexicon-three-fields",
        gen("features", "generate.features=IN/l.tsv"),
        "l.tsv:1 has 3 tab-separated",
        {"l.tsv": "kind\tname\tdescription\n"},
    ),
    Case(
        "lexicon-not-utf8",
        gen("features", "generate.features=IN/l.tsv"),
        "l.tsv:1 is not UTF-8",
        {"l.tsv": NOT_UTF8},
    ),
    Case(
        "lexicon-one-member",
        gen("features", "generate.features=IN/l.tsv"),
        "needs at least 2 members",
        {"l.tsv": "animal\tcat\tcats\tcat\n"},
    ),
    Case(
        "lexicon-duplicate",
        gen("features", "generate.features=IN/l.tsv"),
        "appears twice",
        {"l.tsv": "animal\tcat\tcats\tcat|kitten\nanimal\tcat\tcats\tcat|kitten\n"},
    ),
    Case(
        "sae-cfg-bad-json",
        gen("features", "generate.features=IN/sae"),
        "cfg.json:1 is not valid JSON",
        {"sae/cfg.json": "{", "sae/sae_weights.safetensors": b"x"},
    ),
    Case(
        "sae-cfg-a-list",
        gen("features", "generate.features=IN/sae"),
        "must hold a JSON object",
        {"sae/cfg.json": "[]", "sae/sae_weights.safetensors": b"x"},
    ),
    Case(
        "sae-no-weights",
        gen("features", "generate.features=IN/sae"),
        "sae_weights.safetensors is missing",
        {"sae/cfg.json": "{}"},
    ),
    Case(
        "sae-weights-damaged",
        gen("features", "generate.features=IN/sae"),
        "not a readable safetensors file",
        {
            "sae/cfg.json": '{"hook_name": "blocks.1.hook_resid_post"}',
            "sae/sae_weights.safetensors": b"garbage",
        },
    ),
    Case(
        "sae-hook-not-residual",
        gen("features", "generate.features=IN/sae"),
        "not a residual-stream hook",
        {
            "sae/cfg.json": '{"hook_name": "blocks.1.attn.hook_z"}',
            "sae/sae_weights.safetensors": b"x",
        },
    ),
    Case(
        "sae-without-explanations",
        gen("features", "generate.features=SAE"),
        "generate.explanations",
    ),
    Case(
        "explanations-missing",
        gen("features", "generate.features=SAE", "generate.explanations=IN/e.json"),
        "e.json not found",
    ),
    Case(
        "explanations-not-utf8",
        gen("features", "generate.features=SAE", "generate.explanations=IN/e.jsonl"),
        "e.jsonl:1 is not UTF-8",
        {"e.jsonl": NOT_UTF8},
    ),
    Case(
        "explanations-bad-json",
        gen("features", "generate.features=SAE", "generate.explanations=IN/e.json"),
        "e.json is not valid JSON",
        {"e.json": "[{"},
    ),
    Case(
        "explanations-no-description",
        gen("features", "generate.features=SAE", "generate.explanations=IN/e.json"),
        "entry 1 needs 'index'",
        {"e.json": '[{"index": 0}]'},
    ),
]

TINY = {"model/": "COPY_TINY_MODEL"}
MODEL_FILES = [
    Case("target-missing", run("target=/no/such/model"), "/no/such/model"),
    Case(
        "target-weights-garbage",
        run("target=IN/model"),
        "model.safetensors is not a safetensors file",
        {**TINY, "model/model.safetensors": b"garbage that is long enough to have a header"},
    ),
    Case(
        "target-weights-truncated",
        run("target=IN/model"),
        "model.safetensors is truncated",
        {**TINY, "model/model.safetensors": "TRUNCATED_SAFETENSORS"},
    ),
    Case(
        "target-weights-header-not-json",
        run("target=IN/model"),
        "damaged safetensors header",
        {**TINY, "model/model.safetensors": (8).to_bytes(8, "little") + b"{not js}" + b"0" * 64},
    ),
    Case(
        "target-tokenizer-missing",
        run("target=IN/model"),
        "has no tokenizer files",
        {**TINY, "model/tokenizer.json": None, "model/tokenizer_config.json": None},
    ),
    Case(
        "target-tokenizer-damaged",
        run("target=IN/model"),
        "has no tokenizer that loads",
        {**TINY, "model/tokenizer.json": "{", "model/tokenizer_config.json": "{}"},
    ),
    Case(
        "target-model-type-unknown",
        run("target=IN/model"),
        "model_type 'nosuchmodel' is not known",
        {**TINY, "model/config.json": '{"model_type": "nosuchmodel"}'},
    ),
    Case(
        "explainer-tokenizer-missing",
        run("train.explainer=IN/model"),
        "has no tokenizer files",
        {**TINY, "model/tokenizer.json": None, "model/tokenizer_config.json": None},
    ),
    Case("layers-beyond-depth", run("generate.layers=[1, 99]"), "layer 99 is beyond"),
    Case(
        "explainer-multimodal",
        run("train.explainer=IN/mm"),
        "is a multimodal model; an explainer must be a text model",
        {"mm/": "COPY_MULTIMODAL"},
    ),
    Case(
        "self-explainer-multimodal",
        run("target=IN/mm"),
        "(target) is a multimodal model",
        {"mm/": "COPY_MULTIMODAL"},
    ),
    Case(
        "lora-module-typo",
        run("train.lora_rank=8", "train.lora_target_modules=q_prj"),
        "has no module 'q_prj'",
    ),
    Case(
        "explainer-gguf-missing",
        run("train.explainer=/no/such/explainer.gguf"),
        "/no/such/explainer.gguf",
    ),
    Case(
        "target-not-gguf",
        run("target=IN/model.gguf"),
        "is not a GGUF file",
        {"model.gguf": "hello"},
    ),
    Case(
        "target-gguf-empty", run("target=IN/model.gguf"), "is not a GGUF file", {"model.gguf": b""}
    ),
    Case(
        "target-gguf-truncated",
        run("target=IN/cut.gguf"),
        "damaged or truncated",
        {"cut.gguf": "TRUNCATED_GGUF"},
    ),
    Case(
        "target-dir-no-config",
        run("target=IN/model"),
        "has no config.json",
        {"model/weights.bin": b"x"},
    ),
    Case(
        "target-config-bad-json",
        run("target=IN/model"),
        "config.json:1 is not valid JSON",
        {"model/config.json": "{", "model/model.safetensors": b"x"},
    ),
    Case(
        "target-config-not-utf8",
        run("target=IN/model"),
        "config.json is not valid JSON",
        {"model/config.json": b"\xff", "model/model.safetensors": b"x"},
    ),
    Case(
        "target-config-no-model-type",
        run("target=IN/model"),
        "names no model_type",
        {"model/config.json": "{}", "model/model.safetensors": b"x"},
    ),
    Case(
        "target-pickled-weights-only",
        run("target=IN/model"),
        "no *.safetensors weights",
        {"model/config.json": '{"model_type": "llama"}', "model/pytorch_model.bin": b"x"},
    ),
    Case(
        "explainer-config-bad-json",
        run("train.explainer=IN/model"),
        "config.json:1 is not valid JSON",
        {"model/config.json": "{", "model/model.safetensors": b"x"},
    ),
]

# An existing run folder (RUNS/tiny) whose corpus holds a damaged file.
CORPUS = "RUNS/tiny/corpus/"
EXISTING_CORPUS = [
    Case("train-without-corpus", run(command="train"), "run `selfexplain generate` first"),
    Case(
        "manifest-bad-json",
        run(command="train"),
        "manifest.json is not valid JSON; delete it",
        {CORPUS + "manifest.json": "{"},
    ),
    Case(
        "manifest-empty",
        run(command="train"),
        "manifest.json is not valid JSON; delete it",
        {CORPUS + "manifest.json": ""},
    ),
    Case(
        "manifest-a-list",
        run(command="evaluate"),
        "is not a selfexplain manifest",
        {CORPUS + "manifest.json": "[]"},
    ),
    Case(
        "shard-damaged",
        run(command="generate"),
        "shard-00000.parquet is damaged",
        {CORPUS + "shard-00000.parquet": b"PAR1garbagePAR1"},
    ),
    Case(
        "shard-empty",
        run(command="generate"),
        "shard-00001.parquet is damaged",
        {CORPUS + "shard-00001.parquet": b""},
    ),
    Case(
        "shard-not-a-corpus",
        run(command="generate"),
        "is not a selfexplain shard",
        {CORPUS + "shard-00000.parquet": "OTHER_PARQUET"},
    ),
    Case(
        "plan-other-settings",
        run(command="generate"),
        "made with other settings",
        {CORPUS + "plan.json": '{"fingerprint": "x"}', CORPUS + "shard-00000.parquet": "SHARD_0"},
    ),
    Case(
        "plan-bad-json",
        run(command="generate"),
        "plan.json is not valid JSON",
        {CORPUS + "plan.json": "{"},
    ),
    Case("corpus-from-missing-run", run("corpus_from=ghost", command="train"), "ghost/corpus"),
    Case("mix-run-without-corpus", run("train.mix={ghost: 1}", command="train"), "ghost/corpus"),
]

# A finished corpus (two shards in the tiny target's ablation schema), then damaged.
FINISHED = {CORPUS: "FINISHED_CORPUS"}
EXPORT = {"RUNS/tiny/explainer/": "COPY_EXPORT"}  # the tiny model, exported for ablation
SHARD_1, REJECTS_0 = CORPUS + "shard-00001.parquet", CORPUS + "rejects/shard-00000.parquet"
FINISHED_CORPUS = [
    Case(
        "corpus-column-dropped",
        run(command="train"),
        "missing column(s) changed",
        {**FINISHED, SHARD_1: "SHARD_WITHOUT_CHANGED"},
    ),
    Case(
        "corpus-column-retyped",
        run(command="train"),
        "column changed is string",
        {**FINISHED, SHARD_1: "SHARD_CHANGED_AS_TEXT"},
    ),
    Case(
        "corpus-shard-copied-over-another",
        run(command="train"),
        "both hold record",
        {**FINISHED, SHARD_1: "SHARD_0"},
    ),
    Case("corpus-shard-lost", run(command="train"), "shard-00001.parquet is missing",
         {**FINISHED, SHARD_1: None}),
    Case(
        "corpus-shard-unlisted",
        run(command="evaluate"),
        "which its manifest does not list",
        {**FINISHED, CORPUS + "shard-00002.parquet": "SHARD_0"},
    ),
    Case(
        "corpus-rows-differ-from-manifest",
        run(command="train"),
        "holds 3 rows, its manifest says 5",
        {**FINISHED, CORPUS + "manifest.json": "MANIFEST_ROWS_5"},
    ),
    Case("corpus-rejects-lost", run(command="train"), "rejects/shard-00000.parquet is missing",
         {**FINISHED, REJECTS_0: None}),
    Case(
        "corpus-rejects-damaged",
        run(command="train"),
        "rejects/shard-00000.parquet is damaged",
        {**FINISHED, REJECTS_0: b"PAR1xxPAR1"},
    ),
    Case(
        "corpus-manifest-unknown-task",
        run(command="train"),
        "names no known task ('translation')",
        {**FINISHED, CORPUS + "manifest.json": "MANIFEST_TASK_TRANSLATION"},
    ),
    Case(
        "evaluate-without-export",
        run(command="evaluate"),
        "no trained explainer at",
        FINISHED,
    ),
    Case(
        "evaluate-export-weights-damaged",
        run(command="evaluate"),
        "model.safetensors is not a safetensors file",
        {**FINISHED, **EXPORT, "RUNS/tiny/explainer/model.safetensors": b"garbage"},
    ),
    Case(
        "evaluate-export-info-lost",
        run(command="evaluate"),
        "selfexplain.json missing",
        {**FINISHED, **EXPORT, "RUNS/tiny/explainer/selfexplain.json": None},
    ),
    Case(
        "evaluate-export-other-task",
        run(command="evaluate"),
        "was trained for features, not 'ablation'",
        {**FINISHED, **EXPORT, "RUNS/tiny/explainer/selfexplain.json":
         '{"tasks": ["features"], "target_model": "tiny-llama"}'},
    ),
]  # fmt: skip

STUDY = ["study", "study-quick", "output_dir=RUNS"]
STUDIES = [
    Case("study-task-overrides-a-number", [*STUDY, "tasks={ablation: 5}"], "key 'tasks'"),
    Case("study-fractions-a-number", [*STUDY, "data_fractions=0.5"], "data_fractions"),
    Case("study-fraction-zero", [*STUDY, "data_fractions=[0]"], "data_fractions"),
    Case("study-scaling-unknown", [*STUDY, "scaling_explainers=[third]"], "scaling_explainers"),
    Case("study-name-parent", [*STUDY, "name=../x"], "study key 'name'"),
    Case(
        "study-output-dir-empty", ["study", "study-quick", "output_dir="], "study key 'output_dir'"
    ),
    Case("study-unknown-task", [*STUDY, "tasks={translation: {}}"], "study key 'tasks'"),
    Case("study-run-key-unknown", [*STUDY, "train.lrr=1"], "unknown config key 'train.lrr'"),
    Case("study-controls-unknown", [*STUDY, "controls=[magic]"], "study key 'controls'"),
    Case(
        "in-distribution-by-unknown",
        [*STUDY, "train.in_distribution_by=unit"],
        "'train.in_distribution_by'",
    ),  # fmt: skip
    Case("study-control-explainers", [*STUDY, "control_explainers=[]"], "'control_explainers'"),
    Case("study-rate-negative", [*STUDY, "learning_rates=[-1e-4]"], "study key 'learning_rates'"),
    Case("study-rates-repeated", [*STUDY, "learning_rates=[1e-4, 1e-4]"], "'learning_rates'"),
    Case("study-sweep-epochs-zero", [*STUDY, "sweep_epochs=0"], "study key 'sweep_epochs'"),
    Case(
        "study-vector-control-unknown", [*STUDY, "vector_control=one"], "study key 'vector_control'"
    ),
    Case(
        "study-swapped-unknown-task", [*STUDY, "swapped={translation: {}}"], "study key 'swapped'"
    ),
    Case("study-base-missing", [*STUDY, "base=nosuch"], "no config named 'nosuch'"),
    Case("study-unknown-name", ["study", "nosuchstudy"], "no study named 'nosuchstudy'"),
    Case("study-other-missing", [*STUDY, "other_explainer=/no/such/model"], "/no/such/model"),
    Case(
        "study-file-bad-yaml",
        ["study", "IN/s.yaml"],
        "s.yaml is not valid YAML",
        {"s.yaml": "tasks: {\n"},
    ),
    Case("study-file-lacks-keys", ["study", "IN/s.yaml"], "lacks", {"s.yaml": "name: s\n"}),
    Case("study-override-bad-yaml", [*STUDY, "data_fractions=[0.5"], "not valid YAML"),
]

FEATURES_EXPLAINER, ABLATION_EXPLAINER = "EXPLAINERS/features", "EXPLAINERS/ablation"


def ask(*args: str, folder: str = FEATURES_EXPLAINER) -> list[str]:
    return ["explain", folder, *args]


def vector_query(vector, layer: int = 1) -> str:
    return json.dumps({"vector": vector, "layer": layer}) + "\n"


EXPLAIN = [
    Case(
        "explainer-folder-missing",
        ask(folder="IN/nothing"),
        "is not a trained selfexplain explainer",
    ),
    Case(
        "explainer-info-bad-json",
        ask(folder="IN/broken"),
        "selfexplain.json:1 is not valid JSON",
        {"broken/selfexplain.json": "{"},
    ),
    Case(
        "explainer-info-no-tasks",
        ask(folder="IN/broken"),
        "must name its tasks",
        {"broken/selfexplain.json": '{"target_model": "tiny-llama"}'},
    ),
    Case(
        "explainer-info-unknown-task",
        ask(folder="IN/broken"),
        "must name its tasks",
        {"broken/selfexplain.json": '{"tasks": ["poetry"], "target_model": "tiny-llama"}'},
    ),
    Case("queries-missing", ask("--queries", "IN/q.jsonl"), "q.jsonl not found"),
    Case("queries-empty", ask("--queries", "IN/q.jsonl"), "holds no queries", {"q.jsonl": "\n"}),
    Case(
        "queries-bad-json",
        ask("--queries", "IN/q.jsonl"),
        "q.jsonl:2 is not valid JSON",
        {"q.jsonl": vector_query([1.0] * 64) + "{oops\n"},
    ),
    Case(
        "queries-array-line",
        ask("--queries", "IN/q.jsonl"),
        "q.jsonl:1 holds a JSON list",
        {"q.jsonl": "[1]\n"},
    ),
    Case(
        "queries-not-utf8",
        ask("--queries", "IN/q.jsonl"),
        "q.jsonl:1 is not UTF-8",
        {"q.jsonl": NOT_UTF8},
    ),
    Case(
        "max-new-tokens-zero",
        ask("--vector", "IN/v.npy", "--layer", "1", "--max-new-tokens", "0"),
        "--max-new-tokens",
        {"v.npy": "VECTOR_64"},
    ),
    Case(
        "max-new-tokens-huge",
        ask("--vector", "IN/v.npy", "--layer", "1", "--max-new-tokens", "100000"),
        "--max-new-tokens",
        {"v.npy": "VECTOR_64"},
    ),
    Case(
        "vector-nan",
        ask("--queries", "IN/q.jsonl"),
        "NaN or infinite",
        {"q.jsonl": vector_query([1.0] * 63 + ["NaN"]).replace('"NaN"', "NaN")},
    ),
    Case(
        "vector-inf",
        ask("--queries", "IN/q.jsonl"),
        "NaN or infinite",
        {"q.jsonl": vector_query([1.0] * 63 + ["Inf"]).replace('"Inf"', "Infinity")},
    ),
    Case(
        "vector-zero",
        ask("--queries", "IN/q.jsonl"),
        "all zeros",
        {"q.jsonl": vector_query([0.0] * 64)},
    ),
    Case(
        "vector-wrong-width",
        ask("--queries", "IN/q.jsonl"),
        "vectors of 64 numbers",
        {"q.jsonl": vector_query([1.0] * 10)},
    ),
    Case(
        "vector-not-numbers",
        ask("--queries", "IN/q.jsonl"),
        "'vector' must be a list of numbers",
        {"q.jsonl": vector_query(["a"] * 64)},
    ),
    Case(
        "vector-layer-untrained",
        ask("--queries", "IN/q.jsonl"),
        "trained on layers [1, 2]",
        {"q.jsonl": vector_query([1.0] * 64, layer=3)},
    ),
    Case(
        "vector-layer-text",
        ask("--queries", "IN/q.jsonl"),
        "'layer' must be an integer",
        {"q.jsonl": json.dumps({"vector": [1.0] * 64, "layer": "one"}) + "\n"},
    ),
    Case(
        "vector-file-missing", ask("--vector", "IN/none.npy", "--layer", "1"), "none.npy not found"
    ),
    Case(
        "vector-file-not-npy",
        ask("--vector", "IN/v.npy", "--layer", "1"),
        "is not a .npy array",
        {"v.npy": "not numpy"},
    ),
    Case(
        "vector-file-2d",
        ask("--vector", "IN/v.npy", "--layer", "1"),
        "has shape (2, 64)",
        {"v.npy": "VECTOR_2x64"},
    ),
    Case(
        "query-missing-field",
        ask("--queries", "IN/q.jsonl"),
        "missing layer",
        {"q.jsonl": json.dumps({"vector": [1.0] * 64}) + "\n"},
    ),
    Case(
        "query-other-task",
        ask("--queries", "IN/q.jsonl"),
        "trained for features, not 'ablation'",
        {"q.jsonl": json.dumps({"task": "ablation", "prompt": "a", "token_index": 0}) + "\n"},
    ),
    Case(
        "token-index-out-of-range",
        ask(
            "--prompt", "The capital of France is", "--token-index", "99", folder=ABLATION_EXPLAINER
        ),
        "token_index 99 is outside",
    ),
    Case(
        "token-index-text",
        ask("--queries", "IN/q.jsonl", folder=ABLATION_EXPLAINER),
        "'token_index' must be an integer",
        {"q.jsonl": json.dumps({"prompt": "a b", "token_index": "2"}) + "\n"},
    ),
    Case(
        "prompt-not-text",
        ask("--queries", "IN/q.jsonl", folder=ABLATION_EXPLAINER),
        "'prompt' must be text",
        {"q.jsonl": json.dumps({"prompt": 5, "token_index": 0}) + "\n"},
    ),
    Case(
        "interface-bad-json",
        ask("--vector", "IN/v.npy", "--layer", "1", folder="IN/features"),
        "vector_interface.json:1 is not valid JSON",
        {"v.npy": "VECTOR_64", "features/": "COPY_FEATURES", "features/vector_interface.json": "{"},
    ),
    Case(
        "interface-missing-key",
        ask("--vector", "IN/v.npy", "--layer", "1", folder="IN/features"),
        "key 'd_target'",
        {
            "v.npy": "VECTOR_64",
            "features/": "COPY_FEATURES",
            "features/vector_interface.json": '{"target_model": "tiny-llama", "layers": [1]}',
        },
    ),
]


def _parquet(columns: dict) -> bytes:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


def imports(source: str, task: str) -> list[str]:
    return ["import", "tiny", source, "output_dir=RUNS", f"task={task}"]


IMPORTS = [
    Case("import-source-missing", imports("IN/nothing", "patching"), "import source"),
    Case(
        "import-task-without-release",
        imports("IN/data", "ablation"),
        "the paper released no ablation data",
        {"data/train.parquet": "x"},
    ),
    Case(
        "import-no-dataset-files",
        imports("IN/data", "patching"),
        "holds no dataset files",
        {"data/README.md": "a dataset card"},
    ),
    Case(
        "import-columns-missing",
        imports("IN/data", "patching"),
        "lacks the patching dataset columns",
        {"data/data/train-00000-of-00001.parquet": _parquet({"layer": [[1]]})},
    ),
    Case(
        "import-parquet-damaged",
        imports("IN/data", "hint"),
        "not a readable Parquet file",
        {"data/train.parquet": "PAR1 but not really"},
    ),
    Case(
        "import-jsonl-damaged",
        imports("IN/data", "hint"),
        "train.jsonl:2 is not JSON",
        {"data/train.jsonl": '{"hint": "x"}\n{oops\n'},
    ),
    Case(
        "import-archive-missing",
        imports("IN/archive", "features"),
        "no explanations/train_explanations.pkl",
        {"archive/features/layer_1.pkl": "x"},
    ),
    Case(
        "import-archive-not-a-list",
        imports("IN/archive", "features"),
        "holds no list of (example, label) pairs",
        {"archive/explanations/train_explanations.pkl": pickle.dumps(7)},
    ),
]

CASES = (
    CONFIG_VALUES
    + RUN_NAMES
    + CONFIG_FILES
    + INPUT_FILES
    + MODEL_FILES
    + EXISTING_CORPUS
    + FINISHED_CORPUS
    + STUDIES
    + EXPLAIN
    + IMPORTS
)


def test_the_table_holds_over_a_hundred_distinct_cases():
    assert len(CASES) >= 100 and len({case.id for case in CASES}) == len(CASES)


@pytest.fixture(scope="module")
def sandbox_inputs(tmp_path_factory):
    """Inputs that are expensive to make, made once: a valid SAE, two explainer folders (a
    features one reading the tiny target's 64-wide vectors at layers 1 and 2, an ablation one),
    a truncated GGUF file and a Parquet file that is not a corpus shard."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from selfexplain.features.saelens import write_saelens

    root = tmp_path_factory.mktemp("shared")
    write_saelens(root / "sae", torch.randn(4, 64), layer=1, model_name="tiny-llama")
    model = resolve_model_dir("tiny-llama")
    for task in ("features", "ablation"):
        folder = root / "explainers" / task
        shutil.copytree(model, folder)
        (folder / "selfexplain.json").write_text(
            json.dumps({"tasks": [task], "target_model": "tiny-llama"})
        )
    (root / "explainers/features/vector_interface.json").write_text(
        json.dumps(
            {
                "target_model": "tiny-llama",
                "layers": [1, 2],
                "d_target": 64,
                "d_explainer": 64,
                "projected": False,
                "rescale": True,
            }
        )
    )
    header = (
        b"GGUF" + (3).to_bytes(4, "little") + (10).to_bytes(8, "little") + (1).to_bytes(8, "little")
    )
    (root / "cut.gguf").write_bytes(header + b"\x00" * 16)  # declares 10 tensors, holds none
    pq.write_table(pa.table({"x": [1]}), root / "other.parquet")
    _finished_corpus(root)
    save_tiny_family("gemma3", root / "multimodal", model)
    export = root / "explainers/export"
    shutil.copytree(model, export)
    (export / "selfexplain.json").write_text(
        json.dumps({"tasks": ["ablation"], "target_model": "tiny-llama"})
    )
    (export / "README.md").write_text("an explainer\n")
    (root / "cut.safetensors").write_bytes((model / "model.safetensors").read_bytes()[:4096])
    np.save(root / "v64.npy", np.ones(64, dtype=np.float32))
    np.save(root / "v2x64.npy", np.ones((2, 64), dtype=np.float32))
    return root


def _finished_corpus(root: Path) -> None:
    """A finished two-shard corpus of the tiny target (64 wide) in the ablation task's schema,
    and damaged variants of its files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from selfexplain.corpus.schema import REJECTS_SCHEMA
    from selfexplain.tasks import get_task

    schema = get_task("ablation").schema(64)

    def value(field, row):
        kind = field.type
        if pa.types.is_string(kind):
            return f"{field.name}-{row}"
        if pa.types.is_boolean(kind):
            return row % 2 == 0
        if pa.types.is_fixed_size_list(kind):
            return [0.0] * kind.list_size
        if pa.types.is_list(kind):
            return [0]
        return 0

    corpus = root / "corpus"
    (corpus / "rejects").mkdir(parents=True)
    shards = []
    for index in range(2):
        rows = [{f.name: value(f, 3 * index + r) for f in schema} for r in range(3)]
        name = f"shard-{index:05d}.parquet"
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), corpus / name)
        pq.write_table(REJECTS_SCHEMA.empty_table(), corpus / "rejects" / name)
        shards.append({"file": name, "rows": 3, "rejected": 0})
    manifest = {"task": "ablation", "target": "tiny-llama", "shards": shards}
    (corpus / "manifest.json").write_text(json.dumps(manifest))
    shard = pq.read_table(corpus / "shard-00001.parquet")
    pq.write_table(shard.drop_columns(["changed"]), root / "without-changed.parquet")
    retyped = shard.set_column(
        shard.schema.get_field_index("changed"), "changed", shard["changed"].cast(pa.string())
    )
    pq.write_table(retyped, root / "changed-as-text.parquet")
    for name, change in (("rows-5", {"shards": [{**shards[0], "rows": 5}, shards[1]]}),
                         ("task-translation", {"task": "translation"})):  # fmt: skip
        (root / f"manifest-{name}.json").write_text(json.dumps({**manifest, **change}))


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_one_clear_line_and_exit_2(
    case, sandbox_inputs, tmp_path, monkeypatch, capsys
):
    import ray

    def ray_must_not_start(*args, **kwargs):
        raise AssertionError(
            "Ray started: this bad input was not caught before the cluster came up"
        )

    monkeypatch.setattr(ray, "init", ray_must_not_start)
    monkeypatch.chdir(tmp_path)  # a relative path written by mistake lands in the sandbox
    shared = {
        "TRUNCATED_GGUF": "cut.gguf",
        "OTHER_PARQUET": "other.parquet",
        "VECTOR_64": "v64.npy",
        "VECTOR_2x64": "v2x64.npy",
        "SHARD_0": "corpus/shard-00000.parquet",
        "SHARD_WITHOUT_CHANGED": "without-changed.parquet",
        "SHARD_CHANGED_AS_TEXT": "changed-as-text.parquet",
        "MANIFEST_ROWS_5": "manifest-rows-5.json",
        "MANIFEST_TASK_TRANSLATION": "manifest-task-translation.json",
        "TRUNCATED_SAFETENSORS": "cut.safetensors",
    }
    folders = {
        "COPY_FEATURES": sandbox_inputs / "explainers/features",
        "FINISHED_CORPUS": sandbox_inputs / "corpus",
        "COPY_EXPORT": sandbox_inputs / "explainers/export",
        "COPY_TINY_MODEL": resolve_model_dir("tiny-llama"),
        "COPY_MULTIMODAL": sandbox_inputs / "multimodal",
    }
    places = {
        "IN": tmp_path / "in",
        "RUNS": tmp_path / "runs",
        "EXPLAINERS": sandbox_inputs / "explainers",
        "SAE": sandbox_inputs / "sae",
    }
    for name, content in case.files.items():
        path = (
            Path(name.replace("RUNS/", f"{places['RUNS']}/"))
            if name.startswith("RUNS/")
            else places["IN"] / name
        )
        if content in folders:
            shutil.copytree(folders[content], path)
            continue
        if content is None:  # a file of a copied folder, lost
            path.unlink()
            continue
        if content == "FIFO":
            path.parent.mkdir(parents=True, exist_ok=True)
            os.mkfifo(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if content in shared:
            shutil.copy(sandbox_inputs / shared[content], path)
        else:
            path.write_bytes(content.encode() if isinstance(content, str) else content)
    argv = [
        arg.replace("IN/", f"{places['IN']}/")
        .replace("RUNS", str(places["RUNS"]))
        .replace("EXPLAINERS", str(places["EXPLAINERS"]))
        .replace("=SAE", f"={places['SAE']}")
        for arg in case.argv
    ]
    before = _files(tmp_path)

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("selfexplain: error:") and "\n" not in err, err
    assert case.expected in err, err
    assert _files(tmp_path) == before, "a bad input left files behind"


@pytest.mark.parametrize(
    "override, expected",
    [
        # Google Cloud Storage retries an unreachable endpoint for many minutes
        ("output_dir=gs://selfexplain-no-such-bucket/runs", "did not answer in 3 s"),
        ("output_dir=s3://selfexplain-no-such-bucket/runs", "selfexplain-no-such-bucket"),
    ],
    ids=["gs-unreachable", "s3-unreachable"],
)
def test_an_object_store_that_does_not_answer_fails_within_seconds(
    override, expected, monkeypatch, tmp_path, capsys
):
    import time

    import selfexplain.places

    monkeypatch.setattr(selfexplain.places, "PROBE_TIMEOUT_S", 3.0)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # the real AWS endpoint, unreachable
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    assert main(run(override)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("selfexplain: error:") and "\n" not in err and expected in err, err
    assert time.monotonic() - started < 30
