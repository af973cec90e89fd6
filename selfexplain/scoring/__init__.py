"""Scoring, below the tasks: per-query outcomes and aggregate metrics, cluster-bootstrap intervals,
sentence-embedding scores, nearest-neighbour lookup, and the record a change-task answer is read
into. A task composes these into its baselines and scores; nothing here knows a task."""
