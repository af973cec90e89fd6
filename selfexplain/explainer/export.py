"""The export format of a trained explainer: a plain HF directory, plus its vector interface and
its info record; saved by training's rank 0, read by evaluation and ``selfexplain explain``.

The directory loads with ``transformers.AutoModelForCausalLM.from_pretrained`` alone (its
tokenizer includes the vector placeholder tokens). A vector-task explainer adds two small files:
``vector_interface.json`` (placeholder token, target model and layers, sizes, rescaling and its
reference norm) and, when a projection was trained, ``vector_projection.safetensors``. Every
export has ``selfexplain.json`` (:class:`ExplainerInfo`: tasks, target, explainer base) and a
model card, ``README.md``, written last: its presence marks a complete export.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from selfexplain.explainer.interface import INTERFACE, ExplainerFileError, VectorInterface
from selfexplain.explainer.templates import DEFAULT_TEMPLATES, TEMPLATE_SETS
from selfexplain.explainer.vectors import ExplainerWithVectors, VectorProjection, vector_markers
from selfexplain.inputs import read_text
from selfexplain.models.loading import load_model, resolve_model_dir

PROJECTION = "vector_projection.safetensors"
EXPORT_DIR = "explainer"
"""The export's folder name inside a run folder."""
EXPLAINER_INFO = "selfexplain.json"
MODEL_CARD = "README.md"
"""Written last: a folder with a model card is a complete export."""


@dataclass(frozen=True)
class ExplainerInfo:
    """What evaluation and ``selfexplain explain`` need to know of an explainer: its tasks, the
    target whose computations it explains, and the model it was fine-tuned from."""

    tasks: tuple[str, ...]
    target_model: str
    explainer_base: str = ""
    run: str = ""
    corpus_config_hash: str | dict[str, str] = field(default="")
    """The generate-config hash of the corpus trained on (by corpus run, for a task mix)."""
    templates: str = "selfexplain"
    """The set of query templates it was trained in (``templates``): it is asked in the same."""
    training_fingerprint: str = ""
    """The run's training settings (target, task, seed, generate, train), hashed: a rerun of the
    name with other settings is refused instead of reusing this explainer. Empty in older
    exports."""

    def to_json(self) -> str:
        data = {**asdict(self), "tasks": list(self.tasks)}
        if len(self.tasks) == 1:
            data["task"] = self.tasks[0]  # older readers look for one task
        return json.dumps(data, indent=2)

    @classmethod
    def read(cls, folder: Path, known_tasks) -> ExplainerInfo:
        """``selfexplain.json``, checked: it names its tasks (of ``known_tasks``) and target."""
        path = folder / EXPLAINER_INFO
        if not path.is_file():
            raise ExplainerFileError(
                f"{folder} is not a trained selfexplain explainer ({EXPLAINER_INFO} missing); "
                "point at runs/<name>/explainer"
            )
        try:
            data = json.loads(read_text(path, ExplainerFileError, "explainer info"))
        except json.JSONDecodeError as err:
            raise ExplainerFileError(
                f"{path}:{err.lineno} is not valid JSON ({err.msg}); export the explainer again"
            ) from None
        tasks = data.get("tasks") or (
            [data["task"]] if isinstance(data, dict) and "task" in data else None
        )
        if (
            not isinstance(data, dict)
            or not isinstance(tasks, list)
            or not tasks
            or set(tasks) - set(known_tasks)
            or not isinstance(data.get("target_model"), str)
            or data.get("templates", DEFAULT_TEMPLATES) not in TEMPLATE_SETS
        ):
            raise ExplainerFileError(
                f"{path} must name its tasks (of {sorted(known_tasks)}), target_model and a "
                f"templates set of {sorted(TEMPLATE_SETS)}; export the explainer again"
            )
        return cls(
            tuple(tasks),
            data["target_model"],
            str(data.get("explainer_base", "")),
            str(data.get("run", "")),
            data.get("corpus_config_hash", ""),
            data.get("templates", DEFAULT_TEMPLATES),
            str(data.get("training_fingerprint", "")),
        )


def has_export(folder) -> bool:
    """A complete explainer export is at ``folder`` (a Location): its model card is written last."""
    return (folder / MODEL_CARD).exists()


def save_explainer(
    module,
    tokenizer,
    out_dir: Path,
    interface: VectorInterface | None,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> None:
    """``module`` is the LM or an :class:`ExplainerWithVectors`; ``state_dict`` a consolidated one
    (ZeRO-3) with the same key names as ``module``, or None to read the module's own."""
    with_vectors = isinstance(module, ExplainerWithVectors)
    lm = module.lm if with_vectors else module
    lm_state = projection_state = None
    if state_dict is not None and with_vectors:
        lm_state = {k[len("lm.") :]: v for k, v in state_dict.items() if k.startswith("lm.")}
        projection_state = {
            k[len("projection.") :]: v for k, v in state_dict.items() if k.startswith("projection.")
        }
    elif state_dict is not None:
        lm_state = state_dict
    lm.save_pretrained(out_dir, state_dict=lm_state, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    if with_vectors:
        (out_dir / INTERFACE).write_text(interface.to_json())
        if module.projection is not None:
            if projection_state is None:
                projection_state = module.projection.state_dict()
            save_file(
                {k: v.detach().float().contiguous().cpu() for k, v in projection_state.items()},
                str(out_dir / PROJECTION),
            )


def load_explainer(
    folder: str | Path, device="cpu", dtype=torch.float32, trust_remote_code: bool = False
):
    """(model, tokenizer): the LM, or an :class:`ExplainerWithVectors` when the folder has a vector
    interface."""

    folder = resolve_model_dir(str(folder))  # a local folder, or a URI copied to this node
    lm, tokenizer = load_model(
        folder, device=device, dtype=dtype, trust_remote_code=trust_remote_code
    )
    interface_path = folder / INTERFACE
    if not interface_path.is_file():
        return lm, tokenizer
    interface = VectorInterface.read(interface_path)
    projection = None
    if interface.projected:
        projection = VectorProjection(
            list(interface.layers), interface.d_target, interface.d_explainer
        )
        projection.load_state_dict(load_file(str(folder / PROJECTION)))
        projection.to(device=device, dtype=dtype)
    model = ExplainerWithVectors(
        lm,
        tokenizer.convert_tokens_to_ids(vector_markers(tokenizer).placeholder),
        projection,
        interface.rescale,
        interface.reference_norm,
    )
    model.interface = interface
    return model.eval(), tokenizer
