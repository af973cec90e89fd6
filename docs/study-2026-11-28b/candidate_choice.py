"""One-off diagnostic (stop 21): the hint explainers of the finished study scored by *candidate
choice* (the likeliest of the well-formed answers, as the untrained baseline is scored) instead of
free greedy decoding, on the same held-out queries."""
import time

import torch
torch.set_num_threads(2)
# Run from the repository root: .venv/bin/python docs/study-2026-11-28b/candidate_choice.py
# (the study run folder /work/studyruns is that of docs/results.md, stop 21)
from selfexplain.study.config import load_study
from selfexplain.evaluate.evaluate import read_scored_corpus, target_layers, trained_export
from selfexplain.tasks import get_task, ScoringContext
from selfexplain.explainer.export import load_explainer
from selfexplain.evaluate.likelihood import most_likely
from selfexplain.models.loading import resolve_model_dir
study = load_study("study", ["output_dir=/work/studyruns"])
task = get_task("hint")
for role in ("self", "other"):
    config = study.run_config("hint", role, 1.0)
    corpus = read_scored_corpus(config, task)
    held = corpus.queries["held-out"]
    context = ScoringContext(config.seed, corpus.train_rows, corpus.table, target_layers(config))
    cands = task.candidate_answers(held, context)
    queries = [task.format_query(r) for r in held]
    for kind, ref in (("trained", resolve_model_dir(trained_export(config).uri)), ("untrained", config.explainer_ref)):
        t = time.perf_counter()
        model, tok = load_explainer(str(ref))
        picked = [task.parse_answer(a) for a in most_likely(model, tok, queries, cands, 16)]
        scored = task.score(held, {"x": picked}, context)["x"]
        print(role, kind, "candidate choice: exact %.3f [%.2f, %.2f] balanced %.3f" % (scored["exact_match"], *scored["exact_match_ci"], scored["balanced_accuracy"]), "n", scored["n"], "%.0fs" % (time.perf_counter() - t), flush=True)
