"""Search-then-test cells of a study (a sweep with ``search: {trials: N}``):
wsolevaluation's selection protocol (Choe et al., CVPR 2020; docs/SELECTION.md) run per
cell, one cell per run of the sweep.

A cell's folder (``RUN_NAME-searchN`` in the runs folder) holds:

- ``search/``: the search, ``python -m wsol.run -m hparams_search=NAME search_trials=N
  hydra.sweep.dir=FOLDER/search`` with the cell's overrides: its Optuna study
  (``optuna.db``, SQLite), one ``trial_K/`` per trial (each scored on val only) and, when
  the search ends, the sweeper's ``optimization_results.yaml``;
- the test of the search's best trial, ``python -m wsol.selection FOLDER/search
  --output-dir FOLDER`` (its checkpoint at the thresholds chosen on val; ``rerun: true``
  trains its config again): ``metrics.json`` (test numbers, the ``val_*`` numbers beside
  them, ``selected_trial``), predictions, curves, figure.

The cell is finished when its ``metrics.json`` exists (the test is written last, once).
Launching an unfinished cell runs the search when its study has fewer finished trials
than the budget (an interrupted search continues from ``optuna.db``: finished trials are
kept, `wsol.selection.trials_to_go` runs the rest), then the test. `selected` reads a
finished cell back for the table: the chosen values, the trials, the val and test
numbers.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from collections.abc import Sequence

from wsol.study.overrides import parse, render_value
from wsol.study.plan import Run, refresh
from wsol.study.spec import Study, Sweep

#: the search's folder inside a cell's folder (hydra.sweep.dir of its trials)
SEARCH_DIR = "search"


def space(run: Run) -> str:
    """The cell's search space, the ``hparams_search=NAME`` among its overrides."""
    return parse(run.overrides)["hparams_search"][1].split("=", 1)[1].strip()


def search_command(
    sweep: Sweep,
    run: Run,
    launcher: str | None = None,
    extra: Sequence[str] = (),
    python: str | None = None,
) -> list[str]:
    """The cell's search: a multirun of its trials with Hydra's Optuna sweeper."""
    assert sweep.search is not None
    args = [python or sys.executable, "-m", "wsol.run", "-m", *run.overrides]
    args += [
        f"search_trials={sweep.search.trials}",
        f"hydra.sweep.dir={run.folder / SEARCH_DIR}",
    ]
    if launcher:
        args.append(f"hydra/launcher={launcher}")
    return args + list(extra)


def selection_command(
    sweep: Sweep, run: Run, extra: Sequence[str] = (), python: str | None = None
) -> list[str]:
    """The cell's one test: the best trial scored on test at val-chosen thresholds."""
    assert sweep.search is not None
    args = [python or sys.executable, "-m", "wsol.selection", str(run.folder / SEARCH_DIR)]
    args += ["--output-dir", str(run.folder)]
    if sweep.search.rerun:
        args.append("--rerun")
    # the trial's own overrides are the test's; a launch's extra settings (data roots,
    # trainer) apply to it too, its Hydra settings (launcher, sweep folders) do not
    return args + [e for e in extra if not e.lstrip("+~").startswith("hydra")]


def finished_trials(run: Run) -> int:
    """How many trials of the cell's search have finished (0 before it starts)."""
    from wsol.selection import STORAGE_FILE, completed_trials

    db = run.folder / SEARCH_DIR / STORAGE_FILE
    if not db.is_file():
        return 0
    return len(completed_trials(f"sqlite:///{db.resolve()}", space(run)))


def launch_cells(
    study: Study,
    sweep: Sweep,
    cells: Sequence[Run],
    launcher: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """Run each unfinished cell of the search sweep: its search (or the rest of it),
    then its test; returns the failures, one line each. A failed cell does not stop the
    next ones."""
    from wsol.selection import RESULTS_FILE

    assert sweep.search is not None
    failures = []
    for run in cells:
        if run.done:
            continue
        t0 = time.time()
        have = finished_trials(run)
        steps = []
        if have < sweep.search.trials or not (run.folder / SEARCH_DIR / RESULTS_FILE).is_file():
            steps.append(("search", search_command(sweep, run, launcher, extra)))
        steps.append(("test", selection_command(sweep, run, extra)))
        print(
            f"[study {study.name}] sweep {sweep.name}: cell {run.name}: "
            f"{have}/{sweep.search.trials} trials finished",
            flush=True,
        )
        failed = None
        for what, cmd in steps:
            print(f"  {shlex.join(['python', *cmd[1:]])}", flush=True)
            rc = subprocess.call(cmd)
            if rc != 0:
                failed = f"its {what} exited {rc}"
                break
        refresh([run])
        print(
            f"[study {study.name}] sweep {sweep.name}: cell {run.name} "
            f"{'tested' if run.done else 'unfinished'} after {time.time() - t0:.0f} s",
            flush=True,
        )
        if failed or not run.done:
            failures.append(f"sweep {sweep.name}: cell {run.name}: {failed or 'no test written'}")
    return failures


def selected(run: Run) -> dict | None:
    """A finished cell's selection, for the table: {space, trials, best trial, the
    chosen values (the sampled parameters, key -> value), val objective (its key and
    value), the test number of the same metric}; None for an unfinished cell."""
    if not run.done:
        return None
    from omegaconf import OmegaConf

    from wsol.selection import RESULTS_FILE, TRIAL_DIR

    results = run.folder / SEARCH_DIR / RESULTS_FILE
    params: dict = {}
    if results.is_file():
        best = OmegaConf.to_container(OmegaConf.load(results))
        params = dict(best.get("best_params") or {}) if isinstance(best, dict) else {}
    params.pop("search_trial", None)
    m = run.metrics or {}
    key = m.get("selected_by")
    trials = len(list((run.folder / SEARCH_DIR).glob(f"{TRIAL_DIR.format('*')}/metrics.json")))
    return {
        "space": space(run),
        "trials": trials,
        "best": m.get("selected_trial"),
        "chosen": params,
        "objective": key,
        "val": m.get("selected_val_value"),
        "test": m.get(key) if key else None,
    }


def selection_table(study: Study, runs: Sequence[Run]) -> list[str]:
    """The markdown lines of a study's selected settings (one row per finished search
    cell); [] for a study without search sweeps."""
    cells = [r for s in study.sweeps if s.search is not None for r in runs if r.sweep == s.name]
    if not cells:
        return []
    lines = [
        "## Selected settings",
        "",
        "Each search cell's random search (trials scored on val only), the values its best "
        "trial drew, its val objective and the one test of that trial at the thresholds "
        "chosen on val (`python -m wsol.selection`). A cell's trials: "
        "`FOLDER/search/trial_K/`.",
        "",
        "| cell | space | trials | best trial | chosen values | objective | val | test |",
        "|---|---|:---:|---|---|---|---:|---:|",
    ]
    for run in cells:
        sel = selected(run)
        if sel is None:
            have = finished_trials(run)
            lines.append(f"| `{run.name}` | {space(run)} | {have} | not tested yet | | | | |")
            continue
        chosen = ", ".join(f"`{k}={_short(v)}`" for k, v in sorted(sel["chosen"].items()))
        lines.append(
            f"| `{run.name}` | {sel['space']} | {sel['trials']} | {sel['best']} | {chosen} | "
            f"{sel['objective']} | {_num(sel['val'])} | {_num(sel['test'])} |"
        )
    return [*lines, ""]


def _short(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return render_value(v)


def _num(v) -> str:
    return f"{float(v):.2f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "—"
