"""The ``selfexplain`` command line: one subcommand per pipeline stage, plus ``run`` for all."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from pathlib import Path

from selfexplain.config import describe_fields, load_config, packaged_configs
from selfexplain.errors import InputError
from selfexplain.interrupts import Interrupted, stop_on_signals
from selfexplain.tasks import TASK_NAMES, get_task

CONFIG_HELP = "a packaged config name ({names}) or a path to a YAML file"
OVERRIDE_HELP = "config overrides as key=value, e.g. train.epochs=2 generate.max_items=50"


def _config_epilog() -> str:
    lines = ["config keys (override any with key=value):"]
    for key, default, doc in describe_fields():
        lines.append(f"  {key} = {default}\n      {doc}")
    return "\n".join(lines)


STAGES = (
    ("generate", "Write the config's task's ground-truth corpus as Parquet shards with a Ray Data "
     f"job (task=... picks one of {', '.join(TASK_NAMES)})."),
    ("train", "Fine-tune the explainer on the corpus with Ray Train + DeepSpeed and export it."),
    ("evaluate", "Score the trained explainer on held-out prompts against baselines."),
    ("run", "Generate, train and evaluate in one local Ray session, then print the results table."),
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="selfexplain",
        description="Train language models to explain their own computations: ground truth from "
        "interpretability (Ray Data -> Parquet), explainers fine-tuned with Ray Train + "
        "DeepSpeed, evaluated on held-out queries.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    names = ", ".join(packaged_configs())
    for name, help_text in STAGES:
        sub = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=_config_epilog(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument("config", help=CONFIG_HELP.format(names=names))
        sub.add_argument("overrides", nargs="*", metavar="key=value", help=OVERRIDE_HELP)
    _add_import(commands, names)
    _add_study(commands)
    _add_explain(commands)
    return parser


def _add_import(commands, names: str) -> None:
    text = (
        "Write the paper's released data as the config's corpus: task=patching reads an "
        "act_patch_*_counterfact dataset, task=hint an input_ablation_*_hint dataset (folders of "
        "Parquet files per split, as the hub stores them), task=features the SAE explanation "
        "archive (explanations/<split>_explanations.pkl, features/layer_<L>.pkl). The paper's "
        "train/test splits are kept; bad records are rejected with a reason and counted; a "
        "rerun finishes an interrupted import. Then `selfexplain train` as after generate."
    )
    sub = commands.add_parser("import", help=text.split(":")[0] + ".", description=text)
    sub.add_argument("config", help=CONFIG_HELP.format(names=names))
    sub.add_argument("source", help="the dataset's folder, or its object-store URI (s3://...)")
    sub.add_argument("overrides", nargs="*", metavar="key=value", help=OVERRIDE_HELP)


def _add_study(commands) -> None:
    study = commands.add_parser(
        "study",
        help="Self vs other explainers on identical data, controls, a data-scaling sweep, "
        "baselines, and a report.",
        description="Run a study (corpus per task; self and other explainers trained on the same "
        "rows; controls; scaling sweep; evaluation with baselines) and write "
        "<output_dir>/<name>/report/ (results.csv, results.json, report.md, report.html with "
        "plots). A rerun reuses finished stages.",
    )
    studies = ", ".join(_studies())
    study.add_argument("config", help=f"a packaged study ({studies}) or a study YAML path")
    study.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="study keys (name=..., data_fractions=[0.5,1.0]) or run-config keys for every run "
        "(train.epochs=1)",
    )
    only = study.add_mutually_exclusive_group()
    only.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: write the report from the stages already scored (a study under way)",
    )
    only.add_argument(
        "--status",
        action="store_true",
        help="run nothing: list each stage's state (done, training and its last checkpoint, not "
        "started) and the hours the finished stages took",
    )


def _add_explain(commands) -> None:
    ask = commands.add_parser(
        "explain",
        help="Ask a trained explainer about one query, or every query of a JSONL file.",
        description="Ask a trained explainer (runs/<name>/explainer). Give the query's fields as "
        "options, or --queries FILE.jsonl with one query object a line (the same field names).",
    )
    ask.add_argument("explainer", help="a trained explainer folder, e.g. runs/demo/explainer")
    for field, (kind, tasks) in _query_options().items():
        ask.add_argument(
            f"--{field.replace('_', '-')}",
            dest=field,
            type=kind,
            help=f"a query field of {', '.join(tasks)} (a vector: a .npy file)",
        )
    ask.add_argument(
        "--task",
        help="an explainer trained on a task mix: the query's task "
        "(default: the task whose fields the query gives)",
    )
    ask.add_argument(
        "--queries", help="a .jsonl file of queries; answers are printed one JSON object a line"
    )
    ask.add_argument("--max-new-tokens", type=int, default=24, dest="max_new_tokens")


def _query_options() -> dict[str, tuple[type, list[str]]]:
    """Every task's query fields that fit on a command line (an int, or text such as a path),
    with the tasks that use each."""
    options: dict[str, tuple[type, list[str]]] = {}
    for name in TASK_NAMES:
        for field, kind in get_task(name).query_fields.items():
            kinds = kind if isinstance(kind, tuple) else (kind,)
            if int in kinds or str in kinds:
                options.setdefault(field, (int if int in kinds else str, []))[1].append(name)
    return options


def _studies() -> list[str]:
    # deferred: `--help` and a bad config answer in 0.2 s, without torch, Ray or DeepSpeed
    from selfexplain.study.config import packaged_studies

    return packaged_studies()


def _study(args) -> None:
    # deferred: `--help` and a bad config answer in 0.2 s, without torch, Ray or DeepSpeed
    from selfexplain.evaluate.report import markdown_table
    from selfexplain.study.config import load_study
    from selfexplain.study.runner import run_study

    study = load_study(args.config, args.overrides)
    if args.status:
        from selfexplain.study.status import status_markdown, study_status

        print(status_markdown(study_status(study)))
        return
    if args.report_only:
        from selfexplain.storage import Location
        from selfexplain.study.report import write_report

        timings = Location(study.folder) / "timings.json"
        summary = write_report(study, timings.read_json() if timings.exists() else {})
    else:
        summary = run_study(study)
    for title, table in summary["tables"].items():
        print(f"\n{title}\n\n{markdown_table(table)}")
    print(f"\nreport: {summary['report']}/report.html")


def _explain(args) -> None:
    # deferred: `--help` and a bad config answer in 0.2 s, without torch, Ray or DeepSpeed
    from selfexplain.explain import Explainer, QueryError
    from selfexplain.inputs import read_jsonl

    if args.queries:  # read (and fail) before the model loads
        queries = [
            record
            for _, record in read_jsonl(
                Path(args.queries),
                QueryError,
                "queries file",
                "give a .jsonl file of query objects",
            )
        ]
        if not queries:
            raise QueryError(
                f"queries file {args.queries} holds no queries; write one JSON object a line"
            )
    else:
        fields = ("task", *_query_options())
        queries = [{key: getattr(args, key) for key in fields if getattr(args, key) is not None}]
    explainer = Explainer(args.explainer)
    answers = explainer.ask(queries, max_new_tokens=args.max_new_tokens)
    for query, answer in zip(queries, answers):
        print(
            json.dumps(
                {
                    **{k: v for k, v in query.items() if k != "vector" or isinstance(v, str)},
                    "answer": answer,
                }
            )
            if args.queries
            else answer
        )


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # no "Loading weights" bar from every process that loads a model (the stages show their own);
    # set before the parser is built, which imports the tasks (and transformers reads it at import)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not args.verbose:  # the scorer's "Loading SentenceTransformer model from <path>"
        logging.getLogger("sentence_transformers").setLevel(logging.WARNING)
    stop_on_signals()
    try:
        _run(args)
    except (InputError, FileNotFoundError) as err:
        # one line, naming the file or key and the fix; the checks ran before anything was written
        print(f"selfexplain: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except Interrupted as stop:
        rerun = shlex.join(["selfexplain", *(sys.argv[1:] if argv is None else argv)])
        resume = f"; rerun to continue from there: {rerun}" if args.command != "explain" else ""
        kept = _what_was_kept(args)
        print(f"selfexplain: interrupted by {stop}; {kept}{resume}", file=sys.stderr)
        return stop.exit_code
    return 0


def _what_was_kept(args) -> str:
    """Where the finished part of an interrupted command is, for the rerun to reuse."""
    if args.command == "explain":
        return "nothing was saved"
    try:
        if args.command == "study":
            from selfexplain.study.config import load_study  # deferred: as in _study

            folder = load_study(args.config, args.overrides).folder
        else:
            folder = load_config(args.config, args.overrides).run_dir
    except InputError:  # cannot happen after the command started; say less rather than fail
        return "the finished shards, checkpoints and reports are kept"
    return f"the finished shards, checkpoints and reports are kept under {folder}"


def _run(args) -> None:
    # deferred: `--help` and a bad config answer in 0.2 s, without torch, Ray or DeepSpeed
    from selfexplain import pipeline
    from selfexplain.evaluate.report import markdown_table

    if args.command == "explain":
        _explain(args)
        return
    overrides = list(getattr(args, "overrides", []))
    if args.command == "study":
        _study(args)
        return
    config = load_config(args.config, overrides)
    if args.command == "import":
        print(f"corpus written to {pipeline.run_import(config, args.source)}")
    elif args.command == "generate":
        print(f"corpus written to {pipeline.run_generate(config)}")
    elif args.command == "train":
        print(f"explainer exported to {pipeline.run_train(config)}")
    elif args.command == "evaluate":
        for corpus, table in pipeline.run_evaluate(config).items():
            print(f"\n{corpus}: held-out queries\n\n{markdown_table(table)}")
    else:
        outcome = pipeline.run_all(config)
        for corpus, table in outcome.results.items():
            scored_on = f"the corpus of {corpus}" if config.train.mix else f"{config.task}"
            print(
                f"\n{config.name}: {scored_on}, held-out queries "
                f"(target {config.target}, explainer {config.explainer_ref})\n"
            )
            print(markdown_table(table))
        stages = ", ".join(f"{k} {v:.0f}s" for k, v in outcome.seconds.items())
        print(f"\nstages: {stages}; outputs in {config.run_dir}/")


if __name__ == "__main__":
    sys.exit(main())
