"""Fixtures of the reliability tests: a fork server that runs the real command lines
(``python -m wsol.run ...``) without paying the imports each time, and a tiny trained
checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import REPO, TINY

#: the environment of every command line the tests run (as tests/helpers.run_cli)
CLI_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "HYDRA_FULL_ERROR": "0",
    "PYTHONHASHSEED": "0",
}


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    killed: bool = False
    timed_out: bool = False
    seconds: float = 0.0

    @property
    def last_line(self) -> str:
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else ""


class ForkServer:
    """Client of `tests.reliability.forkserver` (see its docstring)."""

    def __init__(self):
        env = dict(os.environ, **CLI_ENV)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.forkserver"],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lock = threading.Lock()
        ready = self._read()
        assert ready.get("ready"), ready

    def _read(self) -> dict:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("@@ "):
                return json.loads(line[3:])
        raise RuntimeError(f"the fork server ended (exit code {self.proc.wait()})")

    def run(
        self,
        module: str,
        args: list[str],
        cwd: Path | None = None,
        env: dict | None = None,
        timeout: float = 300,
        kill: dict | None = None,
    ) -> Result:
        job = {
            "module": module,
            "args": [str(a) for a in args],
            "cwd": str(cwd or REPO),
            "env": env or {},
            "timeout": timeout,
            "kill": kill,
        }
        with self.lock:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(job) + "\n")
            self.proc.stdin.flush()
            out = self._read()
        if "error" in out:
            raise RuntimeError(f"fork server: {out['error']}\n{out.get('traceback', '')}")
        return Result(**out)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="session")
def cli():
    """Runs ``python -m MODULE ARGS`` (see `ForkServer.run`)."""
    server = ForkServer()
    yield server
    server.close()


#: a checkpoint of 3 classes (tiny data sets of tests/data/tiny_datasets.py have 3)
CKPT_ARGS = [*TINY, "data.dataset.num_classes=3", "protocol=cam2016", "logger=none"]


@pytest.fixture(scope="session")
def tiny_ckpt(cli, tmp_path_factory) -> Path:
    """``checkpoints/last.ckpt`` of a one-epoch tiny_gap run on 3-class synthetic data."""
    out = tmp_path_factory.mktemp("tiny_ckpt_run")
    r = cli.run("wsol.run", [*CKPT_ARGS, f"paths.output_dir={out}"])
    assert r.returncode == 0, r.stderr[-3000:]
    return out / "checkpoints" / "last.ckpt"
