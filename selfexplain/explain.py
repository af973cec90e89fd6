"""Ask a trained explainer: one query from the command line, or many from a file or Python.

    from selfexplain.explain import Explainer
    explainer = Explainer("runs/demo/explainer")
    explainer.ask([{"prompt": "The capital of France is", "token_index": 3}])

A query names what the task needs: ablation ``prompt`` + ``token_index``; hint ``question`` (a
fact prompt) + ``hint_answer`` (the answer the hint names), or with ``choices`` a multiple-choice
question and the hinted letter (rendered in the target's chat template); patching ``prompt`` +
``counterfactual`` + ``layer`` + ``position`` (the patched vector is computed from the target);
features ``vector`` (a list or a .npy path) + ``layer``. The tasks and the target come from the
explainer's ``selfexplain.json``. An explainer trained on a task mix answers each query in the
task its fields name (or its ``task`` field, when given).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from selfexplain.corpus.schema import stable_id
from selfexplain.evaluate.generation import generate_answers
from selfexplain.explainer.export import ExplainerInfo, load_explainer
from selfexplain.explainer.interface import INTERFACE, VectorInterface
from selfexplain.explainer.vectors import vector_batch
from selfexplain.tasks import TASK_NAMES, QueryContext, QueryError, get_task

__all__ = ["Explainer", "QueryError", "MAX_NEW_TOKENS"]

MAX_NEW_TOKENS = 1024
"""The longest answer `explain` decodes (the longest real answer is tens of tokens)."""


class Explainer:
    """A trained explainer. Its small files (info, vector interface, tokenizer) are read and
    checked at once; the model loads on the first question, after the queries were checked."""

    def __init__(self, folder: str | Path, device: str = "cpu"):
        # deferred: a bad query fails before torch and transformers load
        from selfexplain.models.loading import load_tokenizer

        self.folder, self.device = Path(folder), device
        self.info = ExplainerInfo.read(self.folder, TASK_NAMES)
        self.tasks = list(self.info.tasks)
        interface_file = self.folder / INTERFACE
        self.interface = VectorInterface.read(interface_file) if interface_file.is_file() else None
        self.tokenizer = load_tokenizer(self.folder)  # resolving the folder checks it is a model
        self._model = None
        self._target = None

    @property
    def model(self):
        if self._model is None:
            self._model, self.tokenizer = load_explainer(self.folder, device=self.device)
        return self._model

    def target(self):
        """The target model (loaded on first use: only queries that need its activations do)."""
        if self._target is None:
            from selfexplain.models.loading import load_model

            self._target = load_model(self.info.target_model)
        return self._target

    def ask(self, queries: list[dict], batch_size: int = 16, max_new_tokens: int = 24) -> list[str]:
        if not queries:
            raise QueryError(
                "no queries given; give one query's fields, or a --queries file with one object a "
                "line"
            )
        if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
            raise QueryError(f"--max-new-tokens {max_new_tokens}: use 1 to {MAX_NEW_TOKENS}")
        names = [self._task_of(query) for query in queries]
        rows = [self._row(query, name) for query, name in zip(queries, names)]
        answers = [""] * len(rows)
        for name in dict.fromkeys(names):  # one batched decode per task
            task = get_task(name)
            picked = [i for i, n in enumerate(names) if n == name]
            vectors = layers = None
            if task.vector_input:
                vectors, layers = vector_batch([rows[i] for i in picked])
            decoded = generate_answers(
                self.model,
                self.tokenizer,
                [task.format_query({**rows[i], "templates": self.info.templates}) for i in picked],
                batch_size,
                max_new_tokens,
                vectors,
                layers,
            )
            for i, answer in zip(picked, decoded):
                answers[i] = answer.strip().split("\n", 1)[0]
        return answers

    def _task_of(self, query: dict) -> str:
        """The query's task: its ``task`` field, the explainer's only task, or the task whose fields
        the query holds (the one needing the most fields, as patching's include ablation's
        prompt)."""
        if "task" in query:
            if query["task"] not in self.tasks:
                raise QueryError(
                    f"this explainer was trained for {', '.join(self.tasks)}, not {query['task']!r}"
                )
            return query["task"]
        if len(self.tasks) == 1:
            return self.tasks[0]
        fields = {name: get_task(name).query_fields for name in self.tasks}
        fitting = [name for name in self.tasks if all(key in query for key in fields[name])]
        if not fitting:
            wanted = "; ".join(f"{name}: {', '.join(fields[name])}" for name in self.tasks)
            raise QueryError(
                f"the query's fields {sorted(query)} fit none of this explainer's tasks ({wanted})"
            )
        return max(fitting, key=lambda name: len(fields[name]))

    def _row(self, query: dict, name: str) -> dict:
        """The query as a row the task can ask: its fields checked, then completed by the task."""
        task = get_task(name)
        missing = [key for key in task.query_fields if key not in query]
        if missing:
            raise QueryError(
                f"a {name} query needs {', '.join(task.query_fields)}; missing {', '.join(missing)}"
            )
        for key, kind in task.query_fields.items():
            value = query[key]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                kinds = kind if isinstance(kind, tuple) else (kind,)
                raise QueryError(
                    f"'{key}' must be "
                    f"{' or '.join(_KIND_NAMES.get(k, k.__name__) for k in kinds)}, "
                    f"got {value!r}"
                )
        context = QueryContext(
            target=self.target,
            tokenizer=self.tokenizer,
            layers=tuple(self.interface.layers) if self.interface else (),
            width=self.interface.d_target if self.interface else 0,
        )
        row = task.query_row(query, context)
        # The phrasing is drawn from the record id: key it on what is asked (a vector by its
        # values), so the same vector gets the same phrasing from a list or any file holding it.
        asked = {key: row.get(key, query[key]) for key in task.query_fields}
        return {**row, "record_id": stable_id(json.dumps(asked, sort_keys=True, default=_as_json))}


def _as_json(value):
    return np.asarray(value).tolist() if hasattr(value, "__array__") else str(value)


_KIND_NAMES = {int: "an integer", str: "text", list: "a list"}
