"""``python -m wsol.bench`` (``make bench``): every benchmark figure, each in its own
process, then one table on stdout and ``results/bench.md`` (written atomically) with
the machine it ran on.

Figures (``--figures``, default all, in this order):

1. ``eval``: the protocol engine's ms per 224x224 map (MaxBoxAccV2 at 1000 and 100
   thresholds, MaxBoxAcc, the cam2016 box, PxAP) beside the plain per-threshold
   implementations; target <= 5 ms per map at 1000 thresholds on one core.
2. ``evaluate_cli``: ``python -m wsol.evaluate scoremaps=... protocol=wsolevaluation
   protocol.cam_curve_interval=0.001`` on 1000 realistic score maps from disk (marginal
   ms per map, V1 and V2 in one run) against wsolevaluation's evaluator loop (its V1 and
   V2 runs; ``--wsolevaluation DIR`` times its own code); target >= 20 x.
3. ``train``: images/s of the suite's Lightning training of the default job against a
   plain PyTorch loop on the same model, batches and settings; target >= 0.95 x.
4. ``data``: images/s of one synthetic-data worker against figure 3's training rate;
   target >= 5 x.
5. ``inference``: the suite's evaluation (forward, CAMs, protocols, rows) against a plain
   forward pass; target <= 1.3 x; with a breakdown of where the time goes.
6. ``memory``: peak RSS after 5,000 / 20,000 / 50,000 maps through the protocols;
   target: no growth with the number of maps (< 256 bytes per added map).

``--quick`` runs every figure at tiny sizes (a smoke run, seconds per figure; its numbers
mean nothing). ``--device cuda`` measures training (per network, 224x224) and
evaluation on the GPU, and says "no GPU" when there is none. Progress goes to stderr;
the table to stdout. Exit status 1 when a figure failed to run (targets not met are
reported, not errors).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from wsol.bench.common import say
from wsol.bench.report import ORDER, machine_info, markdown_report, text_table
from wsol.bench.worker import FIGURES

DEFAULT_OUTPUT = Path("results") / "bench.md"

#: the quick mode's job: tiny network, tiny synthetic data, no loader worker
QUICK_OVERRIDES = [
    "model=tiny_gap",
    "data.dataset.image_size=48",
    "data.dataset.train_image_size=null",
    "data.dataset.train_size=48",
    "data.dataset.val_size=16",
    "data.dataset.test_size=24",
    "data.batch_size=8",
    "data.eval_batch_size=8",
    "data.num_workers=0",
    "figure_images=2",
]

FULL = {
    "eval": {"n_maps": 50, "n_ref_maps": 10, "repeats": 3},
    "evaluate_cli": {"n_maps": 1000, "n_small": 50, "n_ref_maps": 40},
    "train": {"steps": 10, "warmup": 3, "repeats": 5},
    "data": {"images": 1024, "repeats": 3},
    "inference": {"batches": 3, "repeats": 5},
    "memory": {"counts": [5000, 20000, 50000], "batch": 100, "image_size": 224, "map_size": 14},
}
QUICK = {
    "eval": {"n_maps": 3, "n_ref_maps": 1, "repeats": 1},
    "evaluate_cli": {"n_maps": 4, "n_small": 0, "n_ref_maps": 2, "interval": 0.05},
    "train": {"steps": 2, "warmup": 1, "repeats": 1},
    "data": {"images": 16, "repeats": 1},
    "inference": {"batches": 1, "repeats": 1},
    "memory": {"counts": [20, 40, 80], "batch": 20, "image_size": 64, "map_size": 7},
}


# ---- options ---------------------------------------------------------------------------
def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def _ints(s: str) -> list[int]:
    return [int(x) for x in _csv(s)]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m wsol.bench",
        description="Benchmarks of wsol: evaluation engine, training, data, inference, memory.",
    )
    p.add_argument(
        "--figures",
        type=_csv,
        default=None,
        help=f"comma-separated subset of {','.join(ORDER)} (default: all)",
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="default: cpu")
    p.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="the markdown report (default: results/bench.md)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write every result as JSON")
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Hydra override of the job's config for train/data/inference (repeatable)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads for train/inference")
    p.add_argument(
        "--in-process",
        action="store_true",
        help="run the figures in this process (tests, debugging); default: one process each",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="add torch.profiler op tables of training and inference to the report",
    )
    g = p.add_argument_group("sizes (defaults: the full run, or --quick's)")
    g.add_argument("--eval-maps", type=int, help="maps the engine is timed on (50)")
    g.add_argument("--eval-ref-maps", type=int, help="maps the references are timed on (10)")
    g.add_argument("--eval-repeats", type=int)
    g.add_argument("--cli-maps", type=int, help="maps wsol.evaluate scores from disk (1000)")
    g.add_argument(
        "--wsolevaluation",
        metavar="DIR",
        help="a checkout of clovaai/wsolevaluation: time its own evaluator as the baseline "
        "of evaluate_cli (default: the same loop in wsol.protocols.reference)",
    )
    g.add_argument("--train-steps", type=int, help="timed steps per block (10)")
    g.add_argument("--train-warmup", type=int, help="untimed steps per block (3)")
    g.add_argument("--train-repeats", type=int, help="ABBA repeats (5)")
    g.add_argument("--networks", type=_csv, help="networks to train (cuda default: 5 GAP nets)")
    g.add_argument(
        "--data-source",
        choices=["loader", "memory"],
        help="training batches from the job's loader (cpu default) or pre-rendered (cuda)",
    )
    g.add_argument("--data-images", type=int, help="images per data reading (1024)")
    g.add_argument("--data-repeats", type=int)
    g.add_argument("--infer-batches", type=int, help="timed test batches per block (3)")
    g.add_argument("--infer-repeats", type=int, help="ABBA repeats (5)")
    g.add_argument("--mem-counts", type=_ints, help="readings, e.g. 5000,20000,50000")
    g.add_argument("--mem-batch", type=int, help="maps per batch (100)")
    g.add_argument("--mem-image-size", type=int, help="image and mask side (224)")
    g.add_argument("--mem-map-size", type=int, help="raw map side (14)")
    return p


def figure_params(a: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Keyword arguments of every figure's ``run`` from the options."""
    base = QUICK if a.quick else FULL
    ps = {k: dict(v) for k, v in base.items()}
    overrides = (QUICK_OVERRIDES if a.quick else []) + list(a.override)

    def put(fig: str, key: str, value) -> None:
        if value is not None:
            ps[fig][key] = value

    put("eval", "n_maps", a.eval_maps)
    put("eval", "n_ref_maps", a.eval_ref_maps)
    put("eval", "repeats", a.eval_repeats)
    put("evaluate_cli", "n_maps", a.cli_maps)
    put("evaluate_cli", "wsolevaluation", a.wsolevaluation)
    for fig in ("train", "data", "inference", "memory"):
        ps[fig]["overrides"] = list(overrides)
    if a.device == "cuda":  # the data figure feeds the GPU training's 224x224 images
        ps["data"]["overrides"] = [
            "data.dataset.image_size=224",
            "data.dataset.train_image_size=null",
            *overrides,
        ]
    put("train", "steps", a.train_steps)
    put("train", "warmup", a.train_warmup)
    put("train", "repeats", a.train_repeats)
    put("train", "networks", a.networks)
    put("train", "data_source", a.data_source)
    put("train", "device", a.device)
    put("train", "profile", a.profile or None)
    put("train", "threads", a.threads)
    put("data", "images", a.data_images)
    put("data", "repeats", a.data_repeats)
    put("inference", "batches", a.infer_batches)
    put("inference", "repeats", a.infer_repeats)
    put("inference", "device", a.device)
    put("inference", "profile", a.profile or None)
    put("inference", "threads", a.threads)
    put("memory", "counts", a.mem_counts)
    put("memory", "batch", a.mem_batch)
    put("memory", "image_size", a.mem_image_size)
    put("memory", "map_size", a.mem_map_size)
    return ps


# ---- running ---------------------------------------------------------------------------
class FigureFailed(RuntimeError):
    pass


def _child_stdout():
    """Children's stdout goes to our stderr (our stdout carries only the table)."""
    try:
        sys.stderr.flush()
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return subprocess.DEVNULL


def run_subprocess(name: str, params: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="wsol-bench-") as tmp:
        out = Path(tmp) / f"{name}.json"
        cmd = [sys.executable, "-m", "wsol.bench.worker", name, json.dumps(params), str(out)]
        err = subprocess.PIPE if _child_stdout() == subprocess.DEVNULL else None
        proc = subprocess.run(cmd, stdout=_child_stdout(), stderr=err, text=True)
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr or "").strip().splitlines()[-1:] if err else []
            raise FigureFailed(
                f"figure {name} exited with status {proc.returncode}"
                + (f": {tail[0]}" if tail else " (its error is printed above)")
            )
        return json.loads(out.read_text())


@contextlib.contextmanager
def _restored_globals():
    """In-process runs: figures change torch/OpenCV/numba thread counts and torch's
    deterministic flag; put them back after each."""
    import cv2
    import torch

    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    env = dict(os.environ)  # eval_bench sets OMP/MKL/... thread variables at import
    cv_threads = cv2.getNumThreads()
    try:
        import numba

        nb_threads = numba.get_num_threads()
    except Exception:  # pragma: no cover
        numba, nb_threads = None, None
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(env)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)
        cv2.setNumThreads(cv_threads)
        if numba is not None and nb_threads:
            with contextlib.suppress(Exception):
                numba.set_num_threads(nb_threads)


def run_in_process(name: str, params: dict[str, Any]) -> dict[str, Any]:
    from wsol.bench.worker import run_figure

    with _restored_globals():
        # what JSON would do to the result in a child process
        return json.loads(json.dumps(run_figure(name, params), default=str))


def _failed(name: str, msg: str) -> dict[str, Any]:
    return {
        "figure": name,
        "title": name,
        "rows": [{"measure": f"FAILED: {msg}"[:160], "suite": None, "baseline": None,
                  "ratio": None, "unit": "", "target": None, "met": None}],
        "notes": [],
        "details": "",
        "failed": True,
    }  # fmt: skip


def link_data_to_train(results: dict[str, dict]) -> None:
    """Figure 3's baseline is figure 2's training rate (the suite's)."""
    data, train = results.get("data"), results.get("train")
    if not data or data.get("failed"):
        return
    rate = (train or {}).get("train_rate")
    r = data["rows"][0]
    if rate:
        r["baseline"] = float(rate)
        r["ratio"] = r["suite"] / float(rate)
        from wsol.bench.data_bench import TARGET_RATIO

        r["met"] = r["ratio"] >= TARGET_RATIO
        r["measure"] += " vs training"
        if any("[noisy" in t["measure"] for t in train["rows"]):
            r["measure"] += " [training rate noisy]"
    else:
        r["measure"] += " (run figure train for the ratio)"
        r["met"] = None


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    figures = a.figures or list(ORDER)
    unknown = [f for f in figures if f not in FIGURES]
    if unknown:
        parser().error(f"unknown figure(s) {', '.join(unknown)}; valid: {', '.join(ORDER)}")
    figures = [f for f in ORDER if f in figures]
    params = figure_params(a)
    command = "python -m wsol.bench " + " ".join(
        shlex.quote(x) for x in (sys.argv[1:] if argv is None else argv)
    )
    if a.device == "cuda":
        from wsol.bench.common import cuda_available

        if not cuda_available():
            print("no GPU: torch.cuda.is_available() is False; the cuda parts of train and "
                  "inference are skipped")  # fmt: skip
    load0 = os.getloadavg()[0]
    results: dict[str, dict] = {}
    failed = False
    for i, name in enumerate(figures, 1):
        say(f"[{i}/{len(figures)}] {name} ...")
        before = os.getloadavg()[0]
        try:
            run = run_in_process if a.in_process else run_subprocess
            results[name] = run(name, params[name])
        except Exception as e:  # report and go on with the other figures
            failed = True
            msg = str(e) if isinstance(e, FigureFailed) else f"{type(e).__name__}: {e}"
            say(f"  {msg}")
            results[name] = _failed(name, msg)
        results[name]["load"] = [before, os.getloadavg()[0]]
    link_data_to_train(results)
    load1 = os.getloadavg()[0]
    print(text_table(results))
    print(f"\nload average (1 min): {load0:.2f} at the start, {load1:.2f} at the end")
    machine = machine_info()
    report = markdown_report(results, machine, command, (load0, load1), a.quick, a.in_process)
    from wsol.io import write_json, write_text

    write_text(a.output, report)
    if a.json is not None:
        write_json(a.json, {"machine": machine, "command": command, "results": results})
    print(f"\nwritten: {a.output}" + (f", {a.json}" if a.json else ""))
    return 1 if failed else 0
