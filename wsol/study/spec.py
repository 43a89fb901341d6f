"""The study file (``experiments/NAME.yaml``): its schema, in one place, and `load_study`.

The dataclasses below *are* the schema: each field is a key, its annotation what the
value may be, no default means required, ``doc`` what it means (`schema.keys_doc`
prints them). `wsol.study.schema.build` derives the checks from them; `load_study` adds
only what a type cannot say: that the names rows, columns and published numbers refer to
exist and are unique. Every problem is one `WSOLError` line naming the file, the key
and the value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from wsol.errors import WSOLError
from wsol.report import tables
from wsol.study.experiment import Experiment, load_experiment
from wsol.study.overrides import override_key, render_value
from wsol.study.schema import NONEMPTY, Check, build, doc, key_path, matches

DEFAULT_RUN_NAME = "${model.name}-${pool.name}-${hydra.runtime.choices.localizer}-s${seed}"

Override = Annotated[
    str,
    Check(
        lambda v: "=" in v or (v.startswith("~") and len(v) > 1),
        "an override, key=value or ~key",
    ),
]
#: a list of "key=value" overrides, or a mapping key -> value
Overrides = list[Override] | dict[str, Any]
Values = Annotated[Any, Check(lambda v: v != [], "a value or a non-empty list of values")]
Where = dict[str, Any]


@dataclass
class SourceSpec:
    paper: str = field(default="", metadata=doc("the paper (authors, title, venue)"))
    table: str = field(default="", metadata=doc("the table or section the numbers come from"))
    page: int | str | None = field(default=None, metadata=doc("its page"))
    url: str = field(default="", metadata=doc("where to read it"))
    note: str = field(default="", metadata=doc("what was (not) verified"))
    study: str = field(
        default="", metadata=doc("the study on the paper's own data (for a CPU twin)")
    )


@dataclass
class SearchSpec:
    trials: Annotated[int, Check(lambda v: v >= 1, "at least 1")] = field(
        metadata=doc("the search's budget: random trials per cell (the paper's 30)")
    )
    rerun: bool = field(
        default=False,
        metadata=doc(
            "test the best trial's config trained again instead of its checkpoint "
            "(python -m wsol.selection --rerun)"
        ),
    )


@dataclass
class SweepSpec:
    name: str | None = field(
        default=None, metadata=doc("the sweep's name (rows may select on it); default sweepN")
    )
    sweep: dict[str, Values] = field(
        default_factory=dict, metadata=doc("key -> values: the runs are the cartesian product")
    )
    fixed: Overrides = field(
        default_factory=list, metadata=doc("this sweep's own overrides (or a mapping key -> value)")
    )
    search: SearchSpec | None = field(
        default=None,
        metadata=doc(
            "search-then-test cells (wsolevaluation's selection protocol, docs/SELECTION.md): "
            "each run of the sweep is a search (hparams_search=NAME, swept or fixed) of "
            "`trials` trials scored on val, then one test of its best trial"
        ),
    )


@dataclass
class ColumnSpec:
    metric: str | None = field(
        default=None, metadata=doc("the metrics.json key (default: the column's name)")
    )
    heading: str | None = field(
        default=None, metadata=doc("the column's heading (default: its name)")
    )
    where: Where = field(
        default_factory=dict, metadata=doc("a further selection of the cell's runs")
    )


@dataclass
class RowSpec:
    label: str = field(metadata=doc("the row's label (published numbers refer to it)"))
    where: Where = field(
        default_factory=dict,
        metadata=doc("which runs the row pools: key -> value (or list of values)"),
    )
    metrics: list[str] | None = field(
        default=None, metadata=doc("the row's columns (default: all); others n/a")
    )
    note: str | None = field(default=None, metadata=doc("a footnote for the row"))


@dataclass
class FiguresSpec:
    kind: Literal["gap_vs_gmp", "methods"] = field(
        default="gap_vs_gmp",
        metadata=doc(
            "which figures: gap_vs_gmp (CAMs under GAP and GMP, threshold curves, boxes) or "
            "methods (each table row's map on the same test images)"
        ),
    )
    network: str | None = field(default=None, metadata=doc("the network of the CAM figure"))
    seed: int = field(default=0, metadata=doc("the seed of the CAM figure"))
    images: int = field(default=8, metadata=doc("the CAM figure's number of images"))
    curve: str = field(
        default="v2_iou50", metadata=doc("the curves.csv column of the threshold figure")
    )


@dataclass
class StudyFile:
    """The keys of a study file."""

    title: str = field(metadata=doc("the table's title"))
    metrics: Annotated[dict[str, str | ColumnSpec] | list[str], NONEMPTY] = field(
        metadata=doc("the columns in order: name -> heading (or -> {metric, heading, where})")
    )
    rows: Annotated[list[RowSpec], NONEMPTY] = field(metadata=doc("the table, top to bottom"))
    sweeps: Annotated[list[SweepSpec], NONEMPTY] = field(
        metadata=doc(
            "the runs: one Hydra multirun each, in order",
            hint="a study needs at least one sweep",
        )
    )
    name: Annotated[str, matches(r"^[A-Za-z0-9_.-]+$", "letters, digits, _ . -")] | None = field(
        default=None, metadata=doc("results/NAME.{csv,md} (default: the file's stem)")
    )
    description: str = field(default="", metadata=doc("a paragraph under the title"))
    source: SourceSpec | None = field(default=None, metadata=doc("where `published` comes from"))
    data: str = field(default="", metadata=doc("the data, in words (the header)"))
    requires_env: dict[str, str] = field(
        default_factory=dict, metadata=doc("environment variables the runs need -> what")
    )
    runs_dir: str | None = field(
        default=None, metadata=doc("run folders, relative to results/ (default runs/NAME)")
    )
    experiment: str | None = field(
        default=None,
        metadata=doc("the shared settings: conf/experiment/NAME.yaml (a Hydra experiment config)"),
    )
    seeds: list[int] | None = field(
        default=None, metadata=doc("each sweep's seeds unless it sets seed itself")
    )
    run_name: str = field(
        default=DEFAULT_RUN_NAME, metadata=doc("a run's folder name (an interpolation)")
    )
    published: dict[str, dict[str, str | int | float | None]] = field(
        default_factory=dict, metadata=doc("the source's numbers: row label -> column -> value")
    )
    published_from: str | None = field(
        default=None, metadata=doc("take published and source from that study")
    )
    published_label: str = field(default="paper", metadata=doc("the published column's heading"))
    delta: bool = field(default=True, metadata=doc("show the ours - published column"))
    notes: list[str] = field(default_factory=list, metadata=doc("footnotes under the table"))
    figures: FiguresSpec | None = field(default=None, metadata=doc("the GAP-vs-GMP figures"))


#: keys of former study files -> what replaced them
RETIRED = {
    "common": "name a Hydra experiment config instead: experiment: NAME (conf/experiment/NAME.yaml)",
    "common_from": "name the other study's experiment instead: experiment: NAME",
}


# ---- the study, checked and resolved ----------------------------------------------------
@dataclass
class Sweep:
    name: str
    sweep: dict[str, list]  # key -> values (the cartesian product)
    fixed: dict[str, str]  # key -> the override as given ("key=value")
    search: SearchSpec | None = None  # search-then-test cells (wsol.study.search)


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
    experiment: Experiment | None = None
    run_name: str = DEFAULT_RUN_NAME
    sweeps: list[Sweep] = field(default_factory=list)
    metrics: dict[str, Column] = field(default_factory=dict)
    rows: list[RowSpec] = field(default_factory=list)
    published: dict = field(default_factory=dict)
    published_label: str = "paper"
    delta: bool = True
    notes: list[str] = field(default_factory=list)
    figures: FiguresSpec | None = None

    @property
    def settings(self) -> dict[str, str]:
        """The shared settings as overrides (the experiment's), key -> override."""
        return dict(self.experiment.settings) if self.experiment else {}


def read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise WSOLError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None


def parse_file(path: Path) -> StudyFile:
    """The study file checked against `StudyFile` (keys and types only)."""
    if not path.is_file():
        raise WSOLError(f"study file {path} does not exist")
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise WSOLError(f"{path}: a study file is a mapping (name, title, sweeps, rows, ...)")
    return build(StudyFile, raw, str(path), retired=RETIRED)


def _other(path: Path, key: str, other: str) -> tuple[StudyFile, str]:
    f = path.parent / (other if other.endswith(".yaml") else f"{other}.yaml")
    if not f.is_file():
        raise WSOLError(f"{path}: {key}: no study file {f}")
    return parse_file(f), f.stem


def _overrides(value: Any) -> dict[str, str]:
    """A list of "key=value" strings or a mapping key -> value, as key -> override."""
    if isinstance(value, dict):
        items = [f"{k}={render_value(v)}" for k, v in value.items()]
    else:
        items = [v.strip() for v in value]
    return {override_key(o): o for o in items}


def _columns(value: dict | list) -> dict[str, Column]:
    if isinstance(value, list):
        value = {m: m for m in value}
    out = {}
    for key, spec in value.items():
        if isinstance(spec, ColumnSpec):
            out[key] = Column(key, spec.metric or key, spec.heading or key, dict(spec.where))
        else:
            out[key] = Column(key, key, spec)
    return out


def _sweeps(spec: StudyFile, study: Study) -> list[Sweep]:
    out: list[Sweep] = []
    for i, s in enumerate(spec.sweeps):
        where = f"{study.path}: sweeps[{i}]"
        sweep = {k: (v if isinstance(v, list) else [v]) for k, v in s.sweep.items()}
        fixed = _overrides(s.fixed)
        if spec.seeds is not None and "seed" not in sweep and "seed" not in fixed:
            if "seed" not in study.settings:
                sweep["seed"] = list(spec.seeds)
        for k in sweep:
            fixed.pop(k, None)
        name = s.name or f"sweep{i}"
        if any(x.name == name for x in out):
            raise WSOLError(f"{where}.name: {name!r} is used by another sweep")
        if s.search is not None and "hparams_search" not in {**sweep, **fixed}:
            raise WSOLError(
                f"{where}.search: a search sweep chooses its search space, "
                "hparams_search=NAME (conf/hparams_search/), in fixed or sweep"
            )
        out.append(Sweep(name=name, sweep=sweep, fixed=fixed, search=s.search))
    return out


def _check_rows(rows: list[RowSpec], metrics: dict[str, Column], path: Path) -> None:
    labels = set()
    for i, r in enumerate(rows):
        where = f"{path}: rows[{i}]"
        if r.label in labels:
            raise WSOLError(f"{where}.label: {r.label!r} is used by another row")
        labels.add(r.label)
        bad = [m for m in r.metrics or [] if m not in metrics]
        if bad:
            raise WSOLError(f"{where}.metrics: {', '.join(bad)} not among the study's metrics")


def _check_published(published: dict, study: Study) -> None:
    labels = {r.label for r in study.rows}
    for label, cells in published.items():
        where = key_path(f"{study.path}: published", label)
        if label not in labels:
            raise WSOLError(f"{where}: no row has this label")
        for m, v in cells.items():
            if m not in study.metrics:
                raise WSOLError(f"{where}.{m}: not one of the study's metrics")
            try:
                tables.parse_published(v)
            except ValueError:
                raise WSOLError(f"{where}.{m}: {v!r} is not a number") from None


def load_study(path: str | Path) -> Study:
    """Read and check a study file; `WSOLError` naming the file and key on any problem."""
    path = Path(path)
    spec = parse_file(path)
    study = Study(
        path=path,
        name=spec.name or path.stem,
        title=spec.title,
        description=spec.description.strip(),
        source={k: v for k, v in vars(spec.source).items() if v} if spec.source else {},
        data=spec.data.strip(),
        requires_env=dict(spec.requires_env),
        runs_dir=spec.runs_dir,
        run_name=spec.run_name,
        published_label=spec.published_label,
        delta=spec.delta,
        notes=[n.strip() for n in spec.notes],
        figures=spec.figures,
    )
    if not re.match(r"^[A-Za-z0-9_.-]+$", study.name):
        raise WSOLError(f"{path}: name: {study.name!r} must be letters, digits, _ . -")
    if spec.experiment:
        study.experiment = load_experiment(spec.experiment, f"{path}: experiment")
    study.sweeps = _sweeps(spec, study)
    study.metrics = _columns(spec.metrics)
    _check_rows(spec.rows, study.metrics, path)
    study.rows = list(spec.rows)
    published = dict(spec.published)
    if spec.published_from:
        other, stem = _other(path, "published_from", spec.published_from)
        published = {**other.published, **published}
        if not study.source:
            inherited = vars(other.source) if other.source else {}
            study.source = {**{k: v for k, v in inherited.items() if v}, "study": stem}
    _check_published(published, study)
    study.published = published
    return study
