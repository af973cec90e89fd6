"""Template families of free-text prompts: what an ablation prompt is held out by.

Holding out single prompts is not enough: "The capital of Germany is" is held out, but its
template siblings "The capital of France is" and "The capital city of Russia is" are trained
on, and the explainer only has to copy their answers. A *family* is a connected group of
prompts that differ from one another in few words (a word-level edit distance of 1, or of 2
when both have at least 4 words): the entity slot, plus one optional word or a second slot. Families
are the connected components of that relation over the whole prompt set, so they do not depend on
the order or the split.
"""

from __future__ import annotations

import re

from selfexplain.corpus.schema import stable_id


def _words(prompt: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]", prompt.lower())


def _word_distance(a: list[str], b: list[str], limit: int) -> int:
    """Levenshtein distance over words, stopping early once it must exceed ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, word in enumerate(a, 1):
        current = [i]
        for j, other in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != other))
            )
        if min(current) > limit:
            return limit + 1
        previous = current
    return previous[-1]


def _allowed_edits(a: list[str], b: list[str]) -> int:
    return 1 if min(len(a), len(b)) < 4 else 2


def prompt_families(prompts: list[str]) -> dict[str, str]:
    """``prompt -> family id`` (the id of the family's first prompt in sorted order)."""
    words = {p: _words(p) for p in prompts}
    ordered = sorted(words)
    parent = {p: p for p in ordered}

    def root(p: str) -> str:
        while parent[p] != p:
            parent[p] = parent[parent[p]]
            p = parent[p]
        return p

    for i, a in enumerate(ordered):
        for b in ordered[i + 1 :]:
            limit = _allowed_edits(words[a], words[b])
            if _word_distance(words[a], words[b], limit) <= limit:
                ra, rb = root(a), root(b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    return {p: stable_id("family", root(p)) for p in prompts}
