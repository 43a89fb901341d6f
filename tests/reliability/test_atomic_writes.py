"""Crash-safe files: every file the suite writes goes to a hidden temporary name in the
same folder and is renamed over the target (`wsol.io.atomic_open`), so a crash leaves
the old file or the new one, never a torn one."""

from __future__ import annotations

import ast
import json
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers import REPO
from wsol.io import atomic_open, save_npy, write_csv, write_json
from wsol.report.predictions import PredictionWriter

OLD = '{"metric": 1.0}\n'


class Crash(Exception):
    pass


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != "metrics.json")


@pytest.mark.parametrize(
    "write",
    [
        lambda p: write_json(p, {"a": np.float64(1.0), "b": object()}),  # not serialisable
        lambda p: write_csv(p, _BadFrame()),  # fails after writing its header
        lambda p: save_npy(p, np.array([lambda: 0], dtype=object)),  # fails after the .npy header
    ],
    ids=["json", "csv", "npy"],
)
def test_a_writer_that_fails_leaves_the_old_file_and_no_temporary(tmp_path, write):
    target = tmp_path / "metrics.json"
    target.write_text(OLD)
    with pytest.raises((TypeError, AttributeError, pickle.PicklingError, Crash)):
        write(target)
    assert target.read_text() == OLD
    assert leftovers(tmp_path) == []


class _BadFrame:
    def to_csv(self, f, index=False):
        f.write("threshold,acc\n0.0,1\n")
        raise Crash("disk full halfway")


def test_an_exception_inside_atomic_open_keeps_the_old_file(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text(OLD)
    with pytest.raises(Crash):
        with atomic_open(target, "w", encoding="utf-8") as f:
            f.write('{"metric": 2.0')
            f.flush()
            raise Crash("killed mid-write")
    assert target.read_text() == OLD
    assert leftovers(tmp_path) == []
    # a clean exit replaces it whole, with the umask's permissions (not mkstemp's 0600)
    with atomic_open(target, "w", encoding="utf-8") as f:
        f.write('{"metric": 2.0}\n')
    assert json.loads(target.read_text()) == {"metric": 2.0}
    assert target.stat().st_mode & 0o044 == 0o044
    assert leftovers(tmp_path) == []


WRITER = r"""
import sys, time
from wsol.io import atomic_open
target = sys.argv[1]
chunk = "y" * (1 << 20)
with atomic_open(target, "w", encoding="utf-8") as f:
    for i in range(10_000):
        f.write(chunk)
        if i == 2:
            f.flush()
            print("writing", flush=True)
        if i >= 2:
            time.sleep(0.01)
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_a_process_killed_during_a_large_write_leaves_the_old_file(tmp_path, sig):
    """A real process killed in the middle of writing megabytes: the target is still the
    old file; what is left is only a hidden temporary (a kill leaves no chance to remove
    it), never a partial file under the real name."""
    target = tmp_path / "metrics.json"
    target.write_text(OLD)
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "writing"
    time.sleep(0.05)
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == -sig
    assert target.read_text() == OLD
    left = leftovers(tmp_path)
    assert all(n.startswith(".metrics.json.") and n.endswith(".tmp") for n in left), left


def test_prediction_parts_are_hidden_and_merged_whole(tmp_path):
    """predictions.csv streams to a hidden part file per process; only the merge (atomic)
    puts rows under the real name, so a crash mid-evaluation leaves the old file."""
    target = tmp_path / "predictions.csv"
    target.write_text("index,id\n0,old\n")
    w = PredictionWriter(target, rank=0)
    w.write([{"index": i, "id": f"new{i}"} for i in range(5)])
    w.close()
    assert target.read_text() == "index,id\n0,old\n"  # not yet merged: the old file
    PredictionWriter.merge(target, 1)
    assert pd.read_csv(target)["id"].tolist() == [f"new{i}" for i in range(5)]
    assert leftovers(tmp_path) == ["predictions.csv"]


# ---- the audit: no writer bypasses wsol.io ------------------------------------------------
#: (file, call) pairs allowed to write a file directly, and why
ALLOWED = {
    ("wsol/io.py", "open"): "atomic_open itself: the temporary file",
    ("wsol/io.py", "save"): "save_npy into atomic_open's file object",
    ("wsol/io.py", "to_csv"): "write_csv into atomic_open's file object",
    ("wsol/io.py", "replace"): "atomic_open's rename",
    ("wsol/report/predictions.py", "open"): "the hidden per-process part file, merged atomically",
    ("wsol/report/figures.py", "savefig"): "save_figure into atomic_open's file object",
    ("wsol/models/module.py", "save"): "AtomicCheckpointIO into atomic_open's file object",
    ("wsol/models/weights.py", "fdopen"): "a download into a mkstemp file, then os.replace",
    ("wsol/models/weights.py", "replace"): "the download's rename",
    ("wsol/study/launching.py", "rename"): "--redo sets a finished run's files aside: "
    "a rename in the same folder, no content written",
}
WRITE_CALLS = {"save", "savez", "savez_compressed", "savefig", "to_csv", "to_json", "to_parquet",
               "write_bytes", "imwrite", "dump", "replace", "rename", "copyfile", "copy2", "move"}  # fmt: skip


def _is_write_mode(node: ast.Call) -> bool:
    mode = node.args[1] if len(node.args) > 1 else None
    for k in node.keywords:
        if k.arg == "mode":
            mode = k.value
    return isinstance(mode, ast.Constant) and any(c in str(mode.value) for c in "wax+")


def test_every_writer_in_the_package_goes_through_wsol_io():
    found = []
    for f in sorted((REPO / "wsol").rglob("*.py")):
        rel = f.relative_to(REPO).as_posix()
        for node in ast.walk(ast.parse(f.read_text(), filename=rel)):
            if not isinstance(node, ast.Call):
                continue
            fn = node.func
            name = fn.id if isinstance(fn, ast.Name) else getattr(fn, "attr", None)
            if name in ("open", "fdopen") and _is_write_mode(node):
                found.append((rel, name, node.lineno))
            elif isinstance(fn, ast.Attribute) and name in WRITE_CALLS:
                receiver = ast.unparse(fn.value)
                if name == "replace" and receiver not in ("os", "shutil"):
                    continue  # str.replace
                if name == "dump" and receiver not in ("json", "pickle", "yaml"):
                    continue
                found.append((rel, name, node.lineno))
            elif isinstance(fn, ast.Attribute) and name == "write_text":
                found.append((rel, "Path.write_text", node.lineno))
    unexpected = [x for x in found if (x[0], x[1]) not in ALLOWED]
    assert unexpected == [], f"writes that bypass wsol.io.atomic_open: {unexpected}"
    # the scan sees real writers (so it would see a new one)
    assert {(r, n) for r, n, _ in found} >= {
        ("wsol/io.py", "replace"),
        ("wsol/report/figures.py", "savefig"),
    }
