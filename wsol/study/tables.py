"""Tables: ``results/NAME.csv`` (long format, one row per finished run and metric) and
``results/NAME.md`` (the paper's layout, its header, footnotes, figures and the
multirun of each sweep), from whatever runs have finished. The table text itself is
`wsol.report.tables`'s; this module gathers the runs into it."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wsol.io import write_csv, write_text
from wsol.report import tables
from wsol.study.launching import SKIP_DONE, sweep_command
from wsol.study.plan import Run, drift, matches
from wsol.study.search import SEARCH_DIR, search_command, selection_command, selection_table
from wsol.study.spec import Study


def display(path: Path, results_dir: Path) -> str:
    """``path`` relative to the folder holding the results folder (the repository)."""
    try:
        return os.path.relpath(path, results_dir.parent)
    except ValueError:
        return str(path)


def remake_command(study: Study, results_dir: Path, extra: Sequence[str] = ()) -> str:
    """The one-line command that remakes the study (and its runs)."""
    args = " ".join(shlex.quote(a) for a in extra)
    in_repo = (
        results_dir.name == "results"
        and study.path.resolve().parent == (results_dir.parent / "experiments").resolve()
    )
    if in_repo:
        stem = study.path.stem
        return f"make study STUDY={stem}" + (f" ARGS={shlex.quote(args)}" if args else "")
    path = display(study.path.resolve(), results_dir)
    cmd = (
        f"python -m wsol.study {shlex.quote(path)} "
        f"--results-dir {shlex.quote(display(results_dir, results_dir))}"
    )
    return cmd + (f" {args}" if args else "")


def common_extras(runs: Sequence[Run]) -> list[str]:
    """The overrides every finished run recorded beyond the study's (the extra command
    line of the launch that made them), when they agree."""
    extras = None
    for r in runs:
        if not r.done or r.recorded is None:
            continue
        _, more = drift(r)
        more = [m for m in more if not m.startswith("hydra")]
        extras = more if extras is None else [m for m in extras if m in more]
    return extras or []


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return None if math.isnan(v) else v


def table_rows(study: Study, runs: Sequence[Run]) -> list[tables.TableRow]:
    out = []
    for r in study.rows:
        mine = [run for run in runs if matches(run, r.where)]
        values, expected, absent, used = {}, {}, set(), set()
        for key, col in study.metrics.items():
            cell = [run for run in mine if matches(run, col.where)]
            used |= {run.name for run in cell}
            done = [run for run in cell if run.done]
            vals = [
                v for v in (_number(run.metrics.get(col.metric)) for run in done) if v is not None
            ]
            values[key], expected[key] = vals, len(cell)
            if done and not vals:
                absent.add(key)
        row_runs = [run for run in mine if run.name in used]
        out.append(
            tables.TableRow(
                label=r.label,
                values=values,
                expected=expected,
                done=sum(run.done for run in row_runs),
                planned=len(row_runs),
                metrics=r.metrics,
                absent=absent,
                published=study.published.get(r.label, {}),
                note=r.note,
            )
        )
    return out


def _numeric_published(value: Any) -> bool:
    pub = tables.parse_published(value)
    return pub is not None and not math.isnan(pub[1])


def _source_line(source: Mapping[str, Any]) -> str:
    if not source:
        return ""
    parts = [str(source[k]) for k in ("paper", "table") if source.get(k)]
    if source.get("page") not in (None, ""):
        parts.append(f"p. {source['page']}")
    text = ", ".join(parts)
    if source.get("url"):
        text += f" (<{source['url']}>)"
    extra = []
    if source.get("study"):
        extra.append(
            f"the same rows on the paper's data: [{source['study']}.md]({source['study']}.md)"
        )
    if source.get("note"):
        extra.append(" ".join(str(source["note"]).split()))
    return "; ".join([t for t in [text, *extra] if t])


def machine_kind(metrics: Mapping[str, Any]) -> str:
    """A run's machine with its CPU kind, from its metrics.json (``machine``, ``cpu_isa``,
    ``cpu_bf16``; older runs lack the last two)."""
    text = str(metrics.get("machine") or "not recorded")
    kind = []
    if metrics.get("cpu_isa"):
        bf16 = metrics.get("cpu_bf16")
        native = "" if bf16 is None else (", native bf16" if bf16 else ", no native bf16")
        kind.append(f"{metrics['cpu_isa']}{native}")
    return f"{text} ({'; '.join(kind)})" if kind else text


def _trained_in(run: Run) -> set[str]:
    """The precision a run trained in; for a search cell's test (which trains nothing)
    its trials' precisions; empty for a run that trained nothing."""

    def precision(metrics: Mapping[str, Any]) -> list[str]:
        p = metrics.get("precision")
        return [] if not p or str(p).startswith("none") else [str(p)]

    own = precision(run.metrics)
    if own:
        return set(own)
    from wsol.selection import TRIAL_DIR

    out: set[str] = set()
    for f in (run.folder / SEARCH_DIR).glob(f"{TRIAL_DIR.format('*')}/metrics.json"):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            out.update(precision(json.loads(f.read_text(encoding="utf-8"))))
    return out


def hardware_line(done: Sequence[Run], most: int = 6) -> str:
    """The header's hardware: each machine kind (and precision) the finished runs ran on;
    when they are several, how many runs each and, for all but the commonest, which."""
    if not done:
        return "— (no finished runs yet)"
    groups: dict[str, list[str]] = {}
    precisions: dict[str, set[str]] = {}
    for r in done:
        kind = machine_kind(r.metrics)
        groups.setdefault(kind, []).append(r.name)
        precisions.setdefault(kind, set()).update(_trained_in(r))

    def label(kind: str) -> str:
        trained = ", ".join(sorted(precisions[kind]))
        return f"{kind}, trained in {trained}" if trained else kind

    if len(groups) == 1:
        return label(next(iter(groups)))
    order = sorted(groups, key=lambda k: (-len(groups[k]), k))
    parts = []
    for i, kind in enumerate(order):
        names = groups[kind]
        part = f"{label(kind)}: {len(names)} run{'s' if len(names) > 1 else ''}"
        if i:  # the runs that differ from the commonest kind
            shown = ", ".join(f"`{n}`" for n in names[:most])
            part += f" ({shown}{', ...' if len(names) > most else ''})"
        parts.append(part)
    return " · ".join(parts)


def settings_line(study: Study) -> str:
    """The header's settings: the experiment, as the overrides it amounts to."""
    listed = " ".join(f"`{o}`" for o in study.settings.values())
    if study.experiment is None:
        return listed or "the defaults of `conf/`"
    name = study.experiment.name
    head = f"`experiment={name}` (conf/experiment/{name}.yaml)"
    return f"{head}: {listed}" if listed else head


def markdown(
    study: Study,
    runs: Sequence[Run],
    results_dir: Path,
    runs_dir: Path,
    figures: Mapping[str, str] | None = None,
    figure_text: str = "",
) -> str:
    extras = common_extras(runs)
    command = remake_command(study, results_dir, extras)
    python_command = ""
    if command.startswith("make "):
        python_command = "python -m wsol.study " + " ".join(
            [f"experiments/{study.path.name}", *(shlex.quote(a) for a in extras)]
        )
    rows = table_rows(study, runs)
    table, used = tables.study_table(
        rows,
        {k: c.heading for k, c in study.metrics.items()},
        published_label=study.published_label,
        delta=study.delta,
    )
    done = [r for r in runs if r.done]
    lines = [f"# {study.title}", ""]
    if study.description:
        lines += [study.description, ""]
    header = [
        ("Data", study.data or "—"),
        ("Hardware", hardware_line(done)),
        ("Settings", settings_line(study) + " (each sweep's own overrides: see *Runs* below)"),
        ("Published numbers", _source_line(study.source) or "none (nothing to compare with)"),
        ("Runs", f"{len(done)}/{len(runs)} finished, in `{display(runs_dir, results_dir)}/`"),
        ("Remake", f"`{command}`" + (f" (= `{python_command}`)" if python_command else "")),
    ]
    lines += ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in header] + [""]
    lines += [table, ""]
    notes = tables.footnotes(used, command, study.published_label)
    if "notes" in used:
        notes += [f"\\* {r.label}: {r.note}" for r in study.rows if r.note]
    shows_delta = study.delta and any(
        _numeric_published(v) for r in rows for v in r.published.values()
    )
    notes.append(
        "Ours: mean ± sample std over the row's seeds (runs)"
        + (f"; Δ = ours − {study.published_label}." if shows_delta else ".")
    )
    notes += study.notes
    stale = []
    for r in done:
        fewer, _ = drift(r)
        if fewer:
            stale.append(f"`{r.name}` (lacks {' '.join(fewer)})")
    if stale:
        notes.append(
            "Made with other settings than the study file now gives (delete their folders to "
            "rerun them): " + ", ".join(stale)
        )
    lines += [f"- {n}" for n in notes] + [""]
    lines += selection_table(study, runs)
    if figures or figure_text:
        lines += ["## Figures", ""]
        if figure_text:
            lines += [figure_text, ""]
        for caption, name in (figures or {}).items():
            lines += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    lines += ["## Runs", ""]
    lines += ["| sweep | finished | multirun (`make study` adds `++skip_done=true` and its ARGS) |"]
    lines += ["|---|:---:|---|"]
    for sweep in study.sweeps:
        mine = [r for r in runs if r.sweep == sweep.name]
        if sweep.search is not None:  # search-then-test cells: each its own two commands
            lines += [_cell_line(sweep, r, runs_dir, results_dir) for r in mine]
            continue
        cmd = sweep_command(study, sweep, runs_dir, python="python")
        cmd = [c.replace(str(runs_dir), display(runs_dir, results_dir)) for c in cmd]
        cmd = [c for c in cmd if c != SKIP_DONE]
        lines.append(
            f"| {sweep.name} | {sum(r.done for r in mine)}/{len(mine)} | `{shlex.join(cmd)}` |"
        )
    missing = [r.name for r in runs if not r.done]
    if missing:
        shown = ", ".join(f"`{m}`" for m in missing[:30])
        more = f" and {len(missing) - 30} more" if len(missing) > 30 else ""
        lines += ["", f"Not finished: {shown}{more}."]
    lines.append("")
    return "\n".join(lines)


def _cell_line(sweep, run: Run, runs_dir: Path, results_dir: Path) -> str:
    """A search cell's row of the Runs table: its search, then its test."""
    shown = display(runs_dir, results_dir)
    cmds = [
        shlex.join(c).replace(str(runs_dir), shown)
        for c in (
            search_command(sweep, run, python="python"),
            selection_command(sweep, run, python="python"),
        )
    ]
    state = "1/1" if run.done else "0/1"
    return f"| {sweep.name}: {run.name} | {state} | `{cmds[0]}`, then `{cmds[1]}` |"


def long_csv(study: Study, runs: Sequence[Run]):
    records = []
    for r in runs:
        if not r.done:
            continue
        ident = {
            k: r.metrics.get(k, r.identity[k])
            for k in ("model", "pool", "localizer", "data", "seed")
        }
        records.append({"run": r.name, **ident, "metrics": r.metrics})
    return tables.long_frame(study.name, records)


def write_outputs(
    study: Study, runs: Sequence[Run], results_dir: Path, runs_dir: Path, figures: bool = True
) -> list[Path]:
    """NAME.csv, NAME.md and (with ``figures``, for a study that has them) the figures."""
    results_dir.mkdir(parents=True, exist_ok=True)
    shown, text = ({}, "")
    if study.figures and figures:
        from wsol.study.figures import write_figures  # matplotlib: only when drawing

        shown, text = write_figures(study, runs, results_dir)
    csv_path, md_path = results_dir / f"{study.name}.csv", results_dir / f"{study.name}.md"
    write_csv(csv_path, long_csv(study, runs))
    write_text(md_path, markdown(study, runs, results_dir, runs_dir, shown, text))
    return [csv_path, md_path, *(results_dir / f for f in shown.values())]
