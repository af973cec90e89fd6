"""Ask a trained explainer: one query from the command line, or many from a file or Python.

    from selfexplain.explain import Explainer
    explainer = Explainer("runs/demo/explainer")
    explainer.ask([{"prompt": "The capital of France is", "token_index": 3}])

A query names what the task needs: ablation ``prompt`` + ``token_index``; hint ``question``,
``choices``, ``hint_letter`` (rendered in the target's chat template); patching ``prompt`` +
``counterfactual`` + ``layer`` + ``position`` (the patched vector is computed from the target);
features ``vector`` (a list or a .npy path) + ``layer``. The tasks and the target come from the
explainer's ``selfexplain.json``. An explainer trained on a task mix answers each query in the
task its fields name (or its ``task`` field, when given).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from selfexplain.corpus.schema import stable_id
from selfexplain.evaluate.generation import generate_answers
from selfexplain.explainer.export import load_explainer
from selfexplain.explainer.vectors import vector_batch
from selfexplain.tasks import get_task
from selfexplain.train.loop import EXPLAINER_INFO


class QueryError(ValueError):
    """A query lacks what its task needs; the message names the missing field."""


# The fields a query of each task must hold.
QUERY_FIELDS = {"ablation": ("prompt", "token_index"), "hint": ("question", "choices", "hint_letter"),
                "patching": ("prompt", "counterfactual", "layer", "position"), "features": ("vector", "layer")}


class Explainer:
    def __init__(self, folder: str | Path, device: str = "cpu"):
        folder = Path(folder)
        info_path = folder / EXPLAINER_INFO
        if not info_path.is_file():
            raise FileNotFoundError(f"{folder} is not a trained selfexplain explainer ({EXPLAINER_INFO} missing); "
                                    "point at runs/<name>/explainer")
        self.info = json.loads(info_path.read_text())
        self.tasks = self.info.get("tasks") or [self.info["task"]]
        self.model, self.tokenizer = load_explainer(folder, device=device)
        self._target = None

    def target(self):
        """The target model (loaded on first use: only queries that need its activations do)."""
        if self._target is None:
            from selfexplain.models.loading import load_model

            self._target = load_model(self.info["target_model"])
        return self._target

    def ask(self, queries: list[dict], batch_size: int = 16, max_new_tokens: int = 24) -> list[str]:
        names = [self._task_of(query) for query in queries]
        rows = [self._row(query, name) for query, name in zip(queries, names)]
        answers = [""] * len(rows)
        for name in dict.fromkeys(names):  # one batched decode per task
            task = get_task(name)
            picked = [i for i, n in enumerate(names) if n == name]
            vectors = layers = None
            if task.vector_input:
                vectors, layers = vector_batch([rows[i] for i in picked])
            decoded = generate_answers(self.model, self.tokenizer, [task.format_query(rows[i]) for i in picked],
                                       batch_size, max_new_tokens, vectors, layers)
            for i, answer in zip(picked, decoded):
                answers[i] = answer.strip().split("\n", 1)[0]
        return answers

    def _task_of(self, query: dict) -> str:
        """The query's task: its ``task`` field, the explainer's only task, or the task whose fields
        the query holds (the one needing the most fields, as patching's include ablation's prompt)."""
        if "task" in query:
            if query["task"] not in self.tasks:
                raise QueryError(f"this explainer was trained for {', '.join(self.tasks)}, not {query['task']!r}")
            return query["task"]
        if len(self.tasks) == 1:
            return self.tasks[0]
        fitting = [name for name in self.tasks if all(key in query for key in QUERY_FIELDS[name])]
        if not fitting:
            wanted = "; ".join(f"{name}: {', '.join(QUERY_FIELDS[name])}" for name in self.tasks)
            raise QueryError(f"the query's fields {sorted(query)} fit none of this explainer's tasks ({wanted})")
        return max(fitting, key=lambda name: len(QUERY_FIELDS[name]))

    def _row(self, query: dict, name: str) -> dict:
        need = QUERY_FIELDS[name]
        missing = [key for key in need if key not in query]
        if missing:
            raise QueryError(f"a {name} query needs {', '.join(need)}; missing {', '.join(missing)}")
        row = dict(query, record_id=stable_id(json.dumps(query, sort_keys=True, default=str)))
        if name == "ablation":
            ids = self.tokenizer(query["prompt"])["input_ids"]
            if not 0 <= int(query["token_index"]) < len(ids):
                raise QueryError(f"token_index {query['token_index']} is outside the prompt's {len(ids)} tokens")
            row["token"] = self.tokenizer.decode([ids[int(query["token_index"])]])
        elif name == "hint":
            from selfexplain.tasks.hint import render

            _, tokenizer = self.target()  # the target's chat template renders the prompt
            row["prompt"] = render(query, query["hint_letter"], tokenizer)
        elif name == "patching":
            from selfexplain.models.patching import capture_component

            model, tokenizer = self.target()
            ids, cf_ids = (tokenizer(query[key])["input_ids"] for key in ("prompt", "counterfactual"))
            position, layer = int(query["position"]), int(query["layer"])
            if len(ids) != len(cf_ids) or not 0 <= position < len(ids):
                raise QueryError("prompt and counterfactual must tokenize to the same length, with position inside")
            source = capture_component(model, torch.tensor(cf_ids), [layer], query.get("component", "residual"))
            row.update(vector=source[layer][position].numpy(), token=tokenizer.decode([ids[position]]))
        elif isinstance(query["vector"], str):
            row["vector"] = np.load(query["vector"], allow_pickle=False)  # never unpickle a user file
        return row
