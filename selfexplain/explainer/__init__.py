"""The explainer side: continuous tokens for vectors, and saving/loading trained explainers."""
