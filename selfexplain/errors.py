"""The one kind of error a user can fix by changing an input.

Every check of a config key, input file, model reference or query raises a subclass of
:class:`InputError` whose message is one line naming the culprit (the key, or the file and line)
and the fix. The command line turns it into ``selfexplain: error: <message>`` and exit code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import unicodedata


def show_invisible(text: str) -> str:
    """``text`` with every character a terminal would not show (controls, zero-width and
    non-breaking spaces, direction marks) written as an escape: a path or name that differs from
    what the user typed by one of them looks different in the message."""
    return "".join(
        char if char == " " or unicodedata.category(char)[0] not in "CZ" else ascii(char)[1:-1]
        for char in text
    )


class InputError(ValueError):
    """Bad input; the message names the file or key and the fix, on one line."""

    def __init__(self, message: str):
        # one line, whatever the details held; anything invisible shown as an escape
        super().__init__(show_invisible(" ".join(str(message).split())))


class ConfigError(InputError):
    """A configuration problem the user can fix; the message names the key and the fix."""
