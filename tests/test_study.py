"""Studies (`wsol.study`): a tiny two-run study end to end (runs, skips, reruns only what
is missing, tables and figures), partial and empty tables, and every study file of
experiments/ loads and expands. The study file's schema and the experiment configs:
tests/study/."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers import REPO, TINY, run_cli
from wsol.errors import WSOLError
from wsol.report.tables import LONG_COLUMNS
from wsol.study import expand_runs, load_study, main, resolve_paths

RUNS = ("tiny_gap-avg-cam-s0", "tiny_gap-max-cam-s0")


def _tiny_study(folder: Path) -> Path:
    study = {
        "title": "Tiny GAP vs GMP",
        "data": "synthetic, 48 px",
        "seeds": [0],
        # no experiment config: the tiny settings are the sweep's own overrides
        "sweeps": [
            {
                "name": "cam",
                "sweep": {"pool": ["avg", "max"]},
                "fixed": ["localizer=cam", *TINY],
            }
        ],
        "metrics": {"cls_top1_err": "Top-1 cls. err.", "gt_known_loc": "GT-known loc."},
        "rows": [
            {"label": "tiny-GAP", "where": {"pool": "avg"}},
            {"label": "tiny-GMP", "where": {"pool": "max"}},
        ],
        "published": {"tiny-GAP": {"gt_known_loc": "50.0"}},
        "figures": {"kind": "gap_vs_gmp", "network": "tiny_gap", "seed": 0, "images": 2},
    }
    path = folder / "experiments" / "tiny.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def _row(md: str, label: str) -> list[str]:
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_study_runs_skips_finished_and_reruns_only_the_missing(tmp_path, capsys):
    study = _tiny_study(tmp_path)
    results = tmp_path / "results"
    runs = [results / "runs" / "tiny" / name for name in RUNS]

    t0 = time.time()
    r = run_cli("wsol.study", [str(study)], cwd=tmp_path)
    first = time.time() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = [json.loads((run / "metrics.json").read_text()) for run in runs]
    assert [m["pool"] for m in metrics] == ["avg", "max"]
    assert all((run / "checkpoints" / "last.ckpt").is_file() for run in runs)

    # the long CSV: one row per run and metric, the values of metrics.json
    csv = pd.read_csv(results / "tiny.csv")
    assert list(csv.columns) == LONG_COLUMNS
    assert set(csv["run"]) == set(RUNS) and set(csv["study"]) == {"tiny"}
    got = csv.set_index(["run", "metric"])["value"]
    for name, m in zip(RUNS, metrics):
        assert got[(name, "gt_known_loc")] == pytest.approx(m["gt_known_loc"])
        assert got[(name, "pxap")] == pytest.approx(m["pxap"])

    # the Markdown table: ours, published, difference; header; figures
    md = (results / "tiny.md").read_text()
    gap = _row(md, "tiny-GAP")
    assert gap == [
        "tiny-GAP",
        f"{metrics[0]['cls_top1_err']:.2f}",
        f"{metrics[0]['gt_known_loc']:.2f}",
        "50.0",
        f"{metrics[0]['gt_known_loc'] - 50:+.2f}".replace("-", "−"),
        "1/1",
    ]
    assert _row(md, "tiny-GMP")[3] == "—"  # nothing published for GMP
    assert "| Hardware |" in md and "cores" in md and "| Remake | `make study STUDY=tiny`" in md
    from wsol.hardware import cpu_info  # the header names the CPU kind the runs recorded

    assert f"({cpu_info().isa}, " in md
    for fig in ("tiny_cams.png", "tiny_threshold.png", "tiny_boxes.png"):
        assert (results / fig).stat().st_size > 1000, fig
        assert f"]({fig})" in md
    assert "median ratio" in md and (results / "tiny_boxes.csv").is_file()

    # a second call: every run is finished, nothing is launched, nothing is rewritten
    stamps = [(run / "metrics.json").stat().st_mtime_ns for run in runs]
    t0 = time.time()
    r = run_cli("wsol.study", [str(study)], cwd=tmp_path)
    again = time.time() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    assert "sweep cam: all 2 runs finished" in r.stdout and "to do" not in r.stdout
    assert [(run / "metrics.json").stat().st_mtime_ns for run in runs] == stamps
    assert again < first

    # a run without metrics.json is unfinished: the table marks its cells (in process:
    # no launch is involved)
    (runs[1] / "metrics.json").unlink()
    assert main([str(study), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "tiny_gap-avg-cam-s0" in out and "started, unfinished" in out and "would run" in out
    assert main([str(study), "--tables-only", "--no-figures"]) == 0
    md = (results / "tiny.md").read_text()
    assert _row(md, "tiny-GMP") == ["tiny-GMP", "—", "—", "—", "—", "0/1"]
    assert "no finished run yet" in md and "Not finished: `tiny_gap-max-cam-s0`" in md
    assert set(pd.read_csv(results / "tiny.csv")["run"]) == {RUNS[0]}

    # the next call reruns that run only (an extra override reaches the multirun; the
    # skipped run keeps its record of the overrides it was made with)
    recorded = (runs[0] / ".hydra" / "overrides.yaml").read_text()
    r = run_cli(
        "wsol.study", [str(study), "--no-figures", "trainer.log_every_n_steps=5"], cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "sweep cam: 1 of 2 runs to do" in r.stdout
    assert (runs[0] / "metrics.json").stat().st_mtime_ns == stamps[0]
    assert (runs[1] / "metrics.json").stat().st_mtime_ns > stamps[1]
    assert (runs[0] / ".hydra" / "overrides.yaml").read_text() == recorded
    assert "trainer.log_every_n_steps=5" in (runs[1] / ".hydra" / "overrides.yaml").read_text()
    assert _row((results / "tiny.md").read_text(), "tiny-GMP")[-1] == "1/1"


def test_paper_study_without_runs_writes_its_table_with_empty_cells(tmp_path, capsys):
    rc = main(
        [
            str(REPO / "experiments" / "cam2016_table1.yaml"),
            "--tables-only",
            "--results-dir",
            str(tmp_path),
        ]
    )
    assert rc == 0
    md = (tmp_path / "cam2016_table1.md").read_text()
    assert _row(md, "GoogLeNet-GAP") == ["GoogLeNet-GAP", "—", "35.0", "—", "—", "13.2", "—", "0/1"]
    assert _row(md, "AlexNet")[2] == "42.6" and _row(md, "NIN *")[5] == "19.6"
    assert "no finished run yet" in md and "0/9 finished" in md and "Learning Deep Features" in md
    csv = pd.read_csv(tmp_path / "cam2016_table1.csv")
    assert list(csv.columns) == LONG_COLUMNS and len(csv) == 0
    assert not (tmp_path / "runs").exists()  # nothing was launched


def test_every_study_file_loads_and_expands(tmp_path):
    files = sorted((REPO / "experiments").glob("*.yaml"))
    names = {f.stem for f in files}
    assert {
        "gap_vs_gmp",
        "cam2016_table1",
        "cam2016_table2",
        "cam2016_cub",
        "wsolevaluation_cam",
        "cam2016_table1_synthetic",
        "cam2016_table2_synthetic",
        "cam2016_cub_synthetic",
        "wsolevaluation_cam_synthetic",
    } <= names
    counts = {}
    for f in files:
        study = load_study(f)
        _, runs_dir = resolve_paths(study, tmp_path)
        runs = expand_runs(study, runs_dir)
        counts[f.stem] = len(runs)
        for row in study.rows:  # every row has runs
            from wsol.study import matches

            assert any(matches(run, row.where) for run in runs), (f.stem, row.label)
    # 8 networks x {GAP, GMP} x 3 seeds, GoogLeNet-GAP's LSE at 3 r, 2 baselines
    assert counts["gap_vs_gmp"] == 8 * 2 * 3 + 3 * 3 + 2 * 3
    assert counts["cam2016_table2"] == 12


def test_bad_study_files_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "title: x\nmetrics: {a: b}\nrows: [{label: r}]\nsweeps: [{sweep: {model: [tiny_gap]}}]\nextra: 1\n"
    )
    with pytest.raises(WSOLError, match="unknown key"):
        load_study(bad)
    bad.write_text(
        "title: x\nmetrics: {a: b}\nrows: [{label: r}]\nrun_name: same\n"
        "sweeps: [{sweep: {model: [tiny_gap], pool: [avg, max]}}]\n"
    )
    study = load_study(bad)
    with pytest.raises(WSOLError, match="the name of another run"):
        expand_runs(study, tmp_path)
    bad.write_text(
        "title: x\nmetrics: {a: b}\nrows: [{label: r}]\nsweeps: [{sweep: {model: [nope]}}]\n"
    )
    with pytest.raises(WSOLError, match="unknown model 'nope'"):
        expand_runs(load_study(bad), tmp_path)


def test_only_launches_the_selected_runs(tmp_path, monkeypatch):
    """--only cuts each sweep's multirun to the selected runs; the plan is unchanged."""
    import wsol.study.launching as study_mod

    study = load_study(REPO / "experiments" / "gap_vs_gmp.yaml")
    _, runs_dir = resolve_paths(study, tmp_path)
    runs = expand_runs(study, runs_dir)
    only = study_mod.parse_only(["seed=0", "model=googlenet_gap,nin"])
    assert only == {"seed": ["0"], "model": ["googlenet_gap", "nin"]}
    calls = []
    monkeypatch.setattr(study_mod.subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    study_mod.launch(study, runs, runs_dir, only=only)
    cams = [c for c in calls if "localizer=cam" in c]
    sgd = next(c for c in cams if "optim=adamw" not in c)  # sweep cam (batch-norm networks)
    adamw = next(c for c in cams if "optim=adamw" in c)  # sweep cam_adamw (NIN among them)
    assert "model=googlenet_gap" in sgd and "pool=avg,max" in sgd and "seed=0" in sgd
    assert "model=nin" in adamw and "pool=avg,max" in adamw and "seed=0" in adamw
    base = next(c for c in calls if "localizer=center,full" in c)
    assert "seed=0" in base
    lse = next(c for c in calls if "pool=lse" in c)  # sweep lse: GoogLeNet-GAP only
    assert "model=googlenet_gap" in lse and "seed=0" in lse
    assert len(calls) == 4
    with pytest.raises(WSOLError, match="KEY=V1"):
        study_mod.parse_only(["colour=red"])


def test_a_pin_of_the_value_a_run_was_made_with_is_not_drift(tmp_path):
    """A study override that the run's folder did not record is drift only when the run's
    resolved config.yaml holds another value (pinning a former default is not)."""
    from wsol.study import Run, drift, refresh

    folder = tmp_path / "run"
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("- model=tiny_gap\n")
    (folder / "metrics.json").write_text("{}")
    (folder / "config.yaml").write_text(
        "data:\n  dataset:\n    part_visibility: 0.6\noptim:\n  optimizer:\n    lr: 0.02\n"
    )

    def run(*extra: str) -> Run:
        r = Run(
            name="r",
            sweep="cam",
            overrides=["model=tiny_gap", *extra],
            identity={},
            select={},
            folder=folder,
        )
        refresh([r])  # reads metrics.json, the recorded overrides and config.yaml once
        return r

    assert drift(run("data.dataset.part_visibility=0.6", "optim.optimizer.lr=0.02")) == ([], [])
    lacks, _ = drift(run("data.dataset.part_visibility=0.85", "optim.optimizer.lr=0.02"))
    assert lacks == ["data.dataset.part_visibility=0.85"]
    (folder / "config.yaml").unlink()  # nothing to compare with: the override is missing
    assert drift(run("optim.optimizer.lr=0.02"))[0] == ["optim.optimizer.lr=0.02"]


def test_studies_sharing_a_runs_folder_agree_on_every_shared_run(tmp_path):
    """Two study files that name the same run folder must give it the same overrides:
    otherwise the second study would see the first one's run as made with other settings
    (or silently read a run that is not what its file says). The synthetic studies all
    share results/runs/synthetic, so e.g. GoogLeNet-GAP seed 0 trains once."""
    folders: dict[Path, tuple[str, list[str]]] = {}
    shared = 0
    for f in sorted((REPO / "experiments").glob("*.yaml")):
        study = load_study(f)
        _, runs_dir = resolve_paths(study, tmp_path)
        for run in expand_runs(study, runs_dir):
            if run.folder in folders:
                other, overrides = folders[run.folder]
                assert sorted(run.overrides) == sorted(overrides), (f.stem, other, run.name)
                shared += 1
            else:
                folders[run.folder] = (f.stem, run.overrides)
    synthetic = {p.parent.name for p in folders if p.parent.name == "synthetic"}
    assert synthetic == {"synthetic"}
    assert shared > 40  # the twins reuse gap_vs_gmp's trainings, table2 reuses table1's


def test_a_run_reading_an_absent_checkpoint_is_blocked_until_redo(tmp_path, monkeypatch, capsys):
    """A clone keeps no checkpoints: a run that evaluates a finished run's checkpoint is
    not launched (one line naming the file and the remedy); --redo sets the finished run
    and every run reading from it aside (nothing deleted), which unblocks it."""
    import wsol.study.launching as study_mod
    from wsol.study.plan import blocked_line, dependents, missing_inputs

    path = REPO / "experiments" / "posthoc_maps.yaml"
    study = load_study(path)
    _, runs_dir = resolve_paths(study, tmp_path)
    runs = expand_runs(study, runs_dir)
    sampled = [r for r in runs if r.sweep == "gap_sampled"]
    for r in runs:  # everything finished but SS-CAM and IS-CAM; no checkpoint kept
        if r.sweep != "gap_sampled":
            r.folder.mkdir(parents=True)
            (r.folder / "metrics.json").write_text("{}")
    producer = runs_dir / "tiny_gap-cam-s0"
    (producer / "checkpoints").mkdir()  # a folder, but not the checkpoint the runs read
    from wsol.study.plan import refresh

    refresh(runs)
    missing = missing_inputs(runs, runs_dir)
    assert sorted(missing) == sorted(r.name for r in sampled)
    line = blocked_line("tiny_gap-sscam-s0", *missing["tiny_gap-sscam-s0"])
    assert str(producer / "checkpoints" / "last.ckpt") in line and "--redo tiny_gap-cam-s0" in line

    calls = []
    monkeypatch.setattr(study_mod.subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    failures = study_mod.launch(study, runs, runs_dir)
    assert calls == [] and failures == [f"sweep gap_sampled: not launched: {line}"]

    # the dry run says what --redo would make again; it changes nothing
    assert main([str(path), "--results-dir", str(tmp_path), "--dry-run"]) == 0
    assert "(blocked: " in capsys.readouterr().out
    argv = [str(path), "--results-dir", str(tmp_path), "--dry-run", "--redo", "tiny_gap-cam-s0"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    again = [ln.split()[0] for ln in out.splitlines() if "--redo: would be made again" in ln]
    assert again == [r.name for r in dependents(runs, ["tiny_gap-cam-s0"], runs_dir) if r.done]
    assert "tiny_gap-cam-s0" in again and "tiny_gap-scorecam-s0" in again
    assert not any(n.endswith(("-s1", "-s2")) or n.startswith("alexnet") for n in again)
    assert "(blocked: " not in out and (producer / "metrics.json").is_file()

    set_aside = study_mod.redo(runs, ["tiny_gap-cam-s0"], runs_dir)
    assert [r.name for r in set_aside] == again
    for r in set_aside:
        assert not r.done and (r.folder / "metrics.before_redo_1.json").read_text() == "{}"
    assert (producer / "checkpoints.before_redo_1").is_dir()
    assert not (producer / "checkpoints").exists()
    assert (runs_dir / "tiny_gap-cam-s1" / "metrics.json").is_file()
    assert missing_inputs(runs, runs_dir) == {}  # the producer is to do: no longer blocked
    (producer / "metrics.json").write_text("{}")  # made again; a second redo keeps both
    refresh(runs)
    study_mod.redo(runs, ["tiny_gap-cam-s0"], runs_dir)
    assert (producer / "metrics.before_redo_2.json").is_file()

    with pytest.raises(WSOLError, match=r"--redo tiny_gap-cam-s9: .*did you mean tiny_gap-cam-s"):
        study_mod.redo(runs, ["tiny_gap-cam-s9"], runs_dir)


def test_the_hardware_line_says_which_runs_ran_on_which_cpu_kind(tmp_path):
    from types import SimpleNamespace

    from wsol.study.tables import hardware_line

    def run(name, isa, bf16, precision):
        metrics = {"machine": "AMD EPYC, 2/2 cores", "cpu_isa": isa, "cpu_bf16": bf16}
        return SimpleNamespace(
            name=name, folder=tmp_path / name, metrics={**metrics, "precision": precision}
        )

    old = [run(f"a-s{i}", "AVX2", False, "32-true") for i in range(3)]
    assert hardware_line(old) == "AMD EPYC, 2/2 cores (AVX2, no native bf16), trained in 32-true"
    new = run("b-s0", "AVX512", True, "bf16-mixed")
    evaluated = run("c-s0", "AVX2", False, "none (train=false)")  # trained nothing
    assert hardware_line([*old, new, evaluated]) == (
        "AMD EPYC, 2/2 cores (AVX2, no native bf16), trained in 32-true: 4 runs · "
        "AMD EPYC, 2/2 cores (AVX512, native bf16), trained in bf16-mixed: 1 run (`b-s0`)"
    )
    # a search cell's test trains nothing: its trials' precision is what it trained in
    cell = run("d-s0-search5", "AVX512", True, "none (train=false)")
    cell.folder = tmp_path
    (tmp_path / "search" / "trial_0").mkdir(parents=True)
    (tmp_path / "search" / "trial_0" / "metrics.json").write_text('{"precision": "bf16-mixed"}')
    assert hardware_line([cell]).endswith("(AVX512, native bf16), trained in bf16-mixed")
    assert hardware_line([]).startswith("— (no finished runs")
    # a run from before cpu_isa was recorded
    older = SimpleNamespace(name="c", folder=tmp_path / "c", metrics={"machine": "x"})
    assert hardware_line([older]) == "x"
