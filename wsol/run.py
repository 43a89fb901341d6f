"""``python -m wsol.run``: train a network on image labels, then score its localization.

Thin by design: `main` composes the config (Hydra) and calls
`wsol.pipeline.train_and_evaluate`, which tests call without the CLI. A `WSOLError`
(bad input a user can fix) ends the run with one line on stderr and exit code 2.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import wsol  # noqa: F401  (registers the config resolvers)
from wsol.cli import CONF_DIR, guard, precheck_overrides


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    from wsol.pipeline import train_and_evaluate  # Lightning: not for --help or config errors

    metrics = guard(train_and_evaluate, cfg)
    # the return value is what Hydra sweepers optimise: GT-known localization
    return (metrics or {}).get("gt_known_loc")


def cli() -> None:
    """The console script (``wsol-run``): the same as ``python -m wsol.run``."""
    precheck_overrides()
    main()


if __name__ == "__main__":
    cli()
