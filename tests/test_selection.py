"""wsolevaluation's model-selection protocol (docs/SELECTION.md): a search through the
real CLI whose trials score the val split only (its test split cannot even be built),
its SQLite study resumed without redoing finished trials, the one test of the best
trial, the guard rails, the objective chosen by data set, and the six search spaces.

The fast tests run `wsol.run.main` in this process on the command line of ``python -m
wsol.run -m hparams_search=cam`` (Hydra's own parse, the Optuna sweeper, its SQLite
study): a fresh interpreter costs 10-20 s of imports here. The slow test runs the same
search and the test of its best trial through the real CLI, in subprocesses."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides
from omegaconf import OmegaConf
from optuna.distributions import (
    IntUniformDistribution,
    LogUniformDistribution,
    UniformDistribution,
)
from optuna.trial import TrialState

from tests.data.tiny_datasets import write_openimages, write_wsol_boxes
from tests.helpers import CONF, TINY, compose_config, run_cli, run_wsol_here
from wsol.data.synthetic import SyntheticWSOL
from wsol.data.wsol_metadata import WSOLMetadataDataset
from wsol.errors import WSOLError
from wsol.selection import (
    BASIC_SWEEPER,
    add_objective,
    best_trial,
    check_selection,
    check_sweeper,
    objective_key,
    random_sampler,
    score_best_trial,
    tpe_sampler,
)

OPTUNA = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
#: the tiny run, with a test split that cannot be built: a trial that reads it fails
SEARCH = [a for a in TINY if not a.startswith("data.dataset.test_size=")] + [
    "data.dataset.test_size=0",
    "hparams_search=cam",
]
#: what a trial writes only when it scores the test split
TEST_OUTPUTS = ("predictions.csv", "curves.csv", "cams.png")


def _study(sweep: Path) -> optuna.Study:
    return optuna.load_study(study_name="cam", storage=f"sqlite:///{sweep / 'optuna.db'}")


def _metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


@pytest.fixture(scope="module")
def search(tmp_path_factory) -> Path:
    """A finished 2-trial CAM search on the tiny synthetic data: `wsol.run.main` on the
    command line of ``python -m wsol.run -m hparams_search=cam`` (test_the_cli_search
    runs it in a subprocess)."""
    sweep = tmp_path_factory.mktemp("search") / "cam"
    run_wsol_here(["-m", *SEARCH, "search_trials=2", f"hydra.sweep.dir={sweep}"])
    return sweep


# ---- the search ------------------------------------------------------------------------
def test_the_trials_score_the_val_split_only(search):
    # the proof is not vacuous: building this test split is an error
    with pytest.raises(WSOLError, match="test split is empty"):
        SyntheticWSOL(split="test", test_size=0)
    assert (search / "optuna.db").is_file()
    trials = _study(search).get_trials(states=(TrialState.COMPLETE,))
    assert [t.number for t in trials] == [0, 1]
    for t in trials:
        folder = search / f"trial_{t.number}"
        m = _metrics(folder)
        assert m["search"] is True and m["split"] == "val" and m["objective"] == "maxboxacc_v2"
        assert m["objective_value"] == t.value == m["val_maxboxacc_v2"]
        assert {"val_pxap", "val_gt_known_loc"} <= m.keys()
        # no test number anywhere: every score is a val one
        assert not {"maxboxacc_v2", "pxap", "gt_known_loc", "cls_top1_err"} & m.keys()
        assert not any((folder / f).exists() for f in TEST_OUTPUTS)
        assert (folder / "checkpoints" / "last.ckpt").is_file()
        assert t.params["search_trial"] == t.number
        assert 1e-5 <= t.params["optim.optimizer.lr"] <= 1.0
    best = (search / "optimization_results.yaml").read_text()
    assert f"best_value: {max(t.value for t in trials)}" in best


def test_a_rerun_resumes_the_study_and_the_best_trial_is_tested_once(search):
    before = {n: (search / f"trial_{n}" / "metrics.json").stat().st_mtime_ns for n in (0, 1)}
    run_wsol_here(["-m", *SEARCH, "search_trials=3", f"hydra.sweep.dir={search}"])
    trials = _study(search).get_trials(states=(TrialState.COMPLETE,))
    assert [t.number for t in trials] == [0, 1, 2]  # one more trial, not three
    after = {n: (search / f"trial_{n}" / "metrics.json").stat().st_mtime_ns for n in (0, 1)}
    assert after == before  # the finished trials were neither rerun nor written over
    lrs = [t.params["optim.optimizer.lr"] for t in trials]
    assert len(set(lrs)) == 3  # the resumed trial drew new values
    assert sorted(p.name for p in search.glob("trial_*")) == ["trial_0", "trial_1", "trial_2"]

    folder, trial = best_trial(search)
    got = score_best_trial(search, ["data.dataset.test_size=24"])
    out = search / "test_best"
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(got))
    assert got["selected_trial"] == folder.name and got["tested"] == "checkpoint"
    # the network the search chose: its val pass gives the trial's number exactly
    assert got["val_maxboxacc_v2"] == trial["objective_value"] == got["selected_val_value"]
    # test numbers, the operating point chosen on val among them
    assert {"maxboxacc_v2", "maxboxacc_v2_at_val", "pxap", "gt_known_loc"} <= got.keys()
    assert all((out / f).is_file() for f in TEST_OUTPUTS)
    with pytest.raises(WSOLError, match="tested already"):
        score_best_trial(search, ["data.dataset.test_size=24"])


@pytest.mark.parametrize("make", [random_sampler, tpe_sampler])
def test_a_resumed_search_draws_what_an_uninterrupted_one_would(make):
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(t):
        return t.suggest_float("lr", 1e-5, 1.0, log=True) + t.suggest_int("grid", 1, 224)

    whole = optuna.create_study(sampler=make(0))
    whole.optimize(objective, n_trials=4)
    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(storage=storage, study_name="s", sampler=make(0)).optimize(
        objective, n_trials=2
    )
    resumed = optuna.load_study(study_name="s", storage=storage, sampler=make(0))
    resumed.optimize(objective, n_trials=2)  # a new process's sampler, as after a restart
    assert [t.params for t in resumed.trials] == [t.params for t in whole.trials]
    assert len({t.params["lr"] for t in whole.trials}) == 4
    other = optuna.create_study(sampler=make(1))
    other.optimize(objective, n_trials=1)
    assert other.trials[0].params != whole.trials[0].params  # the seed matters


# ---- the guard rails -------------------------------------------------------------------
def test_a_sweeper_that_optimises_test_numbers_is_refused(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        run_wsol_here(["-m", "hydra/sweeper=optuna", *TINY, f"hydra.sweep.dir={tmp_path}"])
    assert e.value.code == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "selects on the test split" in err[0] and "hparams_search" in err[0]

    cfg = compose_config([*TINY])
    check_sweeper(cfg, sweeper=BASIC_SWEEPER)  # a plain multirun returns nothing to optimise
    check_sweeper(compose_config([*TINY, "search=true"]), sweeper=OPTUNA)
    check_sweeper(compose_config([*TINY, "unsafe_select_on_test=true"]), sweeper=OPTUNA)
    with pytest.raises(WSOLError, match=r"what wsol\.evaluate returns"):
        check_sweeper(compose_config(["search=true"]), "wsol.evaluate", sweeper=OPTUNA)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["search=true", "data.val_split=test"], "would choose trials on the test split"),
        (["val_thresholds=true", "data.val_split=test"], "would choose thresholds on the test"),
        (["search=true", "data.val_split=null"], "has none"),
        (["search=true", "protocol=cam2016"], "wsolevaluation protocol, which is not selected"),
    ],
)
def test_choosing_on_the_test_split_is_refused(overrides, match):
    cfg = compose_config(overrides)
    with pytest.raises(WSOLError, match=match) as e:
        check_selection(cfg)
    assert "\n" not in str(e.value)


def test_what_the_guard_rails_let_through():
    check_selection(
        compose_config(["search=true", "data.val_split=test", "unsafe_select_on_test=true"])
    )
    check_selection(compose_config(["search=true", "protocol=cam2016", "objective=gt_known_loc"]))
    check_selection(compose_config(["val_thresholds=true"]))


def test_a_best_trial_that_saw_test_numbers_is_not_tested(tmp_path):
    with pytest.raises(WSOLError, match="not a finished search"):
        best_trial(tmp_path)
    (tmp_path / "optimization_results.yaml").write_text(
        "name: optuna\nbest_params:\n  optim.optimizer.lr: 0.1\n  search_trial: 0\nbest_value: 40.0\n"
    )
    (tmp_path / "trial_0").mkdir()
    (tmp_path / "trial_0" / "metrics.json").write_text(json.dumps({"maxboxacc_v2": 40.0}))
    with pytest.raises(WSOLError, match="did not score the val split only"):
        score_best_trial(tmp_path)
    (tmp_path / "trial_0" / "metrics.json").write_text(
        json.dumps({"search": True, "split": "val", "objective_value": 39.0})
    )
    with pytest.raises(WSOLError, match="not the study's best value"):
        best_trial(tmp_path)


def test_the_objective_must_be_a_val_metric(tmp_path):
    ds = SyntheticWSOL(split="val", val_size=1, image_size=32)
    cfg = compose_config(["objective=maxboxacc_v3"])
    with pytest.raises(WSOLError, match="objective=maxboxacc_v3: the val metrics have no") as e:
        add_objective(cfg, {"val_maxboxacc_v2": 50.0, "val_pxap": 40.0, "maxboxacc_v3": 1.0}, ds)
    assert "maxboxacc_v2, pxap" in str(e.value) and "\n" not in str(e.value)
    metrics = {"val_gt_known_loc": 31.0}
    assert add_objective(compose_config(["objective=gt_known_loc"]), metrics, ds) == 31.0
    assert metrics["objective"] == "gt_known_loc" and metrics["objective_value"] == 31.0


# ---- the objective by data set -----------------------------------------------------------
def test_the_objective_follows_the_data_sets_annotation(tmp_path):
    auto = compose_config([])
    images, meta = write_wsol_boxes(tmp_path / "cub")
    cub = WSOLMetadataDataset("val", root=str(images), metadata_root=str(meta), num_classes=3)
    root, meta, _ = write_openimages(tmp_path / "oi")
    oi = WSOLMetadataDataset(
        "val", root=str(root), metadata_root=str(meta), dataset_name="OpenImages", num_classes=3
    )
    synthetic = SyntheticWSOL(split="val", val_size=1, image_size=32)
    assert [objective_key(auto, d) for d in (cub, oi, synthetic)] == [
        "maxboxacc_v2",
        "pxap",
        "maxboxacc_v2",
    ]
    chosen = compose_config(["objective=gt_known_loc"])
    assert {objective_key(chosen, d) for d in (cub, oi, synthetic)} == {"gt_known_loc"}


# ---- the search spaces -------------------------------------------------------------------
SPACES = {
    "cam": ("wsol.methods.Method", set()),
    "has": ("wsol.methods.has.HideAndSeek", {"method.drop_rate", "method.grid_size"}),
    "acol": ("wsol.methods.acol.ACoL", {"method.threshold"}),
    "spg": (
        "wsol.methods.spg.SPG",
        {f"method.threshold_{i}h" for i in (1, 2, 3)}
        | {f"spg_low_fraction.{b}" for b in ("b1", "b2", "c")},
    ),
    "adl": ("wsol.methods.adl.ADL", {"method.drop_rate", "method.threshold"}),
    "cutmix": ("wsol.methods.cutmix.CutMix", {"method.prob", "method.beta"}),
}


def _ends(dist) -> list:
    return [dist.low, dist.high]


def test_every_search_space_composes_and_its_methods_take_both_ends():
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF), job_name="spaces"):
        for name, (target, own) in SPACES.items():
            cfg = compose("config", [f"hparams_search={name}"], return_hydra_config=True)
            sweeper = cfg.hydra.sweeper
            assert cfg.method._target_ == target and cfg.search is True, name
            assert sweeper.direction == "maximize" and sweeper.sampler.seed == 0
            assert sweeper.sampler._target_ == "wsol.selection.random_sampler"
            assert sweeper.custom_search_space == "wsol.selection.number_trial"
            space, fixed = create_params_from_overrides(
                [f"{k}={v}" for k, v in sweeper.params.items()]
            )
            assert not fixed and set(space) == {"optim.optimizer.lr", *own}, name
            lr = space.pop("optim.optimizer.lr")
            assert isinstance(lr, LogUniformDistribution) and _ends(lr) == [1e-5, 1.0]
            kinds = (UniformDistribution, IntUniformDistribution, LogUniformDistribution)
            for key, dist in space.items():
                assert isinstance(dist, kinds), key
                for end in _ends(dist):  # the method accepts the range's ends
                    OmegaConf.update(cfg, key, end)
                    method = instantiate(cfg.method)
                    assert not any(
                        isinstance(v, float) and math.isnan(v) for v in vars(method).values()
                    )
            if name == "spg":  # each low threshold is its high one times the sampled fraction
                OmegaConf.update(cfg, "method.threshold_2h", 0.6)
                OmegaConf.update(cfg, "spg_low_fraction.b2", 0.5)
                assert instantiate(cfg.method).thresholds[1] == (0.6, 0.3)


# ---- the real CLI ------------------------------------------------------------------------
@pytest.mark.slow
def test_the_cli_search_and_the_cli_test_of_its_best_trial(tmp_path):
    sweep = tmp_path / "cam"
    r = run_cli("wsol.run", ["-m", *SEARCH, "search_trials=2", f"hydra.sweep.dir={sweep}"])
    assert r.returncode == 0, r.stderr[-3000:]
    trials = _study(sweep).get_trials(states=(TrialState.COMPLETE,))
    assert [t.number for t in trials] == [0, 1]
    assert all(_metrics(sweep / f"trial_{n}")["split"] == "val" for n in (0, 1))
    r = run_cli("wsol.selection", [str(sweep), "data.dataset.test_size=24"])
    assert r.returncode == 0, r.stderr[-3000:]
    got = _metrics(sweep / "test_best")
    best = max(trials, key=lambda t: t.value)
    assert got["val_maxboxacc_v2"] == best.value and "maxboxacc_v2_at_val" in got
    r = run_cli("wsol.selection", [str(sweep), "data.dataset.test_size=24"])
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "tested already" in r.stderr
