"""Held-out splits by prompt: every row of one prompt lands in the same split.

The split comes from a hash of the prompt id and the seed, not from row order, so it is the
same however the job is sharded, and adding prompts never moves an old prompt across splits.
"""

from __future__ import annotations

import hashlib


def split_for(prompt_id: str, held_out_fraction: float, seed: int) -> str:
    digest = hashlib.sha256(f"{seed}:{prompt_id}".encode()).digest()
    unit = int.from_bytes(digest[:8], "big") / 2**64
    return "test" if unit < held_out_fraction else "train"
