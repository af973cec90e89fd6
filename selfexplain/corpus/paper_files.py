"""Reading the paper's released datasets in their own layouts (TransluceAI/introspective-interp),
from a local folder or an object store, without the ``datasets`` library or the hub.

- Activation patching (``Transluce/act_patch_*_counterfact``) and hint removal
  (``Transluce/input_ablation_*_hint``) are Hugging Face datasets: Parquet files per split, as
  the hub stores them (``data/train-00000-of-00001.parquet``), or ``<split>.parquet``, or
  ``<split>/*.parquet``; JSON Lines in the same places are read too. The paper's loaders take
  them with ``load_dataset(name, split=...)`` (``dataloaders/act_patch.py`` lines 26-30,
  ``dataloaders/hint_attribution.py`` lines 53-57).
- Feature descriptions (the SAE feature + Neuronpedia explanation archive) are pickles:
  ``explanations/<split>_explanations.pkl``, a list of ``((layer, feature_idx), label)`` pairs
  (``dataloaders/features_explain_utils.py`` lines 19-32; the label's ``chosen_label`` is the
  description, ``dataloaders/features_explain.py`` line 157), and ``features/layer_<L>.pkl``, the
  SAE's decoder as a ``d_model x n_features`` array whose column is a feature's direction
  (``dataloaders/features_explain.py`` lines 47-58). Pickles are read with an unpickler that
  builds arrays, tensors and plain containers only: a pickle is a program, and one from a
  download must not run anything else.
"""

from __future__ import annotations

import io
import json
import pickle
import re
from collections.abc import Iterator
from functools import cache

import numpy as np
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from selfexplain.errors import InputError
from selfexplain.storage import Location

SPLITS = ("train", "test")


class PaperFileError(InputError):
    """A source folder or file that is not in the paper's layout; the message names it."""


def split_files(source: Location) -> dict[str, list[Location]]:
    """``split -> files`` of a dataset folder in the hub's layout (every split found, the
    paper's ``train`` and ``test`` and any other), in name order."""
    selector = pafs.FileSelector(source.path, recursive=True, allow_not_found=True)
    infos = [i for i in source.fs.get_file_info(selector) if i.type == pafs.FileType.File]
    found: dict[str, list[Location]] = {}
    for info in sorted(infos, key=lambda i: i.path):
        relative = info.path[len(source.path.rstrip("/")) + 1 :]
        split = _split_of(relative)
        if split:
            found.setdefault(split, []).append(source / relative)
    if not found:
        raise PaperFileError(
            f"{source} holds no dataset files: give the folder of a downloaded dataset, with "
            "data/<split>-00000-of-0000N.parquet, <split>.parquet or <split>/*.parquet files"
        )
    return found


_SPLIT_FILE = re.compile(r"(?:^|/)(?P<split>[A-Za-z]+)(?:-\d{5}-of-\d{5})?\.(?:parquet|jsonl)$")
_SPLIT_DIR = re.compile(r"(?:^|/)(?P<split>[A-Za-z]+)/[^/]+\.(?:parquet|jsonl)$")


def _split_of(relative: str) -> str | None:
    if relative.startswith(".") or "/." in relative:
        return None
    match = _SPLIT_FILE.search(relative) or _SPLIT_DIR.search(relative)
    return match.group("split") if match else None


def read_records(file: Location, columns: tuple[str, ...] = (), what: str = "") -> Iterator[dict]:
    """A Parquet or JSON Lines file's rows as dicts (nested columns as lists and dicts). A Parquet
    file must have ``columns``, the ones its loader requires (act_patch.py lines 37-46 check the
    same); in JSON Lines a missing field rejects its row."""
    if file.path.endswith(".jsonl"):
        for number, line in enumerate(file.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as err:
                raise PaperFileError(f"{file}:{number} is not JSON ({err.msg})") from None
        return
    try:
        table = pq.read_table(file.path, filesystem=file.fs)
    except Exception as err:  # pyarrow raises several kinds for a damaged file
        raise PaperFileError(f"{file} is not a readable Parquet file ({err})") from None
    missing = [c for c in columns if c not in table.schema.names]
    if missing:
        raise PaperFileError(f"{file} lacks the {what} columns {missing}; is it the right dataset?")
    yield from table.to_pylist()


# --- pickles --------------------------------------------------------------------------------

# What a pickled array, tensor or container needs, and nothing else.
_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch.storage", "_load_from_bytes"),
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED or (module == "numpy.dtypes" and name.endswith("DType")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it asks for {module}.{name}, which is not an array")


def read_pickle(file: Location):
    """A pickle of arrays, tensors and containers (refused when it would build anything else)."""
    if not file.is_file():
        raise PaperFileError(f"{file} not found; the features layout has it (see docs/import.md)")
    try:
        return _ArraysOnly(io.BytesIO(file.read_bytes())).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise PaperFileError(f"{file} cannot be read as a pickle of arrays ({err})") from None


@cache
def _decoder(folder_uri: str, layer: int):
    """``features/layer_<L>.pkl`` as a float32 numpy array (d_model x n_features)."""
    weights = read_pickle(Location(folder_uri) / f"layer_{layer}.pkl")
    array = weights.detach().float().numpy() if hasattr(weights, "detach") else weights
    array = np.asarray(array, dtype=np.float32)
    if array.ndim != 2:
        raise PaperFileError(
            f"{folder_uri}/layer_{layer}.pkl holds an array of shape {array.shape}; the layout "
            "has a d_model x n_features decoder"
        )
    return array


def feature_direction(features: Location, layer: int, index: int):
    """The decoder column of feature ``index`` at ``layer`` (``weights[:, feature_idx]``,
    features_explain.py line 57), or None when the file has no such column."""
    decoder = _decoder(features.uri, layer)
    return decoder[:, index] if 0 <= index < decoder.shape[1] else None
