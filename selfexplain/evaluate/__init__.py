"""Evaluation: decoding explainer answers, metrics, baselines and result tables."""
