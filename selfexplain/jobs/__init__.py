"""Ray jobs: the local/cluster Ray session and the generic ground-truth runner."""
