"""Model selection done right (Choe et al., CVPR 2020): hyperparameters and the CAM
threshold are chosen on the small fully annotated val split ("train-fullsup"), every
method gets the same budget of random trials, and the test split is scored once, for
the chosen trial only. docs/SELECTION.md describes the protocol and the commands.

The search itself is Hydra's Optuna sweeper (``python -m wsol.run -m
hparams_search=NAME``, ``conf/hparams_search/``); this module holds what the sweeper
does not:

- the objective: `objective_key` (MaxBoxAccV2 on box data, PxAP on mask data, or
  ``objective=KEY``) and `add_objective`, which records it in a trial's metrics (a
  missing key is a one-line error);
- the guard rails: `check_selection` (nothing is chosen on the test split) and
  `check_sweeper` (a sweeper that optimises what a job returns may only see val
  numbers), refused unless ``unsafe_select_on_test=true``;
- what makes a search resumable: the ``wsol.optuna_sqlite`` and ``wsol.trials_to_go``
  resolvers (the study's SQLite file in the sweep folder; a rerun runs only the
  trials not finished), `number_trial` (each trial's folder is its Optuna number, so a
  resumed search never reuses a finished trial's folder) and `random_sampler` /
  `tpe_sampler` (each trial's draws depend on the seed and the trial's number only,
  so a resumed random search does not repeat its first trials' values);
- the one test of the best trial: `score_best_trial` (``python -m wsol.selection SWEEP_DIR``).

Light at import (no torch, no optuna): `wsol.run` imports it for its resolvers.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from wsol.errors import WSOLError

log = logging.getLogger(__name__)

__all__ = [
    "BASIC_SWEEPER",
    "RESULTS_FILE",
    "STORAGE_FILE",
    "add_objective",
    "best_trial",
    "check_selection",
    "check_sweeper",
    "completed_trials",
    "number_trial",
    "objective_key",
    "random_sampler",
    "register_resolvers",
    "score_best_trial",
    "tpe_sampler",
    "trials_to_go",
]

#: Hydra's default sweeper: it launches the jobs and ignores what they return
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
#: the Optuna study of a search, in its sweep folder
STORAGE_FILE = "optuna.db"
#: what the Optuna sweeper writes into the sweep folder when a search ends
RESULTS_FILE = "optimization_results.yaml"
#: the folder of trial N inside the sweep folder (hydra.sweep.subdir of hparams_search)
TRIAL_DIR = "trial_{}"
#: where `score_best_trial` writes the test of the best trial, inside the sweep folder
TEST_DIR = "test_best"
UNSAFE = "unsafe_select_on_test"


# ---- the objective ---------------------------------------------------------------------
def objective_key(cfg: DictConfig, dataset) -> str:
    """The metric a search maximises: ``objective`` unless it is ``auto``; ``auto`` is
    wsolevaluation's choice by annotation, PxAP where the val split has masks
    (OpenImages: its readers say ``box_source == "masks"``, their boxes being only the
    masks' bounding boxes) and MaxBoxAccV2 elsewhere (box data; the synthetic data's
    masks are exact too, but it is box data like CUB and ImageNet)."""
    key = cfg.get("objective", "auto")
    if not isinstance(key, str) or not key.strip():
        raise WSOLError(f"objective={key!r}: must be auto or the name of a metric, e.g. pxap")
    if key != "auto":
        return key
    return "pxap" if getattr(dataset, "box_source", None) == "masks" else "maxboxacc_v2"


def add_objective(cfg: DictConfig, metrics: dict, dataset, prefix: str = "val_") -> float:
    """Record the run's objective in ``metrics`` (``objective``, ``objective_value``:
    what `wsol.run` returns to the sweeper) and return its value. The key must be one of
    the scored metrics (``prefix`` + key: a search trial's are its val metrics)."""
    key = objective_key(cfg, dataset)
    value = metrics.get(prefix + key)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        scored = sorted(k[len(prefix) :] for k, v in metrics.items() if k.startswith(prefix))
        shown = ", ".join(scored[:12]) + (", ..." if len(scored) > 12 else "")
        split = "val" if prefix == "val_" else "test"
        raise WSOLError(
            f"objective={key}: the {split} metrics have no {key!r} (they have: {shown or 'none'}); "
            "set objective= to one of them"
        )
    metrics["objective"] = key
    metrics["objective_value"] = float(value)
    return float(value)


# ---- the guard rails -------------------------------------------------------------------
def _flag(cfg: DictConfig, key: str) -> bool:
    return bool(cfg.get(key, False))


def check_selection(cfg: DictConfig) -> None:
    """Refuse, before anything is read or written, a run that would choose something on
    the test split: a search trial or ``val_thresholds=true`` whose val split is the
    test split (or that has no val split), unless ``unsafe_select_on_test=true``. Also
    refuses an objective that the selected protocols cannot score."""
    search = _flag(cfg, "search")
    chooses = "trials" if search else "thresholds"
    what = "search=true" if search else "val_thresholds=true"
    if search or _flag(cfg, "val_thresholds"):
        data = cfg.data
        name = data.get("name", "data")
        val, test = data.get("val_split"), data.get("test_split")
        if val is None:
            raise WSOLError(
                f"{what} chooses {chooses} on the val split, and data {name} has none "
                "(data.val_split=null); use a data set with a fully annotated val split "
                "(e.g. data=imagenet_wsol, cub_wsol, openimages_wsol) or set data.val_split"
            )
        if str(val) == str(test) and not _flag(cfg, UNSAFE):
            raise WSOLError(
                f"data.val_split={val} is the test split (data.test_split={test}): {what} would "
                f"choose {chooses} on the test split; set data.val_split to another split "
                f"(or {UNSAFE}=true to do it knowingly)"
            )
    if search:
        key = cfg.get("objective", "auto")
        if (key == "auto" or str(key).startswith(("maxboxacc", "pxap"))) and not _scores(
            cfg, "wsolevaluation"
        ):
            raise WSOLError(
                f"objective={key} is scored by the wsolevaluation protocol, which is not selected "
                "(protocol=...); add it (protocol=[cam2016,wsolevaluation]) or set objective="
            )


def _scores(cfg: DictConfig, protocol: str) -> bool:
    nodes = cfg.get("protocol") or {}
    return any(
        isinstance(n, DictConfig) and f".{protocol}." in f".{n.get('_target_', '')}."
        for n in nodes.values()
    )


def hydra_sweeper() -> str | None:
    """The ``_target_`` of the sweeper of the Hydra multirun this job is part of; None
    in a single run or outside Hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
    except (ImportError, ValueError):
        return None
    if hc.mode != RunMode.MULTIRUN:
        return None
    return str(hc.sweeper.get("_target_", "")) or None


def check_sweeper(cfg: DictConfig, program: str = "wsol.run", sweeper: str | None = None) -> None:
    """Refuse a job under a sweeper that optimises its return value (any but Hydra's
    basic sweeper) unless that value is a val number: a `wsol.run` search trial
    (``search=true``). Otherwise the sweeper would pick a trial, a checkpoint or a
    setting by a test number, which ``unsafe_select_on_test=true`` allows knowingly.
    ``sweeper``: the sweeper's ``_target_`` (default: this job's, from Hydra)."""
    target = sweeper if sweeper is not None else hydra_sweeper()
    if target is None or target == BASIC_SWEEPER or _flag(cfg, UNSAFE):
        return
    if program == "wsol.run" and _flag(cfg, "search"):
        return
    kind = target.rsplit(".", 1)[-1]
    fix = (
        "add hparams_search=NAME (or search=true) so that trials score the val split only"
        if program == "wsol.run"
        else "choose a checkpoint by a search on the val split (docs/SELECTION.md)"
    )
    raise WSOLError(
        f"the {kind} optimises what {program} returns, here a test-split number: choosing "
        f"by it selects on the test split; {fix}, or set {UNSAFE}=true to do it knowingly"
    )


# ---- what makes a search resumable -------------------------------------------------------
def optuna_sqlite(folder: str) -> str:
    """``${wsol.optuna_sqlite:FOLDER}``: the SQLite URL of ``FOLDER/optuna.db``; the
    folder is made here, since the sweeper opens the study before Hydra makes the sweep
    folder and SQLite does not make folders."""
    path = Path(str(folder)).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WSOLError(
            f"hydra.sweep.dir={folder}: cannot make the search's folder ({e.strerror}); "
            "set hydra.sweep.dir to a folder you can write"
        ) from None
    return f"sqlite:///{path / STORAGE_FILE}"


def completed_trials(storage_url: str, study_name: str) -> list:
    """The finished (COMPLETE) trials of the study, [] when it does not exist yet."""
    import optuna
    from optuna.trial import TrialState

    storage = optuna.storages.RDBStorage(storage_url)
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return []
    return storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.COMPLETE,))


def trials_to_go(total, storage_url: str, study_name: str) -> int:
    """``${wsol.trials_to_go:TOTAL,STORAGE,STUDY}`` (``hydra.sweeper.n_trials``): the
    trials this command runs, the study's budget less its finished trials. The sweeper
    runs ``n_trials`` more trials on every call; this makes the budget the study's, so an
    interrupted search rerun with the same folder finishes the budget and no more.
    Failed or interrupted trials do not count: new trials replace them."""
    try:
        n = int(total)
    except (TypeError, ValueError):
        n = 0
    if isinstance(total, bool) or n < 1 or str(n) != str(total).strip():
        raise WSOLError(f"search_trials={total}: must be a positive integer")
    done = len(completed_trials(str(storage_url), str(study_name)))
    if done:
        log.info(
            "study %s: %d of %d trials finished; running %d", study_name, done, n, max(0, n - done)
        )
    return max(0, n - done)


def number_trial(cfg: DictConfig, trial) -> None:
    """The sweeper's ``custom_search_space``: adds ``search_trial=N`` (the Optuna trial's
    number, a one-value parameter) to the trial's overrides, so that its folder is
    ``trial_N`` (hydra.sweep.subdir) and the best trial's folder is known from
    ``best_params``. Hydra's job numbers restart at 0 on every call, so a resumed
    search would otherwise write over its first trials' folders."""
    trial.suggest_int("search_trial", trial.number, trial.number)


def _trial_seed(seed: int, number: int, name: str) -> int:
    """The seed of one draw: from (seed, trial number, parameter name); crc32 because
    str's hash differs between processes."""
    import numpy as np

    entropy = [int(seed), int(number), zlib.crc32(name.encode())]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


_SAMPLERS: dict[str, type] = {}


def _random_sampler_class() -> type:
    """optuna's RandomSampler with each draw seeded from (seed, trial number, parameter):
    a trial's values do not depend on the trials drawn before it in this process."""
    if "random" not in _SAMPLERS:
        import numpy as np
        from optuna.samplers import RandomSampler

        class TrialSeededRandomSampler(RandomSampler):
            def __init__(self, seed: int | None = None):
                super().__init__(seed=seed)
                self._base_seed = 0 if seed is None else int(seed)

            def sample_independent(self, study, trial, param_name, param_distribution):
                self._rng = np.random.RandomState(
                    _trial_seed(self._base_seed, trial.number, param_name)
                )
                return super().sample_independent(study, trial, param_name, param_distribution)

        _SAMPLERS["random"] = TrialSeededRandomSampler
    return _SAMPLERS["random"]


def random_sampler(seed: int | None = 0):
    """The default sampler of ``hparams_search``: random search, as the paper's, with
    draws that depend only on (seed, trial number, parameter). optuna's own
    RandomSampler draws from one stream that restarts in every process, so a resumed
    search would repeat its first trials' values."""
    return _random_sampler_class()(seed=seed)


def tpe_sampler(seed: int | None = 0, n_startup_trials: int = 10):
    """TPE (``hydra.sweeper.sampler._target_=wsol.selection.tpe_sampler``) whose random
    start-up trials are drawn as `random_sampler`'s, so a resumed TPE search does not
    repeat them either."""
    from optuna.samplers import TPESampler

    sampler = TPESampler(seed=seed, n_startup_trials=int(n_startup_trials))
    sampler._random_sampler = random_sampler(seed)  # the start-up trials' sampler
    return sampler


def register_resolvers() -> None:
    """Register ``wsol.optuna_sqlite`` and ``wsol.trials_to_go`` (used by
    conf/hparams_search/_optuna.yaml)."""
    if not OmegaConf.has_resolver("wsol.optuna_sqlite"):
        OmegaConf.register_new_resolver("wsol.optuna_sqlite", optuna_sqlite)
    if not OmegaConf.has_resolver("wsol.trials_to_go"):
        OmegaConf.register_new_resolver("wsol.trials_to_go", trials_to_go)


register_resolvers()


# ---- the one test of the best trial ------------------------------------------------------
def best_trial(sweep_dir: str | Path, check: bool = True) -> tuple[Path, dict]:
    """(the best trial's folder, its metrics.json) of a finished search in
    ``sweep_dir``, from the sweeper's ``optimization_results.yaml`` (its
    ``best_params`` hold the trial's number, `number_trial`). Refuses a folder that is
    not a finished search; with ``check``, also a best trial that did not score the val
    split only (run without ``search=true``, so the search chose it by test numbers) or
    whose folder does not hold the study's best value."""
    sweep = Path(sweep_dir).expanduser()
    results = sweep / RESULTS_FILE
    if not results.is_file():
        raise WSOLError(
            f"{sweep}: no optimization_results.yaml, so not a finished search (the Optuna "
            "sweeper writes it when python -m wsol.run -m hparams_search=NAME ends)"
        )
    best = OmegaConf.to_container(OmegaConf.load(results))
    params = best.get("best_params") if isinstance(best, dict) else None
    if not isinstance(params, dict) or "search_trial" not in params:
        raise WSOLError(
            f"{results}: best_params has no search_trial, so it was not written by an "
            "hparams_search=NAME search (whose trial folders are named by it)"
        )
    folder = sweep / TRIAL_DIR.format(int(params["search_trial"]))
    metrics_file = folder / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    if not check:
        return folder, metrics
    if not metrics:
        raise WSOLError(f"{folder}: the best trial's folder has no metrics.json")
    if not metrics.get("search") or metrics.get("split") != "val":
        raise WSOLError(
            f"{metrics_file}: the best trial did not score the val split only (it was not run "
            f"with search=true), so the search chose it by test numbers; {UNSAFE}=true tests it "
            "knowingly"
        )
    value, have = best.get("best_value"), metrics.get("objective_value")
    if value is not None and (have is None or abs(float(have) - float(value)) > 1e-6):
        raise WSOLError(
            f"{metrics_file}: objective_value {have} is not the study's best value {value} "
            f"({results}): the trial folders are not this study's"
        )
    return folder, metrics


def score_best_trial(
    sweep_dir: str | Path,
    overrides: Sequence[str] = (),
    rerun: bool = False,
    output_dir: str | Path | None = None,
) -> dict:
    """Score the best trial of the search in ``sweep_dir`` on the test split, once, at
    the thresholds chosen on val (``val_thresholds=true``): its checkpoint
    (``trial_N/checkpoints/last.ckpt``, the very network the search chose), or with
    ``rerun=True`` its config trained again from scratch. ``overrides`` are added to the
    trial's own (e.g. where the test images are). Writes into ``output_dir`` (default
    ``SWEEP_DIR/test_best``), which must not hold a test already. Returns the metrics
    written to metrics.json: the test numbers, the ``val_*`` ones beside them, and which
    trial was tested (``selected_*``)."""
    sweep = Path(sweep_dir).expanduser()
    folder, trial = best_trial(sweep, check=not _asks_unsafe(overrides))
    cfg = _compose(
        [
            *_trial_overrides(folder),
            *overrides,
            "search=false",
            "val_thresholds=true",
            f"train={'true' if rerun else 'false'}",
            "resume=false",
            f"paths.output_dir={Path(output_dir).expanduser() if output_dir else sweep / TEST_DIR}",
        ]
    )
    out = Path(cfg.paths.output_dir)
    if (out / "metrics.json").is_file():
        raise WSOLError(
            f"{out}/metrics.json exists: the best trial of {sweep} was tested already "
            "(the test split is scored once); delete that folder to test it again"
        )
    state = None
    if not rerun:
        ckpt = folder / "checkpoints" / "last.ckpt"
        if not ckpt.is_file():
            raise WSOLError(
                f"{ckpt}: the best trial's checkpoint is missing; test its config trained "
                "again with --rerun"
            )
        from wsol.evaluation.checkpoint import read_checkpoint

        _, state = read_checkpoint(ckpt)
    from wsol.pipeline import train_and_evaluate  # Lightning: only now
    from wsol.report.metrics import write_metrics

    metrics = train_and_evaluate(cfg, net_state=state)
    metrics.update(
        selected_trial=folder.name,
        selected_by=trial.get("objective"),
        selected_val_value=trial.get("objective_value"),
        tested="checkpoint" if not rerun else "rerun",
    )
    write_metrics(out / "metrics.json", metrics)  # the record of which trial, beside the numbers
    return metrics


def _asks_unsafe(overrides: Sequence[str]) -> bool:
    """Whether ``overrides`` set ``unsafe_select_on_test`` true (Hydra's own parse)."""
    from wsol.cli import parse_overrides

    return any(
        o.key_or_group == UNSAFE and not o.is_delete() and o.value() is True
        for o in parse_overrides(list(overrides))
    )


def _trial_overrides(folder: Path) -> list[str]:
    """The command-line overrides the trial ran with (Hydra's ``.hydra/overrides.yaml``:
    the search's own and the sampled values), without the sweeper's trial number."""
    f = folder / ".hydra" / "overrides.yaml"
    if not f.is_file():
        raise WSOLError(f"{f}: missing, so the best trial's settings are unknown")
    items = OmegaConf.to_container(OmegaConf.load(f))
    if not isinstance(items, list):
        raise WSOLError(f"{f}: not a list of overrides")
    return [str(o) for o in items if not str(o).startswith("search_trial=")]


def _compose(overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir

    import wsol  # noqa: F401  (the config resolvers)
    from wsol.cli import CONF_DIR

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name="select"):
        return compose(config_name="config", overrides=overrides)


# ---- python -m wsol.selection ------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m wsol.selection SWEEP_DIR [--rerun] [KEY=VALUE ...]``: `score_best_trial`."""
    parser = argparse.ArgumentParser(
        prog="python -m wsol.selection",
        description="Score the best trial of a search (python -m wsol.run -m hparams_search=NAME) "
        "on the test split, once, at the thresholds chosen on val.",
    )
    parser.add_argument("sweep_dir", help="the search's folder (hydra.sweep.dir)")
    parser.add_argument(
        "--rerun",
        action="store_true",
        help="train the best config again instead of scoring its checkpoint",
    )
    parser.add_argument("--output-dir", default=None, help="default: SWEEP_DIR/test_best")
    parser.add_argument("overrides", nargs="*", help="config overrides added to the trial's")
    args = parser.parse_args(argv)
    from wsol.cli import guard

    guard(
        score_best_trial,
        args.sweep_dir,
        args.overrides,
        rerun=args.rerun,
        output_dir=args.output_dir,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
