"""A fork server for running the real command lines many times cheaply.

Starting ``python -m wsol.run`` costs several seconds of imports (torch, Lightning,
Hydra, matplotlib) before it does anything; the bad-input battery and the kill/resume
tests run it dozens of times. This server imports all of that once, then for each job
forks a fresh child that runs ``python -m MODULE ARGS`` exactly as the interpreter would
(`runpy.run_module(..., run_name="__main__", alter_sys=True)` with ``sys.argv`` set, an
uncaught exception reported by ``sys.excepthook`` and exit code 1), with its own process
group, working folder, environment, stdin from /dev/null and stdout/stderr to files.
The child's exit code and output are what a shell would see.

A job may ask to be killed: ``kill = {"when_exists": PATH, "signal": N, "delay": S}``
sends signal N to the child's process group S seconds after PATH first exists (a real
SIGKILL/SIGTERM of a real training process, as a scheduler would send).

Protocol: one JSON object per line on stdin (``module``, ``args``, ``cwd``, ``env``,
``timeout``, ``kill``); one line ``@@ {json}`` per job on stdout with ``returncode``
(negative: killed by that signal), ``stdout``, ``stderr``, ``killed``, ``timed_out``,
``seconds``. Run as ``python -m tests.reliability.forkserver``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
import traceback

#: what the entry points import: loaded once here, inherited by every forked child
PRELOAD = (
    "matplotlib.pyplot",
    "pandas",
    "torch",
    "pytorch_lightning",
    "wsol.pipeline",
    "wsol.evaluate",
    "wsol.report.figures",
    "wsol.run",
)


def _preload() -> None:
    import importlib

    import matplotlib

    matplotlib.use("Agg")
    for name in PRELOAD:
        importlib.import_module(name)


def _child(job: dict, out_path: str, err_path: str) -> None:
    """In the forked child: become ``python -m MODULE ARGS``; never returns."""
    code = 1
    try:
        os.setpgid(0, 0)
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.chdir(job.get("cwd") or os.getcwd())
        for k, v in (job.get("env") or {}).items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = str(v)
        import runpy

        module = job["module"]
        sys.modules.pop(module, None)  # run its code afresh, as `python -m` does
        sys.argv = [module, *job.get("args", [])]
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as e:
            c = e.code
            code = 0 if c is None else (c if isinstance(c, int) else 1)
            if not isinstance(c, int) and c is not None:
                print(c, file=sys.stderr)
        except BaseException:
            # what the interpreter does with an uncaught exception
            sys.excepthook(*sys.exc_info())
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _run(job: dict) -> dict:
    tmp = tempfile.mkdtemp(prefix="wsol-fork-")
    out_path, err_path = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
    sys.stdout.flush()
    sys.stderr.flush()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _child(job, out_path, err_path)
    kill = job.get("kill") or None
    timeout = float(job.get("timeout", 600))
    killed = timed_out = False
    seen_at = None
    status = None
    while True:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
            break
        now = time.monotonic()
        if kill and not killed:
            if seen_at is None and os.path.exists(kill["when_exists"]):
                seen_at = now
            if seen_at is not None and now - seen_at >= float(kill.get("delay", 0)):
                _signal_group(pid, int(kill["signal"]))
                killed = True
        if now - t0 > timeout:
            _signal_group(pid, signal.SIGKILL)
            timed_out = True
            _, status = os.waitpid(pid, 0)
            break
        time.sleep(0.01)
    if killed and int(kill["signal"]) != signal.SIGKILL:
        time.sleep(0.2)  # let the process group's stragglers go
    _signal_group(pid, signal.SIGKILL, quiet=True)  # nothing the job started outlives it
    returncode = os.waitstatus_to_exitcode(status)
    with open(out_path, encoding="utf-8", errors="replace") as f:
        stdout = f.read()
    with open(err_path, encoding="utf-8", errors="replace") as f:
        stderr = f.read()
    os.unlink(out_path)
    os.unlink(err_path)
    os.rmdir(tmp)
    return {
        "returncode": returncode,
        "stdout": stdout,
        "stderr": stderr,
        "killed": killed,
        "timed_out": timed_out,
        "seconds": round(time.monotonic() - t0, 2),
    }


def _signal_group(pid: int, sig: int, quiet: bool = False) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        if not quiet:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass


def main() -> None:
    _preload()
    print("@@ " + json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            result = _run(json.loads(line))
        except Exception as e:  # the server itself failed: report it, keep serving
            result = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        print("@@ " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
