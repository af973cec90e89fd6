"""The KV cache's argument and output names, which moved between transformers versions."""

from __future__ import annotations

import inspect


def cache_argument(model) -> str:
    """transformers 5.2x renamed ``past_key_values`` to ``cache``; older versions know only the
    former."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def output_cache(output):
    """The cache a forward with ``use_cache=True`` returned."""
    return output["cache"] if "cache" in output else output["past_key_values"]
