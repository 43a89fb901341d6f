"""Planning: a study's runs (`expand_runs`), what their folders hold (`refresh`), whether a
finished run was made with the settings the study now gives (`drift`), and which runs a
row or column selects (`matches`).

A run is named by composing its config with Hydra (``run_name`` evaluated on it) and is
*finished* when its folder holds ``metrics.json``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from wsol.cli import CONF_DIR, check_overrides
from wsol.errors import WSOLError
from wsol.study.overrides import SAFE_VALUE, canonical, parse, render_value
from wsol.study.spec import Study

log = logging.getLogger("wsol.study")

#: the keys of a run's identity (rows, columns and --only select on them)
IDENTITY = ("model", "pool", "method", "localizer", "data", "seed", "sweep")


@dataclass
class Run:
    name: str
    sweep: str
    overrides: list[str]  # the job's overrides: experiment=NAME first, then the sweep's
    identity: dict[str, Any]  # model, pool, method, localizer, data, seed, sweep
    select: dict[str, Any]  # further config values rows select on
    folder: Path
    metrics: dict | None = None
    recorded: list[str] | None = None  # the overrides in the folder's .hydra/overrides.yaml
    resolved: Any = None  # a finished run's resolved config.yaml (DictConfig), when readable
    #: the study's experiment as overrides (key -> "key=value"): what ``experiment=NAME``
    #: in `overrides` sets
    experiment: dict[str, str] = field(default_factory=dict)
    #: key -> canonical value, in the run's composed config, of each config value the
    #: study sets (interpolations such as ${oc.env:...} resolved)
    expected: dict[str, str] = field(default_factory=dict)
    #: the config group choices Hydra recorded (.hydra/hydra.yaml), when the folder has them
    choices: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        return self.metrics is not None


def resolve_paths(study: Study, results_dir: str | Path | None) -> tuple[Path, Path]:
    """(results folder, runs folder), absolute. Default results folder: ``results/`` next
    to the study file's folder (the repository's, for ``experiments/NAME.yaml``)."""
    results = (
        Path(results_dir)
        if results_dir is not None
        else study.path.resolve().parent.parent / "results"
    )
    results = results.resolve()
    runs = (results / (study.runs_dir or f"runs/{study.name}")).resolve()
    if not SAFE_VALUE.match(str(runs)):
        raise WSOLError(
            f"the runs folder {runs} has characters Hydra overrides cannot take unquoted "
            "(spaces, commas, quotes); use --results-dir DIR with a plain path"
        )
    return results, runs


def substitute(override: str, runs_dir: Path) -> str:
    """``{runs}`` in an override: the absolute runs folder."""
    return override.replace("{runs}", str(runs_dir))


def sweep_base(study: Study, sweep, runs_dir: Path) -> list[str]:
    """A sweep's overrides before the swept ones: the experiment, then its fixed ones."""
    head = [study.experiment.override] if study.experiment else []
    return head + [substitute(v, runs_dir) for k, v in sweep.fixed.items() if k not in sweep.sweep]


def is_group(key: str) -> bool:
    """Whether an override key chooses a config group (``data``, ``hydra/launcher``)."""
    return "." not in key and (CONF_DIR / key).is_dir()


def _norm(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _where_keys(study: Study) -> set[str]:
    keys = set()
    for r in study.rows:
        keys |= set(r.where)
    for c in study.metrics.values():
        keys |= set(c.where)
    return keys - set(IDENTITY)


class _Composer:
    """Composes run configs with Hydra's compose API (one initialisation for all). A
    composition is kept for the process (the configs do not change while it runs): the
    studies that share runs, and every later expansion, get a copy (~20 ms) instead of a
    new composition (~350 ms)."""

    _cache: ClassVar[dict[tuple[str, ...], Any]] = {}

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
        import copy

        from hydra import compose

        key = tuple(overrides)
        if key not in self._cache:
            self._cache[key] = compose(
                config_name="config", overrides=list(overrides), return_hydra_config=True
            )
        return copy.deepcopy(self._cache[key])


def _value(cfg, key: str) -> str | None:
    """The canonical value of ``key`` in ``cfg``, resolved; None when it cannot be."""
    from omegaconf import OmegaConf

    try:
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=True)
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
    except Exception:  # an interpolation this context cannot resolve (${hydra:...})
        return None
    return canonical(value)


def _compose_error(where: str, e: Exception) -> WSOLError:
    if isinstance(e, WSOLError):
        return WSOLError(f"{where}: {e}")
    msg = " ".join(str(e).split())  # Hydra's composition and interpolation errors
    return WSOLError(f"{where}: {type(e).__name__}: {msg}")


def search_settings(overrides: Sequence[str]) -> list[str]:
    """``overrides`` without those in Hydra's sweep syntax (``interval(...)``,
    ``range(...)``, ``choice(...)``, ``a,b``): a search cell's additions to its search
    space, which only the sweeper reads."""
    from wsol.cli import parse_overrides

    sweeps = {i for i, o in enumerate(parse_overrides(list(overrides))) if o.is_sweep_override()}
    return [o for i, o in enumerate(overrides) if i not in sweeps]


def expand_runs(study: Study, runs_dir: Path) -> list[Run]:
    """Every run of the study, in sweep order, named by composing its config."""
    from omegaconf import OmegaConf

    select_keys = _where_keys(study)
    runs: list[Run] = []
    seen: dict[str, Run] = {}
    with _Composer() as composer:
        for sweep in study.sweeps:
            base = sweep_base(study, sweep, runs_dir)
            keys = list(sweep.sweep)
            # runs that differ only in an integer seed share one composition (3x faster
            # for 3 seeds): the seed is set on the composed config, as Hydra would
            seeds = sweep.sweep.get("seed", [])
            by_seed = bool(seeds) and all(
                isinstance(v, int) and not isinstance(v, bool) for v in seeds
            )
            composed: dict[tuple, Any] = {}
            for combo in itertools.product(*(sweep.sweep[k] for k in keys)):
                own = [f"{k}={render_value(v)}" for k, v in zip(keys, combo)]
                overrides = base + own
                where = f"{study.path}: sweep {sweep.name!r} run {' '.join(own)}"
                try:
                    check_overrides(overrides)
                    # a search cell's search space given as sweep syntax (``x=interval(1,96)``)
                    # is the sweeper's business: the run's config is composed without it
                    plain = search_settings(overrides) if sweep.search else overrides
                    key = tuple(o for o in plain if not (by_seed and o.startswith("seed=")))
                    cfg = composed.get(key)
                    if cfg is None:
                        cfg = composer.compose(
                            [*plain, f"hydra.sweep.subdir={render_value(study.run_name)}"]
                        )
                        composed[key] = cfg
                    if by_seed:
                        cfg.seed = int(combo[keys.index("seed")])
                    name = str(cfg.hydra.sweep.subdir)
                    if sweep.search is not None:  # a search cell: not the default run
                        name += f"-search{sweep.search.trials}"
                    choices = cfg.hydra.runtime.choices
                    identity = {
                        "model": str(OmegaConf.select(cfg, "model.name", default="?")),
                        "pool": str(OmegaConf.select(cfg, "pool.name", default="?")),
                        # the training method's choice (method=NAME; cam when the config has none)
                        "method": str(choices.get("method") or "cam"),
                        "localizer": str(choices.get("localizer")),
                        "data": str(OmegaConf.select(cfg, "data.name", default="?")),
                        "seed": int(cfg.seed),
                        "sweep": sweep.name,
                    }
                    select = {
                        k: OmegaConf.select(cfg, k, default=None, throw_on_resolution_failure=False)
                        for k in select_keys
                    }
                    settings = {**parse(study.settings.values()), **parse(plain)}
                    expected = {
                        k: v
                        for k in settings
                        if not is_group(k) and k != "experiment"
                        for v in [_value(cfg, k)]
                        if v is not None
                    }
                except Exception as e:
                    raise _compose_error(where, e) from None
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
                    experiment=study.settings,
                    expected=expected,
                )
                seen[name] = run
                runs.append(run)
    return runs


def inputs(run: Run, runs_dir: Path) -> list[tuple[str, Path]]:
    """What ``run`` reads from other runs: (the producing run's name, path) for each
    setting whose value is a path in the runs folder (``{runs}/NAME/...`` in a study file,
    such as another run's checkpoint as ``model.weights``), resolved for this run."""
    out = []
    for value in run.expected.values():
        with contextlib.suppress(ValueError):
            value = json.loads(value)
        if not isinstance(value, str):
            continue
        path = Path(value)
        with contextlib.suppress(ValueError):
            rel = path.relative_to(runs_dir)
            if rel.parts:
                out.append((rel.parts[0], path))
    return out


def missing_inputs(runs: Sequence[Run], runs_dir: Path) -> dict[str, tuple[str, Path]]:
    """Unfinished run name -> (producer, path) for each run that reads a path another,
    *finished* run should hold but does not (a clone keeps no checkpoints): it would fail
    however often it is launched, until that run is made again (``--redo NAME``)."""
    by_name = {r.name: r for r in runs}
    out = {}
    for r in runs:
        if r.done:
            continue
        for producer, path in inputs(r, runs_dir):
            made_by = by_name.get(producer)
            if made_by is not None and made_by.done and not path.exists():
                out[r.name] = (producer, path)
                break
    return out


def blocked_line(name: str, producer: str, path: Path) -> str:
    """Why run ``name`` is not launched (an entry of `missing_inputs`), in one line."""
    return (
        f"{name} needs {path}, absent although {producer} is finished (a clone keeps no "
        f"checkpoints); make it again with --redo {producer}"
    )


def dependents(runs: Sequence[Run], names: Sequence[str], runs_dir: Path) -> list[Run]:
    """The runs ``names`` and every run that reads from them, directly or through another
    (in study order): what making those runs again makes stale."""
    reads = {r.name: {p for p, _ in inputs(r, runs_dir)} for r in runs}
    chosen = set(names)
    grew = True
    while grew:
        grew = False
        for r in runs:
            if r.name not in chosen and reads[r.name] & chosen:
                chosen.add(r.name)
                grew = True
    return [r for r in runs if r.name in chosen]


def refresh(runs: Sequence[Run]) -> None:
    """Read each run's metrics.json (None when absent or unreadable), its recorded
    overrides and choices, and a finished run's resolved config."""
    for run in runs:
        run.metrics = None
        f = run.folder / "metrics.json"
        if f.is_file():
            try:
                run.metrics = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                log.warning("%s: unreadable (%s); the run counts as unfinished", f, e)
        run.recorded = None
        rec = run.folder / ".hydra" / "overrides.yaml"
        if rec.is_file():
            with contextlib.suppress(OSError, yaml.YAMLError):
                run.recorded = [str(x) for x in yaml.safe_load(rec.read_text()) or []]
        run.choices = None
        hydra_file = run.folder / ".hydra" / "hydra.yaml"
        if hydra_file.is_file():
            with contextlib.suppress(OSError, yaml.YAMLError, AttributeError, TypeError):
                choices = yaml.safe_load(hydra_file.read_text())["hydra"]["runtime"]["choices"]
                run.choices = dict(choices) if isinstance(choices, Mapping) else None
        run.resolved = None
        resolved = run.folder / "config.yaml"
        if run.metrics is not None and resolved.is_file():
            from omegaconf import OmegaConf

            with contextlib.suppress(Exception):  # unreadable: compared as absent
                run.resolved = OmegaConf.load(resolved)


def _made_with(
    run: Run,
    key: str,
    value: str,
    recorded: dict,
    by_experiment: bool,
    moved: tuple[str, str] | None = None,
) -> bool:
    """Whether the finished ``run`` was made with ``key`` at the canonical ``value``."""
    if key in recorded:
        if recorded[key][0] == value:
            return True
    if is_group(key):
        if run.choices is not None and key in run.choices:
            return canonical(run.choices[key]) == value
        # git keeps no hydra.yaml: a group whose options carry their own name (model,
        # pool) shows its choice in the resolved config.yaml
        if run.resolved is not None and _value(run.resolved, f"{key}.name") == value:
            return True
        # chosen by the experiment the run was made with
        return by_experiment and key not in recorded
    # a config value: the run's resolved config.yaml holds what it was made with (a key
    # a run predates reads as null, the value that keeps the former behaviour)
    if run.resolved is None:
        return False
    have = _value(run.resolved, key)
    if have is not None and moved is not None:
        have = have.replace(*moved)
    return have is not None and have in (value, run.expected.get(key))


def _moved(run: Run) -> tuple[str, str] | None:
    """(the runs folder the run was made in, the one it is in now) when they differ (a
    clone elsewhere): paths into it ({runs} in a sweep) compare relative to it."""
    from omegaconf import OmegaConf

    if run.resolved is None:
        return None
    made_in = OmegaConf.select(run.resolved, "paths.output_dir", default=None)
    if not isinstance(made_in, str) or Path(made_in).name != run.folder.name:
        return None
    old, new = str(Path(made_in).parent), str(run.folder.parent)
    return (old, new) if old != new else None


def drift(run: Run) -> tuple[list[str], list[str]]:
    """(the study's settings the run was not made with, overrides the run recorded beyond
    the study's, e.g. a launch's extra command line): the first non-empty means the run
    was made with other settings than the study file now says.

    Settings are compared resolved: each override the study gives for the run, those of
    its experiment included, holds when the run recorded it, or its resolved config.yaml
    has that value (a pin of the value a run already had is no change), or, for a group
    the experiment chooses, the run was made with the same experiment. So a run made
    before the study named an experiment (its record lists the settings one by one) and
    one made with ``experiment=NAME`` are both current while the values agree. Paths into
    the runs folder compare relative to it (a clone elsewhere has moved it)."""
    if run.recorded is None:
        return [], []
    moved = _moved(run)
    texts = [t.replace(*moved) for t in run.recorded] if moved else run.recorded
    recorded = {k: v for k, v in parse(texts).items() if k != "skip_done"}
    own = parse(run.overrides)
    wanted = own.pop("experiment", None)
    made = recorded.pop("experiment", None)
    same = wanted is not None and made is not None and made[0] == wanted[0]
    intended = {**parse(run.experiment.values()), **own}
    lacks = [
        text
        for k, (v, text) in intended.items()
        if not _made_with(run, k, v, recorded, same and k in run.experiment, moved)
    ]
    more = [text for k, (v, text) in recorded.items() if intended.get(k, (None,))[0] != v]
    if made is not None and not same:
        more.append(made[1])
    return lacks, more


def matches(run: Run, where: Mapping[str, Any]) -> bool:
    for key, want in where.items():
        have = run.identity[key] if key in run.identity else run.select.get(key)
        wanted = want if isinstance(want, list) else [want]
        if _norm(have) not in {_norm(w) for w in wanted}:
            return False
    return True
