"""Ask a trained explainer: one query from the command line, or many from a file or Python.

    from selfexplain.explain import Explainer
    explainer = Explainer("runs/demo/explainer")
    explainer.ask([{"prompt": "The capital of France is", "token_index": 3}])

A query names what the task needs: ablation ``prompt`` + ``token_index``; hint ``question``,
``choices``, ``hint_letter`` (the target's hinted answer is computed); patching ``prompt`` +
``counterfactual`` + ``layer`` + ``position`` (the patched vector is computed from the target);
features ``vector`` (a list or a .npy path) + ``layer``. The task and the target come from the
explainer's ``selfexplain.json``.
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


class Explainer:
    def __init__(self, folder: str | Path, device: str = "cpu"):
        folder = Path(folder)
        info_path = folder / EXPLAINER_INFO
        if not info_path.is_file():
            raise FileNotFoundError(f"{folder} is not a trained selfexplain explainer ({EXPLAINER_INFO} missing); "
                                    "point at runs/<name>/explainer")
        self.info = json.loads(info_path.read_text())
        self.task = get_task(self.info["task"])
        self.model, self.tokenizer = load_explainer(folder, device=device)
        self._target = None

    def target(self):
        """The target model (loaded on first use: only queries that need its activations do)."""
        if self._target is None:
            from selfexplain.models.loading import load_model

            self._target = load_model(self.info["target_model"])
        return self._target

    def ask(self, queries: list[dict], batch_size: int = 16, max_new_tokens: int = 24) -> list[str]:
        rows = [self._row(query) for query in queries]
        vectors = layers = None
        if self.task.vector_input:
            vectors, layers = vector_batch(rows)
        answers = generate_answers(self.model, self.tokenizer, [self.task.format_query(r) for r in rows],
                                   batch_size, max_new_tokens, vectors, layers)
        return [answer.strip().split("\n", 1)[0] for answer in answers]

    def _row(self, query: dict) -> dict:
        name = self.task.name
        need = {"ablation": ("prompt", "token_index"), "hint": ("question", "choices", "hint_letter"),
                "patching": ("prompt", "counterfactual", "layer", "position"), "features": ("vector", "layer")}[name]
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
            from selfexplain.tasks.hint import LETTERS, _letter_probs, render

            model, tokenizer = self.target()
            row["prompt"] = render(query, query["hint_letter"], tokenizer)
            probs = _letter_probs(model, tokenizer, [row["prompt"]], len(query["choices"]))[0]
            row["answer_with_hint"] = LETTERS[int(probs.argmax())]
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
