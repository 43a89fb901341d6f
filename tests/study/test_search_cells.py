"""A study's search-then-test cells (``search: {trials: N}``, `wsol.study.search`): the
cell's search resumes from its Optuna storage without redoing finished trials, its best
trial is tested once, the table shows the selection, a finished cell is not run again,
and the sweep syntax a cell adds to its search space reaches only the sweeper.

The commands a launch runs (``python -m wsol.run -m ...``, ``python -m wsol.selection
...``) run in this process here (a fresh interpreter costs 10-20 s of imports): the
command lines are the real ones."""

from __future__ import annotations

import json
import os

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from tests.helpers import TINY, run_wsol_here
from wsol.errors import WSOLError
from wsol.study import expand_runs, launch, load_study, refresh, resolve_paths, write_outputs
from wsol.study.search import SEARCH_DIR, search_command, selected, selection_command

CELL = "tiny_gap-avg-cam-s0-search2"


def _study_file(tmp_path, **sweep) -> object:
    spec = {
        "title": "search cells",
        "metrics": {"maxboxacc_v2": "MaxBoxAccV2", "pxap": "PxAP"},
        "rows": [{"label": "CAM, val-selected", "where": {"sweep": "search"}}],
        "sweeps": [
            {
                "name": "search",
                "fixed": [*TINY, "hparams_search=cam", "seed=0"],
                "search": {"trials": 2},
                **sweep,
            }
        ],
    }
    folder = tmp_path / "experiments"
    folder.mkdir(exist_ok=True)
    path = folder / "cells.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _in_process(calls: list):
    """A stand-in for subprocess.call that runs the launch's commands here."""

    def call(cmd, *a, **k):
        calls.append(cmd)
        module, args = cmd[2], cmd[3:]
        try:
            if module == "wsol.run":
                run_wsol_here(args)
            else:
                from wsol.selection import main

                main(args)
        except SystemExit as e:
            return int(e.code or 0)
        return 0

    return call


def _trials(run) -> list:
    storage = f"sqlite:///{run.folder / SEARCH_DIR / 'optuna.db'}"
    study = optuna.load_study(study_name="cam", storage=storage)
    return [t for t in study.trials if t.state == TrialState.COMPLETE]


def test_a_cell_resumes_its_search_tests_its_best_trial_once_and_reports_it(tmp_path, monkeypatch):
    study = load_study(_study_file(tmp_path))
    results, runs_dir = resolve_paths(study, tmp_path / "results")
    (run,) = expand_runs(study, runs_dir)
    assert run.name == CELL and run.identity["method"] == "cam"
    # an interrupted search: one of its two trials finished
    search = search_command(study.sweeps[0], run)
    run_wsol_here([*search[3:-2], "search_trials=1", search[-1]])
    first = run.folder / SEARCH_DIR / "trial_0" / "metrics.json"
    stamp = os.stat(first).st_mtime_ns
    assert len(_trials(run)) == 1

    calls: list = []
    monkeypatch.setattr("wsol.study.search.subprocess.call", _in_process(calls))
    refresh([run])
    assert launch(study, [run], runs_dir) == []
    assert [c[2] for c in calls] == ["wsol.run", "wsol.selection"]
    assert calls[1] == selection_command(study.sweeps[0], run)
    # the search went on where it stopped: trial 0 kept as it was, one more trial
    assert os.stat(first).st_mtime_ns == stamp
    assert len(_trials(run)) == 2
    assert (run.folder / SEARCH_DIR / "trial_1" / "metrics.json").is_file()
    # every trial scored val only; the cell's metrics are the one test of the best
    for k in (0, 1):
        trial = json.loads((run.folder / SEARCH_DIR / f"trial_{k}" / "metrics.json").read_text())
        assert trial["split"] == "val" and "maxboxacc_v2" not in trial
    metrics = json.loads((run.folder / "metrics.json").read_text())
    best = max(_trials(run), key=lambda t: t.value)
    assert metrics["selected_trial"] == f"trial_{best.number}"
    assert metrics["selected_val_value"] == pytest.approx(best.value)
    assert metrics["tested"] == "checkpoint" and "maxboxacc_v2" in metrics
    assert "val_maxboxacc_v2" in metrics

    sel = selected(run)
    assert sel["trials"] == 2 and sel["space"] == "cam"
    assert sel["chosen"] == {"optim.optimizer.lr": pytest.approx(best.params["optim.optimizer.lr"])}
    assert sel["test"] == metrics["maxboxacc_v2"]
    write_outputs(study, [run], results, runs_dir, figures=False)
    md = (results / "cells.md").read_text()
    assert "## Selected settings" in md
    line = next(x for x in md.splitlines() if x.startswith(f"| `{CELL}`"))
    assert f"trial_{best.number}" in line and "optim.optimizer.lr=" in line
    assert f"{metrics['maxboxacc_v2']:.2f}" in line
    table_row = next(x for x in md.splitlines() if x.startswith("| CAM, val-selected"))
    assert f"{metrics['maxboxacc_v2']:.1f}" in table_row

    # a finished cell is not searched or tested again
    calls.clear()
    assert launch(study, [run], runs_dir) == []
    assert calls == []


def test_a_cells_search_space_syntax_reaches_only_the_sweeper(tmp_path):
    extra = "optim.optimizer.lr=interval(0.001,0.1)"
    spec = load_study(
        _study_file(
            tmp_path,
            fixed=[*TINY, "hparams_search=has", extra, "seed=0"],
        )
    )
    _, runs_dir = resolve_paths(spec, tmp_path / "results")
    (run,) = expand_runs(spec, runs_dir)
    assert run.identity["method"] == "has" and extra in run.overrides
    assert extra in search_command(spec.sweeps[0], run)
    assert run.name.endswith("-search2")


@pytest.mark.parametrize(
    "sweep, expected",
    [
        ({"fixed": [*TINY, "seed=0"]}, "a search sweep chooses its search space"),
        ({"search": {"trials": 0}}, "sweeps[0].search.trials: expected an integer (at least 1)"),
    ],
)
def test_a_bad_search_sweep_is_one_line(tmp_path, sweep, expected):
    with pytest.raises(WSOLError) as e:
        load_study(_study_file(tmp_path, **sweep))
    assert expected in str(e.value) and "\n" not in str(e.value)
