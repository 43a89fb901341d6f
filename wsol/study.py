"""``python -m wsol.study experiments/NAME.yaml``: run a study's missing runs, then write
its tables and figures.

A *study* is one YAML file in ``experiments/``: the runs it needs (Hydra overrides of
``wsol.run``), how its table is laid out (rows as in the paper) and the published numbers
it is compared with, with their source. The driver expands the runs, launches one Hydra
multirun of ``wsol.run`` per sweep for the sweeps that have unfinished runs, and writes

- ``results/NAME.csv``: long format, one row per finished run and numeric metric
  (study, run, model, pool, localizer, data, seed, metric, value);
- ``results/NAME.md``: the paper's layout: our mean ± std over seeds, the published
  number, the difference; missing cells "—" with footnotes; a header with the data, the
  hardware the runs ran on, the settings and the one-line command that remakes it;
- the figures of studies that have ``figures`` (``NAME_cams.png``, ``NAME_threshold.png``,
  ``NAME_boxes.png`` and the small ``NAME_boxes.csv`` behind the box sentence).

Every file is written atomically (`wsol.io`). A study whose runs are only partly done (or
not started: a paper study on data this machine lacks) still gets its table, with the
missing cells marked.

Schema (every key but ``title``, ``sweeps`` (or ``published`` only), ``metrics`` and
``rows`` is optional)::

    name: gap_vs_gmp                 # default: the file's stem; results/NAME.{csv,md}
    title: GAP vs GMP ...            # the table's title
    description: ...                 # a paragraph under the title
    source:                          # where `published` comes from
      {paper: ..., table: ..., page: ..., url: ..., note: ...}
    data: ...                        # the data, in words (goes in the header)
    requires_env:                    # environment variables the runs need, checked
      WSOL_CUB: the CUB_200_2011 folder   # before launching (use ${oc.env:WSOL_CUB})
    runs_dir: runs/NAME              # run folders, relative to the results folder
                                     # (studies may share one: same run = same folder)
    common: [override, ...]          # Hydra overrides of every run (or {key: value})
    seeds: [0, 1, 2]                 # each sweep's seeds unless it sets `seed` itself
    run_name: "${model.name}-${pool.name}-${hydra.runtime.choices.localizer}-s${seed}"
    sweeps:                          # one Hydra multirun each, in this order
      - name: cam                    # the sweep's name (rows may select on it)
        sweep: {model: [a, b], pool: [avg, max]}   # the cartesian product
        fixed: [localizer=cam]       # this sweep's own overrides (or {key: value})
    metrics: {cls_top1_err: Top-1 cls. err., ...}  # the metric columns, in order
    rows:                            # the table, top to bottom, as in the paper
      - label: GoogLeNet-GAP
        where: {model: googlenet_gap, pool: avg, localizer: cam}
        metrics: [cls_top1_err]      # the row's metrics (default: all); others "n/a"
        note: ...                    # a footnote for the row
    published:                       # the source's numbers: row label -> metric -> value
      GoogLeNet-GAP: {cls_top1_err: "35.0"}      # strings keep their printed digits
    published_from: other_study      # take `published` and `source` from that study file
    published_label: paper           # the published column's heading
    delta: true                      # the ours − published column
    notes: [...]                     # footnotes under the table
    figures: {kind: gap_vs_gmp, network: googlenet_gap, seed: 0, images: 8, curve: v2_iou50}

``run_name`` is a Hydra/OmegaConf interpolation evaluated on each run's config; it
becomes ``hydra.sweep.subdir``, so a run's folder is ``<runs_dir>/<run_name>/`` whatever
the launcher; run names must be unique within a study. Override values may contain
``{runs}``, the absolute runs folder (e.g. ``model.weights={runs}/${model.name}-
${pool.name}-cam-s${seed}/checkpoints/last.ckpt`` evaluates another run's checkpoint).
A row's ``where`` matches a run when every key equals the run's value (a list: any of
them): ``model``, ``pool``, ``localizer``, ``data``, ``seed``, ``sweep`` or any config key
(``model.pretrained``); a row pools its matching runs (usually the seeds).

A run is *finished* when its folder holds ``metrics.json``. Every job of a multirun gets
``++skip_done=true``, which makes `wsol.pipeline.train_and_evaluate` return a finished
run's metrics at once, so a sweep with some finished runs lists them all and only the
unfinished ones work; a sweep whose runs are all finished is not launched at all. A run
that died half way (no metrics.json) runs again from the start.

Command line::

    python -m wsol.study experiments/NAME.yaml [--dry-run | --tables-only] [--no-figures]
        [--launcher submitit_slurm] [--results-dir DIR] [OVERRIDE ...]

``OVERRIDE``s are added to every multirun (``trainer=gpu``, ``hydra.launcher.partition=X``,
data roots); they must not change what names a run. ``--launcher L`` adds
``hydra/launcher=L``. ``make study STUDY=NAME ARGS="..."`` is the same.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import logging
import math
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wsol.cli import CONF_DIR, check_overrides, fail
from wsol.errors import WSOLError
from wsol.io import atomic_open, write_csv, write_text
from wsol.report import tables

log = logging.getLogger("wsol.study")

REPO = CONF_DIR.parent
DEFAULT_RUN_NAME = "${model.name}-${pool.name}-${hydra.runtime.choices.localizer}-s${seed}"
#: overrides the driver adds to every job (not part of a run's identity)
SKIP_DONE = "++skip_done=true"
#: characters a Hydra override value may hold without quotes (here)
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_./:@%+\-${}]+$")
_KEYS = {
    "name",
    "title",
    "description",
    "source",
    "data",
    "requires_env",
    "runs_dir",
    "common",
    "common_from",
    "seeds",
    "run_name",
    "sweeps",
    "metrics",
    "rows",
    "published",
    "published_from",
    "published_label",
    "delta",
    "notes",
    "figures",
}


# ---- the study file ---------------------------------------------------------------------
@dataclass
class Sweep:
    name: str
    sweep: dict[str, list]  # key -> values (the cartesian product)
    fixed: dict[str, str]  # key -> the override as given ("key=value")


@dataclass
class Column:
    key: str  # the column's name (published values and rows' metrics refer to it)
    metric: str  # the metrics.json key
    heading: str
    where: dict = field(default_factory=dict)  # further selection of the cell's runs


@dataclass
class Study:
    path: Path
    name: str
    title: str
    description: str = ""
    source: dict = field(default_factory=dict)
    data: str = ""
    requires_env: dict = field(default_factory=dict)
    runs_dir: str | None = None
    common: dict[str, str] = field(default_factory=dict)
    run_name: str = DEFAULT_RUN_NAME
    sweeps: list[Sweep] = field(default_factory=list)
    metrics: dict[str, Column] = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)
    published: dict = field(default_factory=dict)
    published_label: str = "paper"
    delta: bool = True
    notes: list[str] = field(default_factory=list)
    figures: dict | None = None


@dataclass
class Run:
    name: str
    sweep: str
    overrides: list[str]  # the job's overrides, as Hydra records them
    identity: dict[str, Any]  # model, pool, localizer, data, seed, sweep
    select: dict[str, Any]  # further config values rows select on
    folder: Path
    metrics: dict | None = None
    recorded: list[str] | None = None  # the overrides in the folder's .hydra/overrides.yaml
    resolved: Any = None  # a finished run's resolved config.yaml (DictConfig), when readable

    @property
    def done(self) -> bool:
        return self.metrics is not None


def _where(path: Path, key: str) -> str:
    return f"{path}: {key}"


def render_value(v: Any) -> str:
    """A Python value as a Hydra override value."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(render_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ",".join(f"{k}:{render_value(x)}" for k, x in v.items()) + "}"
    s = str(v)
    if _SAFE_VALUE.match(s):
        return s
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _override_key(text: str) -> str:
    key = text.split("=", 1)[0].strip()
    return key.lstrip("+~")


def _overrides(value: Any, where: str) -> dict[str, str]:
    """A list of "key=value" strings or a mapping key -> value, as key -> override."""
    if value is None:
        return {}
    items: list[str] = []
    if isinstance(value, Mapping):
        items = [f"{k}={render_value(v)}" for k, v in value.items()]
    elif isinstance(value, list):
        for v in value:
            if not isinstance(v, str) or "=" not in v:
                raise WSOLError(f"{where}: {v!r} is not an override (key=value)")
            items.append(v.strip())
    else:
        raise WSOLError(f"{where}: expected a list of overrides or a mapping, got {value!r}")
    return {_override_key(o): o for o in items}


def _other_study(path: Path, key: str, other: str) -> tuple[dict, str]:
    f = path.parent / (other if other.endswith(".yaml") else f"{other}.yaml")
    if not f.is_file():
        raise WSOLError(f"{_where(path, key)}: no study file {f}")
    try:
        raw = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise WSOLError(f"{f}: not valid YAML: {' '.join(str(e).split())}") from None
    return raw, str(f.stem)


def _columns(value: Any, path: Path) -> dict[str, Column]:
    where = _where(path, "metrics")
    if isinstance(value, list):
        value = {m: m for m in value}
    if not isinstance(value, dict):
        raise WSOLError(f"{where}: a mapping column -> heading (or -> {{metric, heading, where}})")
    out = {}
    for key, spec in value.items():
        key = str(key)
        if isinstance(spec, dict):
            extra = set(spec) - {"metric", "heading", "where"}
            if extra:
                raise WSOLError(f"{where}.{key}: unknown key(s) {', '.join(sorted(extra))}")
            if not isinstance(spec.get("where") or {}, dict):
                raise WSOLError(f"{where}.{key}.where: a mapping key -> value")
            out[key] = Column(
                key,
                str(spec.get("metric") or key),
                str(spec.get("heading") or key),
                dict(spec.get("where") or {}),
            )
        else:
            out[key] = Column(key, key, str(spec))
    return out


def load_study(path: str | Path) -> Study:
    """Read and check a study file; `WSOLError` naming the file and key on any problem."""
    path = Path(path)
    if not path.is_file():
        raise WSOLError(f"study file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise WSOLError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(raw, dict):
        raise WSOLError(f"{path}: a study file is a mapping (name, title, sweeps, rows, ...)")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise WSOLError(
            f"{path}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(_KEYS))}"
        )
    for key in ("title", "metrics", "rows"):
        if not raw.get(key):
            raise WSOLError(f"{_where(path, key)} is missing")
    study = Study(path=path, name=str(raw.get("name") or path.stem), title=str(raw["title"]))
    if not re.match(r"^[A-Za-z0-9_.-]+$", study.name):
        raise WSOLError(f"{_where(path, 'name')}: {study.name!r} must be letters, digits, _ . -")
    study.description = str(raw.get("description") or "").strip()
    study.source = dict(raw.get("source") or {})
    study.data = str(raw.get("data") or "").strip()
    study.requires_env = dict(raw.get("requires_env") or {})
    study.runs_dir = raw.get("runs_dir")
    study.common = _overrides(raw.get("common"), _where(path, "common"))
    if raw.get("common_from"):
        other, _ = _other_study(path, "common_from", str(raw["common_from"]))
        inherited = _overrides(other.get("common"), _where(path, "common_from"))
        study.common = {**inherited, **study.common}
    study.run_name = str(raw.get("run_name") or DEFAULT_RUN_NAME)
    seeds = raw.get("seeds")
    if seeds is not None and (
        not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds)
    ):
        raise WSOLError(f"{_where(path, 'seeds')}: a list of integers, got {seeds!r}")
    for i, s in enumerate(raw.get("sweeps") or []):
        where = _where(path, f"sweeps[{i}]")
        if not isinstance(s, dict):
            raise WSOLError(f"{where}: a mapping with name, sweep and fixed")
        extra = set(s) - {"name", "sweep", "fixed"}
        if extra:
            raise WSOLError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
        sweep = {}
        for k, v in (s.get("sweep") or {}).items():
            values = v if isinstance(v, list) else [v]
            if not values:
                raise WSOLError(f"{where}.sweep.{k}: no values")
            sweep[str(k)] = values
        fixed = _overrides(s.get("fixed"), f"{where}.fixed")
        if seeds is not None and "seed" not in sweep and "seed" not in fixed:
            if "seed" not in study.common:
                sweep["seed"] = list(seeds)
        for k in sweep:
            fixed.pop(k, None)
        name = str(s.get("name") or f"sweep{i}")
        if any(x.name == name for x in study.sweeps):
            raise WSOLError(f"{where}.name: {name!r} is used by another sweep")
        study.sweeps.append(Sweep(name=name, sweep=sweep, fixed=fixed))
    study.metrics = _columns(raw["metrics"], path)
    labels = set()
    for i, r in enumerate(raw["rows"]):
        where = _where(path, f"rows[{i}]")
        if not isinstance(r, dict) or not r.get("label"):
            raise WSOLError(f"{where}: a mapping with label and where")
        extra = set(r) - {"label", "where", "metrics", "note"}
        if extra:
            raise WSOLError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
        if r["label"] in labels:
            raise WSOLError(f"{where}.label: {r['label']!r} is used by another row")
        labels.add(r["label"])
        bad = [m for m in r.get("metrics") or [] if m not in study.metrics]
        if bad:
            raise WSOLError(f"{where}.metrics: {', '.join(bad)} not among the study's metrics")
        if not isinstance(r.get("where") or {}, dict):
            raise WSOLError(f"{where}.where: a mapping key -> value")
        study.rows.append(dict(r))
    published = dict(raw.get("published") or {})
    if raw.get("published_from"):
        other_raw, other = _other_study(path, "published_from", str(raw["published_from"]))
        published = {**dict(other_raw.get("published") or {}), **published}
        if not study.source:
            study.source = {**dict(other_raw.get("source") or {}), "study": other}
    for label, cells in published.items():
        where = _where(path, f"published.{label}")
        if label not in labels:
            raise WSOLError(f"{where}: no row has this label")
        if not isinstance(cells, dict):
            raise WSOLError(f"{where}: a mapping metric -> value")
        for m, v in cells.items():
            if m not in study.metrics:
                raise WSOLError(f"{where}.{m}: not one of the study's metrics")
            try:
                tables.parse_published(v)
            except ValueError:
                raise WSOLError(f"{where}.{m}: {v!r} is not a number") from None
    study.published = published
    study.published_label = str(raw.get("published_label") or "paper")
    study.delta = bool(raw.get("delta", True))
    study.notes = [str(n).strip() for n in raw.get("notes") or []]
    study.figures = dict(raw["figures"]) if raw.get("figures") else None
    if not study.sweeps:
        raise WSOLError(f"{_where(path, 'sweeps')} is missing: a study needs at least one sweep")
    return study


# ---- runs -------------------------------------------------------------------------------
def resolve_paths(study: Study, results_dir: str | Path | None) -> tuple[Path, Path]:
    """(results folder, runs folder), absolute. Default results folder: ``results/`` next
    to the study file's folder (the repository's, for ``experiments/NAME.yaml``)."""
    results = (
        Path(results_dir)
        if results_dir is not None
        else study.path.resolve().parent.parent / "results"
    )
    results = results.resolve()
    runs = results / (study.runs_dir or f"runs/{study.name}")
    runs = runs.resolve()
    if not _SAFE_VALUE.match(str(runs)):
        raise WSOLError(
            f"the runs folder {runs} has characters Hydra overrides cannot take unquoted "
            "(spaces, commas, quotes); use --results-dir DIR with a plain path"
        )
    return results, runs


def _substitute(override: str, runs_dir: Path) -> str:
    return override.replace("{runs}", str(runs_dir))


def _norm(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _where_keys(study: Study) -> set[str]:
    keys = set()
    for r in study.rows:
        keys |= set((r.get("where") or {}).keys())
    for c in study.metrics.values():
        keys |= set(c.where)
    return keys - {"model", "pool", "localizer", "data", "seed", "sweep"}


class _Composer:
    """Composes run configs with Hydra's compose API (one initialisation for all)."""

    def __init__(self):
        self._ctx = None

    def __enter__(self):
        from hydra import initialize_config_dir

        import wsol  # noqa: F401  (resolvers)

        self._ctx = initialize_config_dir(
            version_base="1.3", config_dir=str(CONF_DIR), job_name="study"
        )
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)

    def compose(self, overrides: list[str]):
        from hydra import compose

        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


def expand_runs(study: Study, runs_dir: Path) -> list[Run]:
    """Every run of the study, in sweep order, named by composing its config."""
    from omegaconf import OmegaConf

    select_keys = _where_keys(study)
    runs: list[Run] = []
    seen: dict[str, Run] = {}
    with _Composer() as composer:
        for sweep in study.sweeps:
            base = {**study.common, **sweep.fixed}
            base = {k: _substitute(v, runs_dir) for k, v in base.items() if k not in sweep.sweep}
            keys = list(sweep.sweep)
            # runs that differ only in an integer seed share one composition (3x faster
            # for 3 seeds): the seed is set on the composed config, as Hydra would
            seeds = sweep.sweep.get("seed", [])
            by_seed = bool(seeds) and all(
                isinstance(v, int) and not isinstance(v, bool) for v in seeds
            )
            composed: dict[tuple, Any] = {}
            for combo in itertools.product(*(sweep.sweep[k] for k in keys)):
                overrides = list(base.values()) + [
                    f"{k}={render_value(v)}" for k, v in zip(keys, combo)
                ]
                where = f"{study.path}: sweep {sweep.name!r} run {' '.join(overrides[len(base) :])}"
                try:
                    check_overrides(overrides)
                    key = tuple(o for o in overrides if not (by_seed and o.startswith("seed=")))
                    cfg = composed.get(key)
                    if cfg is None:
                        cfg = composer.compose(
                            [*overrides, f"hydra.sweep.subdir={render_value(study.run_name)}"]
                        )
                        composed[key] = cfg
                    if by_seed:
                        cfg.seed = int(combo[keys.index("seed")])
                    name = str(cfg.hydra.sweep.subdir)
                    choices = cfg.hydra.runtime.choices
                    identity = {
                        "model": str(OmegaConf.select(cfg, "model.name", default="?")),
                        "pool": str(OmegaConf.select(cfg, "pool.name", default="?")),
                        "localizer": str(choices.get("localizer")),
                        "data": str(OmegaConf.select(cfg, "data.name", default="?")),
                        "seed": int(cfg.seed),
                        "sweep": sweep.name,
                    }
                    select = {
                        k: OmegaConf.select(cfg, k, default=None, throw_on_resolution_failure=False)
                        for k in select_keys
                    }
                except WSOLError as e:
                    raise WSOLError(f"{where}: {e}") from None
                except Exception as e:  # Hydra's composition and interpolation errors
                    msg = " ".join(str(e).split())
                    raise WSOLError(f"{where}: {type(e).__name__}: {msg}") from None
                if not name or name.startswith(".") or "/" in name or "\\" in name:
                    raise WSOLError(f"{where}: run_name gives {name!r}, not a folder name")
                if name in seen:
                    raise WSOLError(
                        f"{where}: run_name gives {name!r}, the name of another run "
                        f"({' '.join(seen[name].overrides)}); add what differs to run_name"
                    )
                run = Run(
                    name=name,
                    sweep=sweep.name,
                    overrides=overrides,
                    identity=identity,
                    select=select,
                    folder=runs_dir / name,
                )
                seen[name] = run
                runs.append(run)
    return runs


def refresh(runs: Sequence[Run]) -> None:
    """Read each run's metrics.json (None when absent or unreadable) and recorded overrides."""
    for run in runs:
        run.metrics = None
        f = run.folder / "metrics.json"
        if f.is_file():
            try:
                run.metrics = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                log.warning("%s: unreadable (%s); the run counts as unfinished", f, e)
        rec = run.folder / ".hydra" / "overrides.yaml"
        run.recorded = None
        if rec.is_file():
            with contextlib.suppress(OSError, yaml.YAMLError):
                run.recorded = [str(x) for x in yaml.safe_load(rec.read_text()) or []]
        run.resolved = None
        resolved = run.folder / "config.yaml"
        if run.metrics is not None and resolved.is_file():
            from omegaconf import OmegaConf

            with contextlib.suppress(Exception):  # unreadable: compared as absent
                run.resolved = OmegaConf.load(resolved)


def _parsed(overrides: Sequence[str]) -> dict[str, tuple[str, str]]:
    """key -> (the value, canonical; the override as written), by Hydra's own parser, so
    that ``x=false`` and Hydra's record ``x=False`` compare equal."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    out = {}
    for text in overrides:
        try:
            (o,) = parser.parse_overrides([text])
            key = o.get_key_element().lstrip("+~")
            value = json.dumps(o.value(), sort_keys=True, default=str)
        except Exception:  # not parseable: compare the text
            key, value = _override_key(text), text
        out[key] = (value, text)
    return out


def _resolved_value(run: Run, key: str) -> str | None:
    """The value of a dotted config ``key`` in the run's resolved config, canonical as
    `_parsed` writes it (None when the config or the key is missing): a study override
    that pins the value a run already had (a default it was made with) is not a change
    of its settings."""
    from omegaconf import OmegaConf

    if run.resolved is None:
        return None
    value = OmegaConf.select(run.resolved, key, default=None, throw_on_missing=False)
    if value is None:
        return None
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value)
    return json.dumps(value, sort_keys=True, default=str)


def drift(run: Run) -> tuple[list[str], list[str]]:
    """(overrides the study gives that the run's folder did not record, overrides the
    run recorded beyond the study's, e.g. a launch's extra command line): the first
    non-empty means the run was made with other settings than the study file now says."""
    if run.recorded is None:
        return [], []
    recorded = {k: v for k, v in _parsed(run.recorded).items() if k != "skip_done"}
    intended = _parsed(run.overrides)
    lacks = [
        text
        for k, (v, text) in intended.items()
        if recorded.get(k, (None,))[0] != v and _resolved_value(run, k) != v
    ]
    more = [text for k, (v, text) in recorded.items() if intended.get(k, (None,))[0] != v]
    return lacks, more


def matches(run: Run, where: Mapping[str, Any]) -> bool:
    for key, want in where.items():
        have = run.identity[key] if key in run.identity else run.select.get(key)
        wanted = want if isinstance(want, list) else [want]
        if _norm(have) not in {_norm(w) for w in wanted}:
            return False
    return True


# ---- launching --------------------------------------------------------------------------
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
    base = {**study.common, **sweep.fixed}
    args = [python or sys.executable, "-m", "wsol.run", "-m"]
    args += [_substitute(v, runs_dir) for k, v in base.items() if k not in sweep.sweep]
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
    keys = ("model", "pool", "localizer", "data", "seed", "sweep")
    out: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or key not in keys or not values:
            raise WSOLError(
                f"--only {item!r}: expected KEY=V1[,V2...] with KEY one of {', '.join(keys)}"
            )
        out.setdefault(key, []).extend(v for v in values.split(",") if v)
    return out


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
    for sweep in study.sweeps:
        mine = [r for r in runs if r.sweep == sweep.name]
        if only:
            mine = [r for r in mine if matches(r, only)]
            if not mine:
                continue
        todo = [r for r in mine if not r.done]
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


# ---- outputs ----------------------------------------------------------------------------
def _display(path: Path, results_dir: Path) -> str:
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
        make = f"make study STUDY={stem}" + (f" ARGS={shlex.quote(args)}" if args else "")
        return make
    path = _display(study.path.resolve(), results_dir)
    cmd = f"python -m wsol.study {shlex.quote(path)} --results-dir {shlex.quote(_display(results_dir, results_dir))}"
    return cmd + (f" {args}" if args else "")


def _common_extras(runs: Sequence[Run]) -> list[str]:
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
        mine = [run for run in runs if matches(run, r.get("where") or {})]
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
                label=str(r["label"]),
                values=values,
                expected=expected,
                done=sum(run.done for run in row_runs),
                planned=len(row_runs),
                metrics=r.get("metrics"),
                absent=absent,
                published=study.published.get(r["label"], {}),
                note=r.get("note"),
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


def markdown(
    study: Study,
    runs: Sequence[Run],
    results_dir: Path,
    runs_dir: Path,
    figures: Mapping[str, str] | None = None,
    figure_text: str = "",
) -> str:
    extras = _common_extras(runs)
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
    machines = sorted({str(r.metrics.get("machine") or "not recorded") for r in done})
    lines = [f"# {study.title}", ""]
    if study.description:
        lines += [study.description, ""]
    common = " ".join(f"`{o}`" for o in study.common.values()) or "the defaults of `conf/`"
    header = [
        ("Data", study.data or "—"),
        ("Hardware", "; ".join(machines) if machines else "— (no finished runs yet)"),
        ("Settings", common + " (each sweep's own overrides: see *Runs* below)"),
        ("Published numbers", _source_line(study.source) or "none (nothing to compare with)"),
        ("Runs", f"{len(done)}/{len(runs)} finished, in `{_display(runs_dir, results_dir)}/`"),
        ("Remake", f"`{command}`" + (f" (= `{python_command}`)" if python_command else "")),
    ]
    lines += ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in header] + [""]
    lines += [table, ""]
    notes = tables.footnotes(used, command, study.published_label)
    if "notes" in used:
        notes += [f"\\* {r['label']}: {r['note']}" for r in study.rows if r.get("note")]
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
        cmd = sweep_command(study, sweep, runs_dir, python="python")
        cmd = [c.replace(str(runs_dir), _display(runs_dir, results_dir)) for c in cmd]
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


# ---- figures ----------------------------------------------------------------------------
def _cam_runs(runs: Sequence[Run]) -> list[Run]:
    return [
        r for r in runs if r.identity["localizer"] == "cam" and r.identity["pool"] in ("avg", "max")
    ]


def _curves_frame(runs: Sequence[Run], column: str):
    import pandas as pd

    frames = []
    for r in _cam_runs(runs):
        f = r.folder / "curves.csv"
        if not r.done or not f.is_file():
            continue
        c = pd.read_csv(f)
        if column not in c.columns:
            continue
        frames.append(
            pd.DataFrame(
                {
                    "network": r.identity["model"],
                    "pool": r.identity["pool"],
                    "seed": r.identity["seed"],
                    "threshold": c["threshold"].astype(float),
                    column: c[column].astype(float),
                }
            )
        )
    return pd.concat(frames, ignore_index=True) if frames else None


def _box_frames(runs: Sequence[Run]):
    import pandas as pd

    from wsol.report import study_figures

    frames = []
    for r in _cam_runs(runs):
        f = r.folder / "predictions.csv"
        if not r.done or not f.is_file():
            continue
        try:
            pred = pd.read_csv(f, keep_default_na=False)
            stats = study_figures.box_stats(pred)
        except (KeyError, ValueError) as e:
            log.warning("%s: no box statistics (%s)", f, e)
            continue
        stats.insert(0, "seed", r.identity["seed"])
        stats.insert(0, "pool", r.identity["pool"])
        stats.insert(0, "network", r.identity["model"])
        frames.append(stats)
    return pd.concat(frames, ignore_index=True) if frames else None


def cam_samples(run: Run, n: int) -> list[dict]:
    """The first ``n`` test images of ``run``'s data with the CAM of the ground-truth
    class of ``run``'s checkpoint, normalised to [0, 1] at the image's size, its box (the
    paper's: 20% of the max, largest component) and the box's IoU."""
    import torch
    import torch.nn.functional as F
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from wsol.data import collate
    from wsol.localize.cam import CAM
    from wsol.models import build_model
    from wsol.protocols.cam2016 import cam2016_box
    from wsol.report.figures import denormalize
    from wsol.report.study_figures import box_iou

    ckpt = torch.load(
        run.folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    model = {
        k: v for k, v in ckpt["hyper_parameters"]["model"].items() if not str(k).startswith("_")
    }
    model.update(pretrained=False, weights=None)
    net = build_model(**model)
    net.load_state_dict({k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")})
    net.eval()
    cfg = OmegaConf.load(run.folder / "config.yaml")
    dm = instantiate(cfg.data, num_workers=0, persistent_workers=False, pin_memory=False)
    ds = dm.dataset("test")
    batch = collate([ds[i] for i in range(min(n, len(ds)))])
    names = dm.class_names
    with torch.no_grad():
        f = net.forward_features(batch["image"])
        maps = CAM()(net, batch["image"], f, batch["label"][:, None])
    out = []
    for b in range(maps.shape[0]):
        h, w = (int(v) for v in batch["size"][b])
        image = F.interpolate(
            batch["image"][b : b + 1].float(), size=(h, w), mode="bilinear", align_corners=False
        )[0]
        cam = F.interpolate(
            maps[b : b + 1, :1].float(), size=(h, w), mode="bilinear", align_corners=False
        )[0, 0].numpy()
        box = cam2016_box(cam)
        gts = batch["boxes"][b].numpy().reshape(-1, 4)
        lo, hi = float(cam.min()), float(cam.max())
        out.append(
            {
                "id": batch["id"][b],
                "image": denormalize(image.numpy(), net.mean, net.std),
                "gt_boxes": gts,
                "cam": (cam - lo) / (hi - lo) if hi > lo else cam * 0,
                "box": box,
                "iou": float(box_iou(box, gts).max()) if len(gts) else 0.0,
                "caption": names[int(batch["label"][b])] if names else str(int(batch["label"][b])),
            }
        )
    return out


def write_figures(
    study: Study, runs: Sequence[Run], results_dir: Path
) -> tuple[dict[str, str], str]:
    """The gap_vs_gmp figures; (caption -> file name of each figure present, the box
    sentence). A figure whose inputs are absent (e.g. a fresh clone without checkpoints)
    is left as it is."""
    import pandas as pd

    from wsol.report import study_figures as sf

    spec = study.figures or {}
    if spec.get("kind", "gap_vs_gmp") != "gap_vs_gmp":
        raise WSOLError(
            f"{study.path}: figures.kind {spec.get('kind')!r} unknown; valid: gap_vs_gmp"
        )
    name = study.name
    shown: dict[str, str] = {}
    cam_runs = _cam_runs(runs)
    # 1. CAM overlays, GAP vs GMP
    network = spec.get("network") or (cam_runs[0].identity["model"] if cam_runs else None)
    seed = int(spec.get("seed", 0))
    pair = {
        pool: next(
            (
                r
                for r in cam_runs
                if r.identity["model"] == network
                and r.identity["pool"] == pool
                and r.identity["seed"] == seed
            ),
            None,
        )
        for pool in ("avg", "max")
    }
    cams_file = results_dir / f"{name}_cams.png"
    if all(
        r is not None and r.done and (r.folder / "checkpoints" / "last.ckpt").is_file()
        for r in pair.values()
    ):
        try:
            n = int(spec.get("images", 8))
            gap, gmp = cam_samples(pair["avg"], n), cam_samples(pair["max"], n)
            samples = [
                {
                    "image": a["image"],
                    "gt_boxes": a["gt_boxes"],
                    "caption": a["caption"],
                    "maps": {"avg": a, "max": b},
                }
                for a, b in zip(gap, gmp)
                if a["id"] == b["id"]
            ]
            sf.cam_pairs(
                samples, cams_file, title=f"{sf.network_label(network)}, seed {seed}: GAP vs GMP"
            )
        except Exception as e:  # a figure never stops the tables
            log.warning("CAM figure not made: %s: %s", type(e).__name__, e)
    if cams_file.is_file():
        shown[f"CAMs of {sf.network_label(str(network))} (seed {seed}) under GAP and GMP"] = (
            cams_file.name
        )
    # 2. accuracy against the CAM threshold
    column = str(spec.get("curve", "v2_iou50"))
    curves_file = results_dir / f"{name}_threshold.png"
    sf.threshold_curves(_curves_frame(runs, column), curves_file, column=column)
    if curves_file.is_file():
        shown[f"Box accuracy ({column}) against the CAM threshold, GAP vs GMP"] = curves_file.name
    # 3. box IoU and size
    boxes_file, summary_file = results_dir / f"{name}_boxes.png", results_dir / f"{name}_boxes.csv"
    per_image = _box_frames(runs)
    summary = None
    if per_image is not None:
        summary = sf.summarize_boxes(per_image)
        write_csv(summary_file, summary)
        sf.box_figure(per_image, summary, boxes_file)
    elif summary_file.is_file():
        summary = pd.read_csv(summary_file)
    if boxes_file.is_file():
        shown["Box IoU and box size relative to the ground truth, GAP vs GMP"] = boxes_file.name
    text = sf.box_sentence(summary)
    if summary is not None:
        text += f" (Per-run numbers: [{summary_file.name}]({summary_file.name}).)"
    return shown, text


def write_outputs(
    study: Study, runs: Sequence[Run], results_dir: Path, runs_dir: Path, figures: bool = True
) -> list[Path]:
    results_dir.mkdir(parents=True, exist_ok=True)
    shown, text = ({}, "")
    if study.figures and figures:
        shown, text = write_figures(study, runs, results_dir)
    csv_path, md_path = results_dir / f"{study.name}.csv", results_dir / f"{study.name}.md"
    write_csv(csv_path, long_csv(study, runs))
    write_text(md_path, markdown(study, runs, results_dir, runs_dir, shown, text))
    return [csv_path, md_path, *(results_dir / f for f in shown.values())]


# ---- command line -----------------------------------------------------------------------
def study_path(arg: str) -> Path:
    p = Path(arg)
    if p.suffix not in (".yaml", ".yml") and not p.exists():
        cand = REPO / "experiments" / f"{arg}.yaml"
        if cand.is_file():
            return cand
    return p


def dry_run_report(study: Study, runs: Sequence[Run], runs_dir: Path, launcher, extra) -> str:
    lines = [
        f"study {study.name}: {sum(r.done for r in runs)}/{len(runs)} runs finished ({runs_dir})"
    ]
    for sweep in study.sweeps:
        mine = [r for r in runs if r.sweep == sweep.name]
        lines.append(f"\nsweep {sweep.name}: {sum(r.done for r in mine)}/{len(mine)} finished")
        for r in mine:
            fewer, _ = drift(r)
            state = "done" if r.done else ("started, unfinished" if r.folder.exists() else "to do")
            if r.done and fewer:
                state += f" (made without: {' '.join(fewer)})"
            lines.append(f"  {r.name:<48} {state}")
        if any(not r.done for r in mine):
            lines.append(
                "  would run: "
                + shlex.join(
                    ["python", *sweep_command(study, sweep, runs_dir, launcher, extra)[1:]]
                )
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wsol.study",
        description="Run a study's unfinished runs (Hydra multiruns of wsol.run) and write "
        "results/NAME.csv, results/NAME.md and its figures.",
    )
    parser.add_argument("study", help="experiments/NAME.yaml (or NAME)")
    mode = parser.add_mutually_exclusive_group()
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
    parser.add_argument("--no-figures", action="store_true", help="tables only, no figures")
    parser.add_argument(
        "--launcher",
        default=None,
        help="a Hydra launcher (adds hydra/launcher=NAME), e.g. submitit_slurm",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="launch only the runs whose model/pool/localizer/data/seed/sweep is one of the "
        "values (repeatable; e.g. --only seed=0 --only model=googlenet_gap,nin); the table "
        "still lists every planned run",
    )
    parser.add_argument(
        "--results-dir",
        default=None,
        help="where NAME.csv/.md and runs/ go (default: results/ beside experiments/)",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        help="overrides added to every multirun (trainer=gpu, data roots, launcher settings)",
    )
    args = parser.parse_intermixed_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        study = load_study(study_path(args.study))
        results_dir, runs_dir = resolve_paths(study, args.results_dir)
        check_overrides(list(args.overrides))
        only = parse_only(args.only)
        runs = expand_runs(study, runs_dir)
        refresh(runs)
        if args.dry_run:
            print(dry_run_report(study, runs, runs_dir, args.launcher, args.overrides))
            return 0
        failures: list[str] = []
        if not args.tables_only:
            if any(not r.done for r in runs):
                check_env(study)
            failures = launch(study, runs, runs_dir, args.launcher, args.overrides, only)
            refresh(runs)
        written = write_outputs(study, runs, results_dir, runs_dir, figures=not args.no_figures)
        print(
            f"[study {study.name}] {sum(r.done for r in runs)}/{len(runs)} runs finished; wrote "
            + ", ".join(_display(p, results_dir) for p in written),
            flush=True,
        )
        for f in failures:
            print(f"[study {study.name}] FAILED: {f}", file=sys.stderr, flush=True)
        return 1 if failures else 0
    except WSOLError as e:
        fail(str(e), e.exit_code)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
