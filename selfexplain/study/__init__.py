"""The self-versus-other study: one corpus per task, explainers trained on identical data,
a data-scaling sweep, everything scored with baselines and written up as a report."""
