"""The features task's generate options (``generate.<key>``): a light module, so the config can
gather them without importing the task's model code."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FeaturesOptions:
    features: str = "concepts"
    """features: ``concepts`` (the packaged lexicon: 306 hand-written concepts, and 794 that
    ``make data`` builds: countries, US states and token-identity words), a .tsv lexicon in the
    same format, or a SAELens SAE directory (``cfg.json`` + ``sae_weights.safetensors``)."""
    explanations: str = ""
    """features from an SAE: a Neuronpedia explanation export (.json or .jsonl) giving each
    feature index its description. Features without one are rejected, with the reason."""
    min_probe_accuracy: float = 0.8
    """features from concepts: a concept direction is kept only if a threshold on it separates
    held-out contexts (new members, new sentence frames) with at least this accuracy."""
    top_contexts: int = 5
    """features: how many top-activating contexts to record per feature."""

    def rules(self) -> list[tuple[bool, str, str]]:
        return [
            (0.5 <= self.min_probe_accuracy <= 1.0, "generate.min_probe_accuracy",
             "use a value in [0.5, 1]"),
            (self.top_contexts >= 0, "generate.top_contexts", "use 0 or more"),
        ]  # fmt: skip
