"""``python -m wsol.study experiments/NAME.yaml [--dry-run | --tables-only] ...``"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from wsol.cli import CONF_DIR, check_overrides, fail
from wsol.errors import WSOLError
from wsol.study.launching import (
    check_env,
    check_names,
    launch,
    parse_only,
    redo,
    sweep_command,
)
from wsol.study.plan import (
    Run,
    dependents,
    drift,
    expand_runs,
    missing_inputs,
    refresh,
    resolve_paths,
)
from wsol.study.spec import Study, load_study
from wsol.study.tables import display, write_outputs

REPO = CONF_DIR.parent


def study_path(arg: str) -> Path:
    """A study file's path: as given, or experiments/NAME.yaml for a bare NAME."""
    p = Path(arg)
    if p.suffix not in (".yaml", ".yml") and not p.exists():
        cand = REPO / "experiments" / f"{arg}.yaml"
        if cand.is_file():
            return cand
    return p


def dry_run_report(
    study: Study, runs: Sequence[Run], runs_dir: Path, launcher, extra, again: Sequence[str] = ()
) -> str:
    lines = [
        f"study {study.name}: {sum(r.done for r in runs)}/{len(runs)} runs finished ({runs_dir})"
    ]
    redone = {r.name for r in dependents(runs, again, runs_dir)} if again else set()
    missing = missing_inputs(runs, runs_dir)
    for sweep in study.sweeps:
        mine = [r for r in runs if r.sweep == sweep.name]
        lines.append(f"\nsweep {sweep.name}: {sum(r.done for r in mine)}/{len(mine)} finished")
        for r in mine:
            fewer, _ = drift(r)
            state = "done" if r.done else ("started, unfinished" if r.folder.exists() else "to do")
            if r.done and fewer:
                state += f" (made without: {' '.join(fewer)})"
            if r.done and r.name in redone:
                state += " (--redo: would be made again)"
            elif r.name in missing and missing[r.name][0] not in redone:
                producer, path = missing[r.name]
                state += f" (blocked: {path} absent; make it again with --redo {producer})"
            lines.append(f"  {r.name:<48} {state}")
        if sweep.search is not None:  # search-then-test cells: each its own commands
            from wsol.study.search import finished_trials, search_command, selection_command

            for r in mine:
                if r.done:
                    continue
                lines.append(
                    f"  cell {r.name}: {finished_trials(r)}/{sweep.search.trials} trials; would run:"
                )
                for cmd in (
                    search_command(sweep, r, launcher, extra),
                    selection_command(sweep, r, extra),
                ):
                    lines.append("    " + shlex.join(["python", *cmd[1:]]))
            continue
        if any(not r.done for r in mine):
            lines.append(
                "  would run: "
                + shlex.join(
                    ["python", *sweep_command(study, sweep, runs_dir, launcher, extra)[1:]]
                )
            )
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m wsol.study",
        description="Run a study's unfinished runs (Hydra multiruns of wsol.run) and write "
        "results/NAME.csv, results/NAME.md and its figures.",
    )
    p.add_argument("study", help="experiments/NAME.yaml (or NAME)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--dry-run",
        action="store_true",
        help="list the runs and which are finished; run nothing, write nothing",
    )
    mode.add_argument(
        "--tables-only",
        action="store_true",
        help="only rebuild the tables and figures from the finished runs",
    )
    p.add_argument("--no-figures", action="store_true", help="tables only, no figures")
    p.add_argument(
        "--launcher",
        default=None,
        help="a Hydra launcher (adds hydra/launcher=NAME), e.g. submitit_slurm",
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="launch only the runs whose model/pool/localizer/data/seed/sweep is one of the "
        "values (repeatable; e.g. --only seed=0 --only model=googlenet_gap,nin); the table "
        "still lists every planned run",
    )
    p.add_argument(
        "--redo",
        action="append",
        default=[],
        metavar="RUN[,RUN...]",
        help="make these finished runs again, and every run that reads from them (their "
        "checkpoints); their metrics.json and checkpoints/ are kept as *.before_redo_N. "
        "For a clone, which keeps no checkpoints, before runs that evaluate one",
    )
    p.add_argument(
        "--results-dir",
        default=None,
        help="where NAME.csv/.md and runs/ go (default: results/ beside experiments/)",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        help="overrides added to every multirun (trainer=gpu, data roots, launcher settings)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_intermixed_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        study = load_study(study_path(args.study))
        results_dir, runs_dir = resolve_paths(study, args.results_dir)
        check_overrides(list(args.overrides))
        only = parse_only(args.only)
        runs = expand_runs(study, runs_dir)
        refresh(runs)
        again = [n for item in args.redo for n in item.split(",") if n]
        check_names(runs, again)
        if args.dry_run:
            print(dry_run_report(study, runs, runs_dir, args.launcher, args.overrides, again))
            return 0
        if again and args.tables_only:
            raise WSOLError("--redo makes runs again; it cannot go with --tables-only")
        failures: list[str] = []
        if not args.tables_only:
            if again:
                redo(runs, again, runs_dir)
            if any(not r.done for r in runs):
                check_env(study)
            failures = launch(study, runs, runs_dir, args.launcher, args.overrides, only)
            refresh(runs)
        written = write_outputs(study, runs, results_dir, runs_dir, figures=not args.no_figures)
        print(
            f"[study {study.name}] {sum(r.done for r in runs)}/{len(runs)} runs finished; wrote "
            + ", ".join(display(p, results_dir) for p in written),
            flush=True,
        )
        for f in failures:
            print(f"[study {study.name}] FAILED: {f}", file=sys.stderr, flush=True)
        return 1 if failures else 0
    except WSOLError as e:
        fail(str(e), e.exit_code)
        return e.exit_code


def cli() -> None:
    """The console script (``wsol-study``): the same as ``python -m wsol.study``."""
    sys.exit(main())
