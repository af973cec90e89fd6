"""Explainer fine-tuning: examples with answer-only loss, DeepSpeed config, the Ray Train loop."""
