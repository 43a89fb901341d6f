"""The report of ``python -m wsol.bench``: the figures' rows as a text table (stdout) and
``results/bench.md`` (the table, the machine it ran on, the command, the load), each row
naming the CPU kind and the arithmetic it ran in."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from pathlib import Path

#: the figures, in the order they run and are reported
ORDER = ["eval", "evaluate_cli", "train", "data", "inference", "memory"]


def _fmt(x) -> str:
    if x is None:
        return "-"
    x = float(x)
    if x != x:
        return "nan"
    a = abs(x)
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def _met(m) -> str:
    return "-" if m is None else ("met" if m else "NOT MET")


HEAD = ["figure", "measure", "suite", "baseline", "ratio", "CPU kind; arithmetic", "target", "met"]

#: what each figure computes in, when the figure does not say (its result's "arithmetic")
ARITHMETIC = {
    "eval": "numpy/numba integer counts, 1 thread",
    "evaluate_cli": "numpy/numba integer counts, 1 thread",
    "data": "numpy rendering, 1 worker",
    "inference": "fp32 (evaluation is always fp32)",
    "memory": "fp32 maps, integer counts",
}


def _kind(results: dict[str, dict], name: str) -> str:
    """``AVX2, no native bf16; 32-true, NHWC``: the CPU's kind and the figure's arithmetic."""
    from wsol.hardware import cpu_info

    arith = results[name].get("arithmetic") or ARITHMETIC.get(name, "-")
    return f"{cpu_info().describe()}; {arith}"


def table_rows(results: dict[str, dict]) -> list[list[str]]:
    out = []
    for name in ORDER:
        if name not in results:
            continue
        for r in results[name]["rows"]:
            out.append(
                [
                    name,
                    r["measure"],
                    _fmt(r["suite"]),
                    _fmt(r["baseline"]),
                    _fmt(r["ratio"]),
                    _kind(results, name),
                    r["target"] or "-",
                    _met(r["met"]),
                ]
            )
    return out


def text_table(results: dict[str, dict]) -> str:
    rows = [HEAD, *table_rows(results)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEAD))]
    right = {2, 3, 4}
    lines = []
    for k, r in enumerate(rows):
        cells = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))
        ]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(results: dict[str, dict]) -> str:
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    for r in table_rows(results):
        lines.append("| " + " | ".join(c.replace("|", "/") for c in r) + " |")
    return "\n".join(lines)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "-"


def _git(*args: str) -> str:
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")  # read-only: no index refresh
    try:
        p = subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            timeout=10,
            env=env,
            cwd=Path(__file__).resolve().parents[2],
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return p.stdout.strip() if p.returncode == 0 else ""


def machine_info() -> dict[str, str]:
    import torch

    cpu = ""
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    cpu = cpu or platform.processor() or platform.machine()
    mem = ""
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        usable = os.cpu_count() or 0
    flags = set()
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    commit = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    try:
        cap = torch.backends.cpu.get_cpu_capability()
    except Exception:  # pragma: no cover
        cap = "-"
    from wsol.hardware import choose_precision, cpu_info

    info = cpu_info()
    choice = choose_precision("auto", "cpu")
    return {
        "CPU": cpu,
        "CPU kind": f"{info.describe()} (the training precision `auto` picks: {choice.precision})",
        "cores": f"{os.cpu_count()} logical, {usable} usable by this process",
        "ISA": ", ".join(isa) or "-",
        "environment": " ".join(
            f"{k}={os.environ[k]}"
            for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")
            if k in os.environ
        )
        or "-",
        "memory": mem or "-",
        "GPU": gpu,
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "torch": f"{torch.__version__} (CPU capability {cap}, default threads {torch.get_num_threads()})",
        "numpy": _version("numpy"),
        "pytorch-lightning": _version("pytorch-lightning"),
        "opencv": _version("opencv-python-headless"),
        "numba": _version("numba"),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "git commit": (commit[:12] + (" (with uncommitted changes)" if dirty else "")) or "-",
    }


def markdown_report(
    results: dict[str, dict],
    machine: dict[str, str],
    command: str,
    load: tuple,
    quick: bool,
    in_process: bool = False,
) -> str:
    parts = [
        "# wsol benchmarks",
        "",
        f"Command: `{command}`"
        + ("  (quick mode: smoke-run sizes, the numbers mean nothing)" if quick else ""),
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in machine.items()),
        f"| load average (1 min) | {load[0]:.2f} at the start, {load[1]:.2f} at the end |",
        "",
        "## Results",
        "",
        (
            "All figures ran in one process (--in-process). "
            if in_process
            else "Each figure ran in its own process. "
        )
        + "`suite` is the suite's own code path, `baseline` the plain implementation or "
        "reference it is compared with, and `target` says which column it applies to. "
        "`ratio`: eval = reference ms / engine ms (speed-up); train = suite img/s / plain "
        "img/s; data = one worker's img/s / the suite's training img/s; inference = suite "
        "ms/image / plain forward ms/image; memory = peak / the first reading's peak. "
        "Timings on a machine shared with other jobs are noisy: the load average is given "
        "per figure, and train and inference use medians over all steps/batches of "
        "ABBA-alternated blocks.",
        "",
        markdown_table(results),
        "",
    ]
    for name in ORDER:
        if name not in results:
            continue
        res = results[name]
        parts += [f"## {res.get('title', name)}", ""]
        parts += [f"- {n}" for n in res.get("notes", [])]
        if res.get("load"):
            parts.append(
                f"- load average (1 min) {res['load'][0]:.2f} before, {res['load'][1]:.2f} after "
                f"(on {os.cpu_count()} logical cores)"
            )
        if res.get("details"):
            parts += ["", res["details"]]
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"
