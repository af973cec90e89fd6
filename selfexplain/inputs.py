"""Reading user files (prompts, pairs, questions, lexicons, queries) with errors that name the file.

Every reader goes through these two functions, so an unreadable or non-UTF-8 file, a JSON
error or a line that is not an object is reported the same way everywhere: the file, the line,
the fix.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

from selfexplain.errors import InputError


def kind_of(path: Path) -> str:
    """What is at ``path``, in words: "a folder", "a FIFO (named pipe)", "a file"..."""
    mode = path.stat().st_mode
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISREG, "a file"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a file"


def read_text(
    path: str | Path,
    error: Callable[[str], InputError] = InputError,
    what: str = "file",
    fix: str = "check the path",
) -> str:
    """The file's text; ``error`` builds the exception for a missing, unreadable or non-UTF-8 file
    (``fix`` says what to set when it is missing)."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise error(f"{what} {path} is {kind_of(path)}, not a file; {fix}")
    if not path.is_file():
        raise error(f"{what} {path} not found; {fix}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise error(f"{what} {path} cannot be read ({err.strerror})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise error(
            f"{path}:{line} is not UTF-8 text (byte {err.start}); save the {what} as UTF-8"
        ) from None


def read_jsonl(
    path: str | Path,
    error: Callable[[str], InputError] = InputError,
    what: str = "file",
    fix: str = "check the path",
) -> list[tuple[int, dict]]:
    """(line number, object) for every non-blank line of a JSONL file."""
    records = []
    for number, line in enumerate(read_text(path, error, what, fix).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise error(
                f"{path}:{number} is not valid JSON ({err.msg}); write one JSON object a line"
            ) from None
        if not isinstance(record, dict):
            raise error(
                f"{path}:{number} holds a JSON {type(record).__name__}, not an object; "
                "write one JSON object ({...}) a line"
            )
        records.append((number, record))
    return records
