"""Shared pieces of the benchmark figures: the real config, quiet Lightning, timing
statistics, memory readings and the result rows every figure returns.

A figure is a function ``run(**params) -> dict`` returning::

    {"figure": name, "title": str,
     "rows": [row(...), ...],          # one line each in the summary table
     "notes": [str, ...],              # what was measured, settings, caveats
     "details": str}                   # markdown: per-repeat samples, breakdowns

Every number in a row is measured by the figure; nothing is hard-coded.
"""

from __future__ import annotations

import logging
import os
import resource
import statistics
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: the repository's Hydra config folder (the package is installed in editable mode)
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def row(
    measure: str,
    suite: float | None,
    baseline: float | None = None,
    ratio: float | None = None,
    unit: str = "",
    target: str | None = None,
    met: bool | None = None,
) -> dict[str, Any]:
    """One line of the summary table. ``target`` names the column it applies to
    (e.g. ``"suite <= 5 ms"``, ``"ratio >= 0.95"``); ``met`` is None without a target."""
    return {
        "measure": measure,
        "suite": None if suite is None else float(suite),
        "baseline": None if baseline is None else float(baseline),
        "ratio": None if ratio is None else float(ratio),
        "unit": unit,
        "target": target,
        "met": None if met is None else bool(met),
    }


def compose(overrides: Sequence[str] = ()):
    """The job's config as ``python -m wsol.run`` composes it (same defaults), plus
    ``overrides``; ``paths.output_dir`` must be among them (there is no Hydra run dir)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import wsol  # noqa: F401  (resolvers)

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name="bench"):
        return hydra_compose(config_name="config", overrides=list(overrides))


def quiet_lightning() -> None:
    """No Lightning banners ("GPU available", "Trainer.fit stopped") and no warnings
    about worker counts: the figures print their own lines. Imports Lightning first
    (its import sets its logger's level)."""
    import pytorch_lightning  # noqa: F401

    for name in ("pytorch_lightning", "lightning_fabric", "lightning", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger("wsol").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*log_every_n_steps.*")
    warnings.filterwarnings("ignore", message=".*number of training batches.*")
    warnings.filterwarnings("ignore", message=".*`max_epochs` was not set.*")
    warnings.filterwarnings("ignore", message=".*deterministic.*")
    warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    try:
        from lightning_fabric.utilities.warnings import PossibleUserWarning

        warnings.filterwarnings("ignore", category=PossibleUserWarning)
    except ImportError:  # pragma: no cover
        pass


def say(msg: str) -> None:
    """Progress on stderr (stdout carries the tables)."""
    import sys

    print(msg, file=sys.stderr, flush=True)


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def spread(xs: Sequence[float]) -> str:
    """``min..max`` of samples, for the details."""
    return f"{min(xs):.3g}..{max(xs):.3g}" if xs else "-"


#: blocks of one side varying more than this (max / min) mark a figure as noisy
NOISY = 1.25


def noise_note(*blocks: list[float]) -> str:
    """`` [noisy: blocks varied 2.3x]`` when some side's block figures varied by more than
    `NOISY` (other jobs on the machine), else ``""``."""
    worst = max((max(b) / min(b) for b in blocks if b and min(b) > 0), default=1.0)
    return f" [noisy: blocks varied {worst:.1f}x]" if worst > NOISY else ""


def ab_orders(repeats: int) -> list[tuple[str, str]]:
    """A/B block order per repeat, alternating ABBA-style so a steady drift of the
    machine's speed (other jobs starting, thermal) falls on both sides equally."""
    return [("plain", "suite") if r % 2 == 0 else ("suite", "plain") for r in range(repeats)]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def now() -> float:
    return time.perf_counter()


# ---- memory ---------------------------------------------------------------------------
def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (ru_maxrss; KiB on Linux)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024.0 if os.uname().sysname == "Linux" else kib / 2**20


def current_rss_mib() -> float:
    """Resident set size now (VmRSS from /proc; the peak where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:  # pragma: no cover
        pass
    return peak_rss_mib()


# ---- torch -----------------------------------------------------------------------------
def autocast_for(precision: str | int, device: str):
    """(context factory, GradScaler or None) for a Lightning precision string, as its
    MixedPrecision plugin uses them: ``bf16-mixed`` -> bfloat16 autocast, ``16-mixed``
    -> float16 autocast with a GradScaler, ``32-true`` -> nothing."""
    import contextlib

    import torch

    p = str(precision)
    dev = "cuda" if device.startswith("cuda") else "cpu"
    if p in ("bf16-mixed", "bf16"):
        return (lambda: torch.autocast(dev, dtype=torch.bfloat16)), None
    if p in ("16-mixed", "16"):
        return (lambda: torch.autocast(dev, dtype=torch.float16)), torch.amp.GradScaler(dev)
    if p in ("32-true", "32"):
        return contextlib.nullcontext, None
    raise ValueError(f"the plain loop does not reproduce trainer.precision={p}")


def cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # pragma: no cover
        return False


def profile_table(prof, rows: int = 15) -> str:
    """The top ops of a torch.profiler run by self CPU time, as a fenced block."""
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)
    return "```\n" + table.strip() + "\n```"
