"""`ray job submit -- python -m ray_jobs.generate CONFIG [key=value ...]` (the task comes from the
config)."""

from ray_jobs._entry import run_stage

if __name__ == "__main__":
    run_stage(["generate"])
