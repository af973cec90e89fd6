"""`ray job submit -- python -m ray_jobs.generate CONFIG [key=value ...]` (the task comes from the config)."""

import sys

from ray_jobs._entry import run_stage
from selfexplain.config import load_config

if __name__ == "__main__":
    task = load_config(sys.argv[1], sys.argv[2:]).task if len(sys.argv) > 1 else "ablation"
    run_stage(["generate", task])
