"""Concept directions: the offline default source of features with known descriptions.

For each concept of a lexicon (member words, a one-line description), the direction at a layer is
the difference of mean residual streams between contexts that end in one of its members and
contexts that end in another concept's member (the "difference of means" probe of Marks &
Tegmark 2023). Its quality is measured on held-out contexts (members and sentence frames not used
to fit it): a concept whose direction does not separate those is not a feature worth describing,
and is rejected with the measured accuracy.

Contexts end with the member, so the stream is read at the last position of every context.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from selfexplain.errors import InputError
from selfexplain.inputs import read_text
from selfexplain.models.hooks import capture_residual
from selfexplain.models.padding import padded_batch

# Sentence frames ending in the concept word. The last two are held out: a direction must also
# work in frames it was not fitted on.
FIT_FRAMES = (
    "I keep thinking about{}",
    "She told me a story about{}",
    "The next word is{}",
    "Yesterday we talked about{}",
)
HELD_OUT_FRAMES = ("He wrote a short note on{}", "This page is all about{}")
FIT_MEMBER_FRACTION = 0.7
BUILTIN_LEXICONS = ("concepts.tsv", "concepts-generated.tsv")


class LexiconError(InputError):
    """The lexicon file cannot be used; the message names the line and the fix."""


@dataclass(frozen=True)
class Concept:
    kind: str
    name: str
    description: str
    members: tuple[str, ...]

    def split_members(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(members to fit on, held-out members); at least one of each."""
        cut = min(max(1, round(len(self.members) * FIT_MEMBER_FRACTION)), len(self.members) - 1)
        return self.members[:cut], self.members[cut:]


def read_lexicon(source: str = "concepts") -> list[Concept]:
    """The packaged lexicon (``concepts``) or a TSV file: kind, name, description, members
    (|-separated)."""
    if source == "concepts":  # the hand-written lexicon, then the families `make data` builds
        files = [resources.files("selfexplain") / "data" / name for name in BUILTIN_LEXICONS]
        return [
            c
            for f in files
            for c in _parse_lexicon(f.read_text(encoding="utf-8"), f"packaged {f.name}")
        ]
    else:
        path = Path(source)
        text = read_text(
            path,
            LexiconError,
            "lexicon",
            "set generate.features to 'concepts', a .tsv lexicon or a SAELens directory",
        )
        origin = str(path)
    return _parse_lexicon(text, origin)


def _parse_lexicon(text: str, origin: str) -> list[Concept]:
    concepts, names = [], set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 4:
            raise LexiconError(
                f"{origin}:{number} has {len(parts)} tab-separated fields; write "
                "kind<TAB>name<TAB>description<TAB>member|member|..."
            )
        kind, name, description, members = (p.strip() for p in parts)
        member_list = tuple(m.strip() for m in members.split("|") if m.strip())
        if len(member_list) < 2:
            raise LexiconError(f"{origin}:{number}: concept {name!r} needs at least 2 members")
        if name in names:
            raise LexiconError(
                f"{origin}:{number}: concept name {name!r} appears twice; names must be unique"
            )
        names.add(name)
        concepts.append(Concept(kind, name, description, member_list))
    return concepts


def contexts(member: str, frames: tuple[str, ...]) -> list[str]:
    return [frame.format(" " + member) for frame in frames]


@torch.no_grad()
def last_position_streams(
    model, tokenizer, texts: list[str], layers: list[int], batch_size: int = 64
) -> dict[int, torch.Tensor]:
    """``layer -> Float[Tensor, "text d_model"]``: the stream at each text's last token."""
    out: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    for start in range(0, len(texts), batch_size):
        # left padding: the last token at index -1 for every row
        batch = padded_batch(tokenizer, texts[start : start + batch_size], model.device)
        with capture_residual(model, layers) as captured:
            model(**batch, logits_to_keep=1)
        for layer in layers:
            out[layer].append(captured[layer][:, -1, :].float().cpu())
    return {layer: torch.cat(chunks) for layer, chunks in out.items()}


def negative_pool(
    concepts: list[Concept], seed: int, size: int = 120
) -> list[tuple[str, str, bool]]:
    """(concept name, member, held out?) for the shared negatives: one member of each of ``size``
    concepts. Half the pool's concepts are held out, so test negatives are unseen concepts too."""
    rng = random.Random(seed)
    chosen = rng.sample(concepts, min(size, len(concepts)))
    return [(c.name, rng.choice(c.members), i % 2 == 1) for i, c in enumerate(chosen)]


@dataclass
class FittedDirection:
    vector: torch.Tensor
    """Unit-norm direction."""
    scale: float
    """Norm of the difference of means."""
    accuracy: float
    """Balanced accuracy of a midpoint threshold on held-out contexts."""


def fit_direction(
    fit_pos: torch.Tensor, fit_neg: torch.Tensor, test_pos: torch.Tensor, test_neg: torch.Tensor
) -> FittedDirection:
    """Difference of means on the fit contexts; threshold halfway between the two projected
    means."""
    raw = fit_pos.mean(0) - fit_neg.mean(0)
    scale = float(raw.norm())
    vector = raw / max(scale, 1e-12)
    threshold = 0.5 * float(fit_pos.mean(0) @ vector + fit_neg.mean(0) @ vector)
    true_positive = float(((test_pos @ vector) > threshold).float().mean())
    true_negative = float(((test_neg @ vector) <= threshold).float().mean())
    return FittedDirection(vector, scale, 0.5 * (true_positive + true_negative))
