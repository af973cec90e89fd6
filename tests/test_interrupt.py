"""Ctrl-C and SIGTERM, sent to the real command line while a local cluster works: exit 130 or
143 and one line naming what was kept and the command that continues, never exit 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest


def interrupt_when(argv: list[str], cue: str, signum: int, delay_s: float) -> tuple[int, list[str]]:
    """Run ``selfexplain argv``; ``delay_s`` after a log line containing ``cue``, send
    ``signum``. Returns the exit code and stderr's lines."""
    process = subprocess.Popen(
        [sys.executable, "-m", "selfexplain", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    lines = []
    timer = None
    for line in process.stderr:
        lines.append(line.rstrip("\n"))
        if cue in line and timer is None:
            timer = threading.Timer(delay_s, process.send_signal, (signum,))
            timer.start()
    code = process.wait(timeout=300)
    assert timer is not None, f"never saw {cue!r}: " + "\n".join(lines[-20:])
    return code, lines


@pytest.mark.parametrize(
    "command, cue, signum, expected_code",
    [
        # Ray Train's own Ctrl-C handler would end the command with exit 0
        (["run", "tiny", "train.epochs=30"], "training on", signal.SIGINT, 130),
        # ray.init's SIGTERM handler would end it with status 15
        (["generate", "tiny"], "local Ray cluster started", signal.SIGTERM, 143),
    ],
    ids=["ctrl-c-while-training", "sigterm-while-generating"],
)
def test_a_signal_ends_with_its_exit_code_and_one_line(
    tmp_path, command, cue, signum, expected_code
):
    argv = [*command, f"output_dir={tmp_path}"]
    code, lines = interrupt_when(argv, cue, signum, delay_s=3.0)
    assert code == expected_code, "\n".join(lines[-20:])
    last = lines[-1]
    name = signal.Signals(signum).name
    assert last.startswith(f"selfexplain: interrupted by {name}; "), last
    assert f"kept under {tmp_path}/tiny" in last and f"selfexplain {' '.join(argv)}" in last
