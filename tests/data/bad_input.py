"""Helpers of the bad-input tests: edit, append to or truncate a file the tests wrote,
swap an image for a link outside the data root, and check a one-line `WSOLError`."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from tiny_datasets import write_image

from wsol.errors import WSOLError


def edit(path: Path, line: int, new: str | None) -> None:
    """Replace (or with None delete) 1-based ``line`` of a text file."""
    lines = path.read_text().split("\n")
    if new is None:
        del lines[line - 1]
    else:
        lines[line - 1] = new
    path.write_text("\n".join(lines))


def append(path: Path, line: str) -> None:
    text = path.read_text()
    path.write_text(text + ("" if text.endswith("\n") else "\n") + line + "\n")


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


def outside_symlink(path: Path) -> None:
    """Replace an image by a symbolic link to an image outside the data root."""
    target = path.parents[3] / "elsewhere" / "outside.jpg"
    write_image(target, 20, 16)
    path.unlink()
    os.symlink(target, path)


def raises(fn, pattern: str) -> str:
    with pytest.raises(WSOLError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg
    assert re.search(pattern, msg), f"{pattern!r} not in {msg!r}"
    return msg
