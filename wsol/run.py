"""``python -m wsol.run``: train a network on image labels, then score its localization.

Thin by design: `main` composes the config (Hydra) and calls
`wsol.pipeline.train_and_evaluate`, which tests call without the CLI. A `WSOLError`
(bad input a user can fix) ends the run with one line on stderr and exit code 2.

What `main` returns is what a Hydra sweeper optimises: the val objective of a search
trial (``search=true``; ``hparams_search=NAME`` sets it, docs/SELECTION.md), else
nothing (the test objective only with ``unsafe_select_on_test=true``). A sweeper that
optimises return values is refused for runs that score the test split
(`wsol.selection.check_sweeper`).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import wsol  # noqa: F401  (registers the config resolvers)
from wsol.cli import CONF_DIR, guard, precheck_overrides
from wsol.selection import check_sweeper  # also registers the search's resolvers


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    guard(check_sweeper, cfg)  # before Lightning loads: a refusal answers at once
    from wsol.pipeline import train_and_evaluate  # Lightning: not for --help or config errors

    metrics = guard(train_and_evaluate, cfg)
    # what a sweeper optimises: a search trial's val objective (see the module docstring)
    return (metrics or {}).get("objective_value")


def cli() -> None:
    """The console script (``wsol-run``): the same as ``python -m wsol.run``."""
    precheck_overrides()
    main()


if __name__ == "__main__":
    cli()
