"""``python -m wsol.evaluate``: score localization without training (a checkpoint on a
data set, score maps from any program, an export of our maps, or a baseline without a
network; the modes are described in docs/EVALUATE.md).

Thin by design, and light: only Hydra is imported before the config is composed, so
``--help`` and config errors answer at once; the mode then imports what it needs
(scoring score maps from disk never loads Lightning). A `WSOLError` (bad input a user can
fix) ends the run with one line on stderr and exit code 2.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import wsol  # noqa: F401  (registers the config resolvers)
from wsol.cli import CONF_DIR, guard, precheck_overrides
from wsol.selection import check_selection, check_sweeper


def evaluate(cfg: DictConfig, overrides: list[str] | None = None) -> dict:
    """`wsol.evaluation.modes.evaluate`: run the mode ``cfg`` selects, write its outputs
    and return the metrics (tests call this without the CLI)."""
    from wsol.evaluation.modes import evaluate as run_mode

    return run_mode(cfg, overrides)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="evaluate")
def main(cfg: DictConfig) -> float | None:
    # every mode scores the test split: a sweeper optimising the value returned below would
    # choose a checkpoint or a setting on test (refused unless unsafe_select_on_test=true)
    guard(check_sweeper, cfg, "wsol.evaluate")
    guard(check_selection, cfg)  # val_thresholds=true: val must not be the test split
    metrics = guard(evaluate, cfg) or {}
    # the value Hydra sweepers optimise: MaxBoxAccV2 where scored, else GT-known localization
    return metrics.get("maxboxacc_v2", metrics.get("gt_known_loc"))


def cli() -> None:
    """The console script (``wsol-evaluate``): the same as ``python -m wsol.evaluate``."""
    precheck_overrides()
    main()


if __name__ == "__main__":
    cli()
