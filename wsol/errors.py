"""The one exception type the entry points turn into a one-line message and exit code 2.

A leaf module: every package may import it (see docs/ARCHITECTURE.md). Raise `WSOLError`
for input a user can fix (a setting, a file, a line); let programming errors propagate.
The message names what is wrong and where: the file, the line, the value, the setting.
"""

from __future__ import annotations


class WSOLError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""

    exit_code = 2

    def __init__(self, message: str):
        text = str(message)
        # re-raised from a DataLoader worker: torch prefixes the worker's traceback;
        # keep only the original one-line message
        if "Original Traceback" in text and "WSOLError: " in text:
            text = text.rsplit("WSOLError: ", 1)[1]
        super().__init__(" ".join(text.split()))


def where(path: object, line: int | None = None) -> str:
    """`path:line` for error messages (line numbers are 1-based)."""
    return f"{path}:{line}" if line is not None else str(path)
