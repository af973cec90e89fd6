"""Shared body of the `ray job submit` entrypoints: parse CONFIG and overrides, call the CLI.

On a cluster, ``RAY_ADDRESS`` is set by the job submission, so ``ray_session`` joins that
cluster; run directly on a laptop, the same command starts a local one.
"""

from __future__ import annotations

import sys

from selfexplain.cli import main


def run_stage(stage: list[str]) -> None:
    sys.exit(main([*stage, *sys.argv[1:]]))
