"""Ctrl-C and SIGTERM end a command with exit 130 or 143 and one line, never exit 0.

The command line installs :func:`stop_on_signals`; the first SIGINT or SIGTERM raises
:class:`Interrupted` in the main thread, so every ``finally`` runs (the Ray session shuts down,
half-written files are left for the rerun to replace) and the command line says what was kept.
A second signal while that cleanup runs ends the process at once.

Two libraries replace these handlers: ``ray.init`` installs a SIGTERM handler that exits with
status 15 (:func:`keep_handlers` restores the caller's), and Ray Train's ``fit()`` installs a
SIGINT handler that exits 0 when called from the main thread (:func:`run_off_main_thread`).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

SIGNALS = (signal.SIGINT, signal.SIGTERM)
T = TypeVar("T")


class Interrupted(BaseException):
    """A SIGINT or SIGTERM arrived; like KeyboardInterrupt, no ``except Exception`` swallows it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # what a shell reports for a process the signal ended


def _on_signal(signum, frame) -> None:
    for each in SIGNALS:  # cleanup may take seconds; a second signal means "now"
        signal.signal(each, _exit_now)
    raise Interrupted(signum)


def _exit_now(signum, frame) -> None:
    print(f"selfexplain: {signal.Signals(signum).name} again; stopped at once", file=sys.stderr)
    os._exit(128 + signum)


def stop_on_signals() -> None:
    """SIGINT and SIGTERM raise :class:`Interrupted` in the main thread (there only: Python
    delivers signals to it)."""
    if threading.current_thread() is threading.main_thread():
        for each in SIGNALS:
            signal.signal(each, _on_signal)


@contextmanager
def keep_handlers() -> Iterator[None]:
    """The SIGINT and SIGTERM handlers in place before the block are in place after it."""
    saved = {each: signal.getsignal(each) for each in SIGNALS}
    try:
        yield
    finally:
        if threading.current_thread() is threading.main_thread():
            for each, handler in saved.items():
                if handler is not None:
                    signal.signal(each, handler)


def run_off_main_thread(work: Callable[[], T], name: str) -> T:
    """``work()``, run in a thread while the main thread waits, so that the handlers that
    ``work`` would install on the main thread are never installed and Ctrl-C reaches ours."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except BaseException as err:  # handed to the main thread, re-raised there
            outcome["error"] = err

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.2)  # wakes so that a signal's handler runs in the main thread
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
