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
from selfexplain.errors import InputError
from selfexplain.evaluate.generation import generate_answers
from selfexplain.explainer.export import load_explainer
from selfexplain.explainer.interface import INTERFACE, VectorInterface
from selfexplain.explainer.vectors import vector_batch
from selfexplain.inputs import read_text
from selfexplain.tasks import get_task
from selfexplain.train.loop import EXPLAINER_INFO


class QueryError(InputError):
    """A query lacks what its task needs; the message names the missing field."""


MAX_NEW_TOKENS = 1024
"""The longest answer `explain` decodes (the longest real answer is tens of tokens)."""

# The fields a query of each task must hold.
QUERY_FIELDS = {"ablation": ("prompt", "token_index"), "hint": ("question", "choices", "hint_letter"),
                "patching": ("prompt", "counterfactual", "layer", "position"), "features": ("vector", "layer")}


class Explainer:
    """A trained explainer. Its small files (info, vector interface, tokenizer) are read and
    checked at once; the model loads on the first question, after the queries were checked."""

    def __init__(self, folder: str | Path, device: str = "cpu"):
        from selfexplain.models.loading import load_tokenizer

        self.folder, self.device = Path(folder), device
        self.info = read_explainer_info(self.folder)
        self.tasks = self.info["tasks"]
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

            self._target = load_model(self.info["target_model"])
        return self._target

    def ask(self, queries: list[dict], batch_size: int = 16, max_new_tokens: int = 24) -> list[str]:
        if not queries:
            raise QueryError("no queries given; give one query's fields, or a --queries file with one object a line")
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
        for key in ("token_index", "layer", "position"):
            if key in need and (not isinstance(query[key], int) or isinstance(query[key], bool)):
                raise QueryError(f"'{key}' must be an integer, got {query[key]!r}")
        for key in ("prompt", "counterfactual", "question", "hint_letter"):
            if key in need and not isinstance(query[key], str):
                raise QueryError(f"'{key}' must be text, got {query[key]!r}")
        row = dict(query, record_id=stable_id(json.dumps(query, sort_keys=True, default=str)))
        if name == "ablation":
            ids = self.tokenizer(query["prompt"])["input_ids"]
            if not 0 <= int(query["token_index"]) < len(ids):
                raise QueryError(f"token_index {query['token_index']} is outside the prompt's {len(ids)} tokens")
            row["token"] = self.tokenizer.decode([ids[int(query["token_index"])]])
        elif name == "hint":
            from selfexplain.tasks.hint import LETTERS

            choices = query["choices"]
            if not isinstance(choices, list) or not 2 <= len(choices) <= len(LETTERS):
                raise QueryError(f"'choices' must be a list of 2-{len(LETTERS)} options")
            if query["hint_letter"] not in LETTERS[: len(choices)]:
                raise QueryError(f"'hint_letter' {query['hint_letter']!r}: use one of {LETTERS[: len(choices)]}")
            from selfexplain.tasks.hint import render

            _, tokenizer = self.target()  # the target's chat template renders the prompt
            row["prompt"] = render(query, query["hint_letter"], tokenizer)
        elif name == "patching":
            from selfexplain.models.patching import capture_component

            model, tokenizer = self.target()
            ids, cf_ids = (tokenizer(query[key])["input_ids"] for key in ("prompt", "counterfactual"))
            position, layer = int(query["position"]), int(query["layer"])
            trained = list(self.interface.layers) if self.interface else []
            if trained and layer not in trained:
                raise QueryError(f"'layer' {layer}: this explainer was trained on layers {trained}")
            if len(ids) != len(cf_ids) or not 0 <= position < len(ids):
                raise QueryError("prompt and counterfactual must tokenize to the same length, with position inside")
            source = capture_component(model, torch.tensor(cf_ids), [layer], query.get("component", "residual"))
            row.update(vector=source[layer][position].numpy(), token=tokenizer.decode([ids[position]]))
        else:
            row["vector"] = self._checked_vector(query)
        return row

    def _checked_vector(self, query: dict) -> np.ndarray:
        """A features query's vector: finite, non-zero, of the target's width, at a trained layer."""
        vector = query["vector"]
        if isinstance(vector, str):
            path = Path(vector)
            if not path.is_file():
                raise QueryError(f"vector file {path} not found; give a .npy file holding one 1-D vector")
            try:
                vector = np.load(path, allow_pickle=False)  # never unpickle a user file
            except (ValueError, OSError) as err:
                raise QueryError(f"vector file {path} is not a .npy array ({err}); save it with numpy.save") from None
        try:
            vector = np.asarray(vector, dtype=np.float32)
        except (TypeError, ValueError):
            raise QueryError("'vector' must be a list of numbers or a .npy path") from None
        width = self.interface.d_target if self.interface else None
        layers = list(self.interface.layers) if self.interface else []
        if vector.ndim != 1 or (width and vector.shape[0] != width):
            raise QueryError(f"'vector' has shape {tuple(vector.shape)}; this explainer reads vectors of "
                             f"{width} numbers (the target's hidden size)")
        if not np.isfinite(vector).all():
            raise QueryError("'vector' holds NaN or infinite values; give a finite direction")
        if not np.any(vector):
            raise QueryError("'vector' is all zeros: a zero direction has nothing to describe")
        if not isinstance(query["layer"], int) or (layers and query["layer"] not in layers):
            raise QueryError(f"'layer' {query['layer']!r}: this explainer was trained on layers {layers}")
        return vector


def read_explainer_info(folder: Path) -> dict:
    """The explainer's ``selfexplain.json``, checked: it names its tasks and target."""
    from selfexplain.config import TASKS

    info_path = folder / EXPLAINER_INFO
    if not info_path.is_file():
        raise QueryError(f"{folder} is not a trained selfexplain explainer ({EXPLAINER_INFO} missing); "
                         "point at runs/<name>/explainer")
    try:
        info = json.loads(read_text(info_path, QueryError, "explainer info"))
    except json.JSONDecodeError as err:
        raise QueryError(f"{info_path}:{err.lineno} is not valid JSON ({err.msg}); export the explainer again") from None
    tasks = info.get("tasks") or ([info["task"]] if isinstance(info, dict) and "task" in info else None)
    if (not isinstance(info, dict) or not isinstance(tasks, list) or not tasks or set(tasks) - TASKS
            or not isinstance(info.get("target_model"), str)):
        raise QueryError(f"{info_path} must name its tasks (of {sorted(TASKS)}) and target_model; "
                         "export the explainer again")
    return {**info, "tasks": tasks}
