"""Launching: one Hydra multirun of ``wsol.run`` per sweep that has unfinished runs (a
search sweep's cells: `wsol.study.search.launch_cells`).

Every job gets ``++skip_done=true``, which makes `wsol.pipeline.train_and_evaluate`
return a finished run's metrics at once, so a sweep with some finished runs lists them
all and only the unfinished ones work; a sweep whose runs are all finished is not
launched at all. The multirun is a subprocess, so any Hydra launcher plugs in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from wsol.errors import WSOLError
from wsol.io import atomic_open
from wsol.study.overrides import render_value
from wsol.study.plan import (
    IDENTITY,
    Run,
    blocked_line,
    dependents,
    matches,
    missing_inputs,
    refresh,
    sweep_base,
)
from wsol.study.spec import Study, Sweep

#: the override the driver adds to every job (not part of a run's identity)
SKIP_DONE = "++skip_done=true"


def sweep_command(
    study: Study,
    sweep: Sweep,
    runs_dir: Path,
    launcher: str | None = None,
    extra: Sequence[str] = (),
    python: str | None = None,
) -> list[str]:
    """The Hydra multirun of one sweep: every run of it, finished ones included (they
    return at once under ``++skip_done=true``)."""
    args = [python or sys.executable, "-m", "wsol.run", "-m"]
    args += sweep_base(study, sweep, runs_dir)
    args += [f"{k}={','.join(render_value(v) for v in vals)}" for k, vals in sweep.sweep.items()]
    args += [
        f"hydra.sweep.dir={runs_dir}",
        f"hydra.sweep.subdir={render_value(study.run_name)}",
        SKIP_DONE,
    ]
    if launcher:
        args.append(f"hydra/launcher={launcher}")
    args += list(extra)
    return args


def check_env(study: Study) -> None:
    missing = [k for k in study.requires_env if not os.environ.get(k)]
    if missing:
        what = "; ".join(f"{k}: {study.requires_env[k]}" for k in missing)
        raise WSOLError(
            f"{study.path}: set the environment variable(s) {', '.join(missing)} ({what})"
        )


def parse_only(items: Sequence[str]) -> dict[str, list[str]]:
    """``--only KEY=V1,V2`` (repeatable) -> {KEY: [V1, V2]}; KEY is a run identity key."""
    out: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or key not in IDENTITY or not values:
            raise WSOLError(
                f"--only {item!r}: expected KEY=V1[,V2...] with KEY one of {', '.join(IDENTITY)}"
            )
        out.setdefault(key, []).extend(v for v in values.split(",") if v)
    return out


def check_names(runs: Sequence[Run], names: Sequence[str]) -> None:
    """A one-line error for a ``--redo`` name that is not one of the study's runs."""
    known = {r.name for r in runs}
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise WSOLError(f"--redo {name}: no run of this study has that name{hint}")


def redo(runs: Sequence[Run], names: Sequence[str], runs_dir: Path) -> list[Run]:
    """``--redo NAME``: make the finished runs ``names`` again, and every run that reads
    from them (another run's checkpoint), which would otherwise keep numbers of the
    network that is replaced. Nothing is deleted: each one's ``metrics.json`` becomes
    ``metrics.before_redo_N.json`` and its ``checkpoints/`` ``checkpoints.before_redo_N/``
    (N the first free number), so the run counts as unfinished and is trained or evaluated
    from the start. Returns the runs set aside."""
    check_names(runs, names)
    chosen = [r for r in dependents(runs, names, runs_dir) if r.done]
    for r in chosen:
        n = 1
        while (r.folder / f"metrics.before_redo_{n}.json").exists() or (
            r.folder / f"checkpoints.before_redo_{n}"
        ).exists():
            n += 1
        if (r.folder / "checkpoints").exists():
            (r.folder / "checkpoints").rename(r.folder / f"checkpoints.before_redo_{n}")
        (r.folder / "metrics.json").rename(r.folder / f"metrics.before_redo_{n}.json")
        print(
            f"[redo] {r.name}: metrics.json set aside as metrics.before_redo_{n}.json", flush=True
        )
    refresh(runs)
    return chosen


def narrowed(sweep: Sweep, selected: Sequence[Run]) -> Sweep:
    """The sweep with each swept key's values cut to those of the selected runs."""
    keep = {
        k: [v for v in vals if any(f"{k}={render_value(v)}" in r.overrides for r in selected)]
        for k, vals in sweep.sweep.items()
    }
    return dataclasses.replace(sweep, sweep=keep)


def launch(
    study: Study,
    runs: Sequence[Run],
    runs_dir: Path,
    launcher: str | None = None,
    extra: Sequence[str] = (),
    only: Mapping[str, list[str]] | None = None,
) -> list[str]:
    """Run the multirun of every sweep that has unfinished runs, in order; returns the
    failures (one line each). A failed sweep does not stop the next ones. ``only``
    (identity key -> values) restricts the launch to the matching runs; the table still
    shows every planned run."""
    failures = []
    missing = missing_inputs(runs, runs_dir)
    for sweep in study.sweeps:
        mine = [r for r in runs if r.sweep == sweep.name]
        if only:
            mine = [r for r in mine if matches(r, only)]
            if not mine:
                continue
        todo = [r for r in mine if not r.done]
        blocked = [r.name for r in todo if r.name in missing]
        if blocked:  # every job would fail alike: say why once, launch the next sweeps
            line = blocked_line(blocked[0], *missing[blocked[0]])
            failures.append(f"sweep {sweep.name}: not launched: {line}")
            continue
        if sweep.search is not None and todo:  # search-then-test cells, one by one
            from wsol.study.search import launch_cells

            failures += launch_cells(study, sweep, mine, launcher, extra)
            continue
        if not todo:
            print(
                f"[study {study.name}] sweep {sweep.name}: all {len(mine)} runs finished",
                flush=True,
            )
            continue
        cmd = sweep_command(
            study, narrowed(sweep, mine) if only else sweep, runs_dir, launcher, extra
        )
        print(
            f"[study {study.name}] sweep {sweep.name}: {len(todo)} of {len(mine)} runs to do\n"
            f"  {shlex.join(['python', *cmd[1:]])}",
            flush=True,
        )
        # Hydra rewrites .hydra/ of every job, skipped ones included: keep the finished
        # runs' record of the overrides they were made with
        saved = {
            f: f.read_bytes()
            for r in mine
            if r.done
            for f in sorted((r.folder / ".hydra").glob("*.yaml"))
        }
        t0 = time.time()
        try:
            rc = subprocess.call(cmd)
        finally:
            for f, data in saved.items():
                with contextlib.suppress(OSError):
                    if f.read_bytes() != data:
                        with atomic_open(f, "wb") as out:
                            out.write(data)
        refresh(mine)
        left = [r.name for r in mine if not r.done]
        print(
            f"[study {study.name}] sweep {sweep.name}: exit {rc} after {time.time() - t0:.0f} s, "
            f"{len(mine) - len(left)}/{len(mine)} runs finished",
            flush=True,
        )
        if rc != 0 or left:
            failures.append(
                f"sweep {sweep.name}: exit code {rc}; unfinished: {', '.join(left) or 'none'}"
            )
    return failures
