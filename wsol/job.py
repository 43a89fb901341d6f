"""What `wsol.run` and `wsol.evaluate` share before and after the work itself: the
output folder, the protocols and the precision a config selects, the run's identity and
arithmetic in metrics.json. Imports nothing heavy (no Lightning, no torch at import), so
`python -m wsol.evaluate --help`, config errors and scoring score maps start fast."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from wsol.errors import WSOLError
from wsol.io import check_writable

log = logging.getLogger(__name__)

__all__ = [
    "finish",
    "precision_record",
    "rank",
    "resolve_output_dir",
    "resolve_precision",
    "run_identity",
    "selected_protocols",
]


def rank() -> int:
    """This process's global rank: Lightning's when Lightning is loaded (it sets it under
    DDP), else 0."""
    import sys

    if "pytorch_lightning" not in sys.modules:
        return 0
    from pytorch_lightning.utilities import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)


def resolve_output_dir(cfg: DictConfig) -> Path:
    """``paths.output_dir`` if set, else Hydra's run directory; checked writable."""
    out = cfg.paths.get("output_dir")
    if out is None:
        try:
            from hydra.core.hydra_config import HydraConfig

            out = HydraConfig.get().runtime.output_dir
        except ValueError:
            raise WSOLError(
                "paths.output_dir is not set and there is no Hydra run directory; set paths.output_dir=DIR"
            ) from None
    out = check_writable(out)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    return out


def selected_protocols(cfg: DictConfig) -> dict:
    """Instantiate every protocol node (a mapping with ``_target_``) under ``cfg.protocol``."""
    protocols = {}
    for name, node in (cfg.get("protocol") or {}).items():
        if isinstance(node, DictConfig) and "_target_" in node:
            protocols[name] = instantiate(node)
    return protocols


def resolve_precision(cfg: DictConfig, *, log_line: bool = True):
    """Settle ``trainer.precision`` and ``channels_last`` (``auto`` picks them from the
    hardware: `wsol.hardware.choose_precision`) in ``cfg``; logs the choice in one line
    and warns once when bf16 is asked of a CPU that emulates it. Returns the choice."""
    from wsol.hardware import choose_precision

    choice = choose_precision(
        cfg.trainer.get("precision", "auto"),
        cfg.trainer.get("accelerator", "cpu"),
        cfg.get("channels_last", "auto"),
    )
    with open_dict(cfg):
        cfg.trainer.precision = choice.precision
        cfg.channels_last = choice.channels_last
    if log_line and rank() == 0:
        log.info(choice.line())
        if choice.warning:
            log.warning(choice.warning)
    return choice


def precision_record(cfg: DictConfig, training: bool = True) -> dict:
    """What metrics.json records of the arithmetic: the training precision (evaluation is
    always fp32), the memory format and the CPU's kind."""
    from wsol.hardware import cpu_info

    info = cpu_info()
    return {
        "precision": str(cfg.trainer.get("precision")) if training else "none (train=false)",
        "channels_last": bool(cfg.get("channels_last", False)),
        "cpu_isa": info.isa,
        "cpu_bf16": info.bf16_native,
    }


def run_identity(cfg: DictConfig, localizer_name: str) -> dict:
    return {
        "model": cfg.model.name,
        "pool": cfg.pool.name,
        "data": cfg.data.get("name", "data"),
        "localizer": localizer_name,
        "seed": int(cfg.seed),
    }


def finish(cfg: DictConfig, out: Path, metrics: dict, started: float, title: str) -> dict:
    """The last step of `wsol.run` and `wsol.evaluate` (process 0): the machine and the
    total time recorded, ``out/metrics.json`` written (atomically, after every other
    output, so a failed run leaves the previous one intact), the table printed."""
    import time

    from wsol.report.metrics import format_table, write_metrics
    from wsol.report.tables import machine_summary

    metrics["total_seconds"] = round(time.time() - started, 1)
    metrics["machine"] = machine_summary(cfg.trainer.get("accelerator"))
    write_metrics(out / "metrics.json", metrics)
    print(format_table(metrics, title=title))
    return metrics
