"""The one kind of error a user can fix by changing an input.

Every check of a config key, input file, model reference or query raises a subclass of
:class:`InputError` whose message is one line naming the culprit (the key, or the file and line)
and the fix. The command line turns it into ``selfexplain: error: <message>`` and exit code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input; the message names the file or key and the fix, on one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # one line, whatever the details held


class ConfigError(InputError):
    """A configuration problem the user can fix; the message names the key and the fix."""
