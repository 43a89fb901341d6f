"""Study tables: the long CSV (one row per run and metric) and the Markdown table in a
paper's layout (our mean ± std over seeds next to the published number and the
difference), plus a one-line description of the machine a run ran on.

Plain data in, text or frames out: `wsol.study` gathers the runs and calls these. pandas
is imported inside the functions that need it (the main job imports this module for
`machine_summary`).
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

#: the columns of results/NAME.csv, in order
LONG_COLUMNS = ["study", "run", "model", "pool", "localizer", "data", "seed", "metric", "value"]
#: keys of metrics.json that are the run's identity or bookkeeping, not metrics
IDENTITY_KEYS = {"model", "pool", "data", "localizer", "seed", "machine"}

MISSING = "—"
NOT_APPLICABLE = "n/a"
PARTIAL = "†"
ABSENT = "‡"


# ---- the machine ------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_summary(accelerator: str | None = None) -> str:
    """One line: CPU model and cores (usable/logical), the GPUs, and what the run used,
    e.g. ``AMD EPYC, 2/2 cores; no GPU; ran on cpu``."""
    logical = os.cpu_count() or 0
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = logical
    parts = [f"{_cpu_model()}, {usable}/{logical} cores"]
    gpus = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            counts: dict[str, int] = {}
            for n in names:
                counts[n] = counts.get(n, 0) + 1
            gpus = ", ".join(f"{c}x {n}" for n, c in counts.items())
    except Exception:  # no torch, no driver: say nothing about GPUs
        gpus = "GPU unknown"
    parts.append(gpus)
    if accelerator:
        parts.append(f"ran on {accelerator}")
    return "; ".join(parts)


# ---- numbers ----------------------------------------------------------------------------
def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof=1; 0 for one value) and count."""
    v = [float(x) for x in values if x is not None and not math.isnan(float(x))]
    n = len(v)
    if n == 0:
        return math.nan, math.nan, 0
    m = sum(v) / n
    s = math.sqrt(sum((x - m) ** 2 for x in v) / (n - 1)) if n > 1 else 0.0
    return m, s, n


def format_mean_std(values: Sequence[float], digits: int = 2) -> str:
    m, s, n = mean_std(values)
    if n == 0:
        return MISSING
    if n == 1:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def parse_published(value) -> tuple[str, float] | None:
    """A published cell as (text as printed, number); None for an empty cell. Numbers
    given as strings keep their printed digits ("56.40"); any other text (e.g. "not
    recovered") is shown as it is, with no number (NaN: no difference is computed)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    text = str(value).strip()
    try:
        return text, float(text)
    except ValueError:
        if isinstance(value, str):
            return text, math.nan
        raise


def _signed(x: float, digits: int = 2) -> str:
    s = f"{x:+.{digits}f}"
    return s.replace("-", "−")


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


# ---- the paper-layout table -------------------------------------------------------------
@dataclass
class TableRow:
    """One row of a study table.

    ``values``: column -> the values of the finished runs of that cell (one per seed);
    ``expected``: column -> how many runs the cell has (0: the cell does not apply);
    ``done``/``planned``: the row's finished and planned runs over all its cells;
    ``metrics``: the columns that apply to the row (None: all); ``absent``: columns that
    apply but that none of the cell's finished runs produced; ``published``: column ->
    value (a number or a numeric string)."""

    label: str
    values: dict[str, list[float]] = field(default_factory=dict)
    expected: dict[str, int] = field(default_factory=dict)
    done: int = 0
    planned: int = 0
    metrics: Sequence[str] | None = None
    absent: set[str] = field(default_factory=set)
    published: Mapping[str, object] = field(default_factory=dict)
    note: str | None = None


def study_table(
    rows: Sequence[TableRow],
    columns: Mapping[str, str],
    published_label: str = "paper",
    delta: bool = True,
    digits: int = 2,
) -> tuple[str, set[str]]:
    """The Markdown table and the set of footnote keys its cells use (``missing``,
    ``partial``, ``na``, ``unpublished``, ``absent``, ``notes``).

    Columns: the row label; for each column (key -> heading) our value (mean ± std over
    the cell's seeds) and, when any row has a published value in that column, the
    published value and (``delta``) ours minus published; last, the row's
    finished/planned runs."""
    used: set[str] = set()
    has_pub = {c: any(parse_published(r.published.get(c)) for r in rows) for c in columns}
    numeric = {
        c: any(
            not math.isnan((parse_published(r.published.get(c)) or ("", math.nan))[1]) for r in rows
        )
        for c in columns
    }
    header = ["Method"]
    for c, heading in columns.items():
        if has_pub[c]:
            header += [f"{heading}: ours", published_label]
            if delta and numeric[c]:
                header.append("Δ")
        else:
            header.append(heading)
    header.append("runs")
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |"]
    lines.append("|" + "|".join(["---"] + [":---:"] * (len(header) - 1)) + "|")
    for r in rows:
        label = r.label
        if r.note:
            label += " *"
            used.add("notes")
        cells = [label]
        for c in columns:
            applies = (r.metrics is None or c in r.metrics) and r.expected.get(c, 0) > 0
            vals = r.values.get(c) or []
            if not applies:
                ours = NOT_APPLICABLE
                used.add("na")
            elif vals:
                ours = format_mean_std(vals, digits)
                if len(vals) < r.expected.get(c, 0):
                    ours += f" {PARTIAL}"
                    used.add("partial")
            elif c in r.absent:
                ours = f"{NOT_APPLICABLE} {ABSENT}"
                used.add("absent")
            else:
                ours = MISSING
                used.add("missing")
            cells.append(ours)
            if has_pub[c]:
                pub = parse_published(r.published.get(c))
                if pub is None:
                    cells.append(MISSING if applies else NOT_APPLICABLE)
                    if applies:
                        used.add("unpublished")
                else:
                    cells.append(pub[0])
                if delta and numeric[c]:
                    mu = mean_std(vals)[0] if vals else math.nan
                    if pub is not None and not math.isnan(mu) and not math.isnan(pub[1]):
                        cells.append(_signed(mu - pub[1], digits))
                    else:
                        cells.append(MISSING if applies else NOT_APPLICABLE)
        cells.append(f"{r.done}/{r.planned}")
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines), used


def footnotes(used: Iterable[str], command: str, published_label: str = "paper") -> list[str]:
    """The explanations of the marks `study_table` used."""
    used = set(used)
    out = []
    if "missing" in used:
        out.append(f"{MISSING} in an *ours* column: no finished run yet; `{command}` runs it.")
    if "partial" in used:
        out.append(
            f"{PARTIAL}: fewer finished runs (seeds) than planned; the *runs* column says how many."
        )
    if "absent" in used:
        out.append(
            f"{ABSENT}: the finished runs did not produce this metric (e.g. a network without a "
            "CAM evaluated with `localizer=cam`, or data without masks for PxAP)."
        )
    if "na" in used:
        out.append(f"{NOT_APPLICABLE}: the column does not apply to this row.")
    if "unpublished" in used:
        out.append(
            f"{MISSING} in the *{published_label}* column: not reported by the source (or not "
            "recovered; see the notes)."
        )
    return out


# ---- the long CSV -----------------------------------------------------------------------
def long_frame(study: str, runs: Iterable[Mapping[str, object]]):
    """One row per (run, numeric metric). Each run: ``run`` (its name), ``model``,
    ``pool``, ``localizer``, ``data``, ``seed`` and ``metrics`` (the metrics.json dict)."""
    import pandas as pd

    records = []
    for r in runs:
        metrics = r.get("metrics") or {}
        for key, value in metrics.items():
            if key in IDENTITY_KEYS or isinstance(value, bool):
                continue
            if not isinstance(value, (int, float)):
                continue
            records.append(
                {
                    "study": study,
                    "run": r["run"],
                    "model": r.get("model"),
                    "pool": r.get("pool"),
                    "localizer": r.get("localizer"),
                    "data": r.get("data"),
                    "seed": r.get("seed"),
                    "metric": key,
                    "value": float(value),
                }
            )
    return pd.DataFrame.from_records(records, columns=LONG_COLUMNS)
