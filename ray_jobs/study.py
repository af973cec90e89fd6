"""`ray job submit -- python -m ray_jobs.study STUDY [key=value ...]`"""

from ray_jobs._entry import run_stage

if __name__ == "__main__":
    run_stage(["study"])
