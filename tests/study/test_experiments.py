"""The Hydra experiment configs (conf/experiment/): each composes with wsol's config, the
study files name existing ones, ``wsol.run experiment=NAME`` works and an unknown name is
one line listing the real ones; and a study's drift check treats a run made with the
experiment's settings one by one (before studies named experiments) like one made with
``experiment=NAME``."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from tests.helpers import REPO, run_cli
from wsol.cli import CONF_DIR, check_overrides
from wsol.errors import WSOLError
from wsol.study import Run, drift, experiment_names, load_experiment, load_study, refresh

NAMES = experiment_names()
ENV = ("WSOL_CUB", "WSOL_ILSVRC", "WSOL_WSOLEVAL_DATASET", "WSOL_WSOLEVAL_METADATA")


@pytest.fixture
def compose(monkeypatch):
    from hydra import compose, initialize_config_dir

    import wsol  # noqa: F401  (resolvers)

    for var in ENV:
        monkeypatch.setenv(var, f"/data/{var.lower()}")
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name="t"):
        yield lambda overrides: compose(config_name="config", overrides=overrides)


def _plain(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


def test_the_experiments_are_the_studies_shared_settings():
    assert {"gap_vs_gmp", "cam2016_cub", "cam2016_table1", "wsolevaluation_cam"} <= set(NAMES)
    for f in sorted((CONF_DIR / "experiment").glob("*.yaml")):
        assert f.read_text().startswith("# @package _global_\n"), f.name


@pytest.mark.parametrize("name", NAMES)
def test_each_experiment_composes_and_equals_its_settings(compose, name):
    """``experiment=NAME`` composes (interpolations such as ${oc.env:WSOL_CUB} resolve),
    and the settings the study reads from the file compose to the same config."""
    exp = load_experiment(name, "test")
    cfg = compose([f"experiment={name}", "model=tiny_gap"])
    assert exp.settings, name
    by_keys = compose([*exp.settings.values(), "model=tiny_gap"])
    assert _plain(cfg) == _plain(by_keys)
    for key, override in exp.settings.items():
        if key not in exp.groups:
            assert OmegaConf.select(cfg, key) is not None or override.endswith("=null"), key
    # a sweep's own override wins over the experiment's, as on any command line
    later = compose([f"experiment={name}", "trainer.max_epochs=7", "optim=adamw"])
    assert later.trainer.max_epochs == 7 and "AdamW" in later.optim.optimizer._target_


def test_the_synthetic_experiment_is_the_cpu_scale():
    exp = load_experiment("gap_vs_gmp", "test")
    assert list(exp.settings.values()) == [
        "data=synthetic",
        "protocol=[cam2016,cam2016_official,wsolevaluation]",
        "data.dataset.image_size=96",
        "data.dataset.train_image_size=null",
        "data.dataset.train_size=1500",
        "data.dataset.val_size=250",
        "data.dataset.test_size=500",
        "trainer.max_epochs=4",
    ]
    assert exp.groups == {"data", "protocol"}


def test_every_study_file_names_an_existing_experiment():
    named, folders = {}, {}
    for f in sorted((REPO / "experiments").glob("*.yaml")):
        study = load_study(f)
        assert study.experiment is not None, f.name
        assert study.experiment.name in NAMES
        named[f.stem] = study.experiment.name
        folders.setdefault(study.runs_dir, set()).add(study.experiment.name)
    # studies that share a runs folder share the experiment
    assert all(len(names) == 1 for names in folders.values()), folders
    assert {
        named[s]
        for s in named
        if s.endswith("_synthetic") and s != "wsolevaluation_methods_synthetic"
    } | {named["gap_vs_gmp"]} == {"gap_vs_gmp"}
    assert named["wsolevaluation_methods_synthetic"] == "methods_synthetic"
    assert named["cam2016_table2"] == named["cam2016_table1"] == "cam2016_table1"


def test_an_unknown_experiment_lists_the_real_ones(compose):
    with pytest.raises(WSOLError, match="unknown experiment 'nope'; valid: cam2016_cub"):
        check_overrides(["experiment=nope"])
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException, match="gap_vs_gmp"):
        compose(["experiment=nope"])
    with pytest.raises(WSOLError, match=r"no experiment config .*nope\.yaml; valid: .*gap_vs_gmp"):
        load_experiment("nope", "x.yaml: experiment")


def test_an_experiment_may_start_from_another(tmp_path):
    """``defaults: [- OTHER]`` gives OTHER's settings first, the file's own after them
    (as Hydra composes it: posthoc_maps is methods_synthetic with fewer test images)."""
    posthoc = load_experiment("posthoc_maps", "x.yaml: experiment")
    base = load_experiment("methods_synthetic", "x.yaml: experiment")
    assert posthoc.groups == base.groups
    assert posthoc.settings == {
        **base.settings,
        "data.dataset.test_size": "data.dataset.test_size=100",
    }
    (tmp_path / "a.yaml").write_text("# @package _global_\ndefaults:\n  - b\n")
    (tmp_path / "b.yaml").write_text("# @package _global_\ndefaults:\n  - a\n")
    with pytest.raises(WSOLError, match="'a': experiments include each other in a cycle"):
        load_experiment("a", "x.yaml: experiment", folder=tmp_path)


def test_wsol_run_takes_an_experiment():
    r = run_cli("wsol.run", ["experiment=gap_vs_gmp", "--cfg", "job"])
    assert r.returncode == 0, r.stderr[-2000:]
    cfg = OmegaConf.create(r.stdout)
    assert cfg.data.dataset.image_size == 96 and cfg.trainer.max_epochs == 4
    assert cfg.data.dataset.train_image_size is None and "cam2016_official" in cfg.protocol
    r = run_cli("wsol.run", ["experiment=nope"])
    assert r.returncode == 2
    (line,) = r.stderr.strip().splitlines()
    assert "unknown experiment 'nope'" in line
    assert all(name in line for name in NAMES)


def _finished(tmp_path, recorded: list[str], config: str):
    folder = tmp_path / "runs" / "googlenet_gap-avg-cam-s0"
    (folder / ".hydra").mkdir(parents=True, exist_ok=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in recorded))
    (folder / "metrics.json").write_text("{}")
    (folder / "config.yaml").write_text(config)
    return folder


CONFIG = """seed: 0
data:
  dataset: {image_size: 96, train_size: 1500, val_size: 250, test_size: 500}
trainer: {max_epochs: 4}
paths: {output_dir: /elsewhere/runs/googlenet_gap-avg-cam-s0}
"""


def _run(folder, experiment: dict[str, str], *own: str) -> Run:
    r = Run(
        name=folder.name,
        sweep="cam",
        overrides=["experiment=gap_vs_gmp", "localizer=cam", *own],
        identity={},
        select={},
        folder=folder,
        experiment=experiment,
    )
    refresh([r])
    return r


def test_drift_compares_resolved_settings_old_and_new_records(tmp_path):
    settings = load_experiment("gap_vs_gmp", "test").settings
    old = [o for o in settings.values() if "train_image_size" not in o]
    # made before the experiment (settings one by one; the key train_image_size did not
    # exist yet: its null is the former behaviour) and with ++skip_done
    folder = _finished(tmp_path, [*old, "localizer=cam", "seed=0", "++skip_done=True"], CONFIG)
    assert drift(_run(folder, settings, "seed=0")) == ([], [])
    # made with experiment=gap_vs_gmp: the groups are the experiment's, values resolved
    folder = _finished(tmp_path, ["experiment=gap_vs_gmp", "localizer=cam", "seed=0"], CONFIG)
    assert drift(_run(folder, settings, "seed=0")) == ([], [])
    # the experiment now says 128 px: both kinds of record are drift, naming the setting
    changed = {**settings, "data.dataset.image_size": "data.dataset.image_size=128"}
    assert drift(_run(folder, changed, "seed=0"))[0] == ["data.dataset.image_size=128"]
    folder = _finished(tmp_path, [*old, "localizer=cam", "seed=0"], CONFIG)
    assert drift(_run(folder, changed, "seed=0"))[0] == ["data.dataset.image_size=128"]
    # a group the run recorded otherwise, and another experiment, are drift too
    folder = _finished(tmp_path, ["experiment=other", "localizer=gradcam", "seed=0"], CONFIG)
    lacks, more = drift(_run(folder, settings, "seed=0"))
    assert "localizer=cam" in lacks and "data=synthetic" in lacks
    assert "experiment=other" in more and "localizer=gradcam" in more


def test_drift_follows_a_moved_runs_folder(tmp_path):
    """A clone elsewhere: a path into the runs folder ({runs}) compares relative to it."""
    runs = tmp_path / "runs"
    weights = "model.weights={}/googlenet_gap-avg-cam-s0/checkpoints/last.ckpt"
    folder = _finished(
        tmp_path,
        ["localizer=cam", weights.format("/elsewhere/runs")],
        CONFIG
        + "model: {weights: /elsewhere/runs/googlenet_gap-avg-cam-s0/checkpoints/last.ckpt}\n",
    )
    assert drift(_run(folder, {}, weights.format(runs))) == ([], [])
    assert drift(_run(folder, {}, weights.format(runs / "other")))[0] != []


def test_a_group_choice_shows_in_the_resolved_config_when_hydra_yaml_is_gone(tmp_path):
    """git keeps overrides.yaml and config.yaml, not hydra.yaml: a group the study now
    names (pool=avg) that the run got by default is read from its option's own name."""
    folder = _finished(tmp_path, ["localizer=cam"], CONFIG + "pool: {name: avg}\n")
    assert drift(_run(folder, {}, "pool=avg")) == ([], [])
    assert drift(_run(folder, {}, "pool=max"))[0] == ["pool=max"]
