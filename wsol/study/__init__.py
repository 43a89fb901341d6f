"""``python -m wsol.study experiments/NAME.yaml``: run a study's missing runs, then write
its tables and figures.

A *study* is one YAML file in ``experiments/``: the runs it needs (sweeps of Hydra
overrides of ``wsol.run`` on top of a Hydra experiment config, ``conf/experiment/``),
how its table is laid out (rows as in the paper) and the published numbers it is
compared with, with their source. The driver expands the runs, launches one Hydra
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

The modules, in the order a study goes through them:

- `spec`: the study file's schema (dataclasses: `spec.StudyFile` lists every key, what
  it holds and whether it is required; `schema` derives the checks from them) and
  `load_study`;
- `experiment`: the shared settings, ``experiment: NAME`` naming
  ``conf/experiment/NAME.yaml`` (``# @package _global_``, a ``defaults:`` list of
  ``override /GROUP: CHOICE`` and config keys); ``python -m wsol.run experiment=NAME``
  applies the same file, and every job of the study starts with ``experiment=NAME``.
  Studies that share runs (one ``runs_dir``) name the same experiment;
- `plan`: the runs (`expand_runs`: each named by composing its config, ``run_name``
  evaluated on it, which becomes ``hydra.sweep.subdir``), what their folders hold
  (`refresh`), and `drift`: whether a finished run was made with the settings the study
  now gives, compared resolved (the run's record or its config.yaml), so runs made before
  the study named an experiment stay current while the values agree;
- `launching`: the multiruns (every job gets ``++skip_done=true``: a finished run returns
  at once; a sweep with no unfinished run is not launched);
- `tables`, `figures` (with `boxes`, the statistics): the outputs;
- `cli`: the command line.

Override values in sweeps may contain ``{runs}``, the absolute runs folder (e.g.
``model.weights={runs}/googlenet_gap-avg-cam-s${seed}/checkpoints/last.ckpt`` evaluates
another run's checkpoint). A row's ``where`` matches a run when every key equals the
run's value (a list: any of them): ``model``, ``pool``, ``localizer``, ``data``,
``seed``, ``sweep`` or any config key (``model.pretrained``); a row pools its matching
runs (usually the seeds). A run is *finished* when its folder holds ``metrics.json``; one
that died half way runs again from the start.

Command line::

    python -m wsol.study experiments/NAME.yaml [--dry-run | --tables-only] [--no-figures]
        [--launcher submitit_slurm] [--only KEY=V1,V2] [--results-dir DIR] [OVERRIDE ...]

``OVERRIDE``s are added to every multirun (``trainer=gpu``, ``hydra.launcher.partition=X``,
data roots); they must not change what names a run. ``--launcher L`` adds
``hydra/launcher=L``. ``make study STUDY=NAME ARGS="..."`` is the same.
"""

from wsol.study.cli import main, study_path
from wsol.study.experiment import Experiment, experiment_names, load_experiment
from wsol.study.launching import SKIP_DONE, check_env, launch, parse_only, sweep_command
from wsol.study.overrides import render_value
from wsol.study.plan import Run, drift, expand_runs, matches, refresh, resolve_paths
from wsol.study.spec import Column, Study, StudyFile, Sweep, load_study
from wsol.study.tables import long_csv, markdown, remake_command, write_outputs

__all__ = [
    "SKIP_DONE",
    "Column",
    "Experiment",
    "Run",
    "Study",
    "StudyFile",
    "Sweep",
    "check_env",
    "drift",
    "expand_runs",
    "experiment_names",
    "launch",
    "load_experiment",
    "load_study",
    "long_csv",
    "main",
    "markdown",
    "matches",
    "parse_only",
    "refresh",
    "remake_command",
    "render_value",
    "resolve_paths",
    "study_path",
    "sweep_command",
    "write_outputs",
]
