"""Speed of the protocol engine against the plain per-threshold references.

``python -m wsol.bench.eval_bench [--n-maps N] [--n-ref-maps M] [--seed S]`` prints,
per 224x224 score map on one thread (numba, torch, OpenCV and BLAS limited to one
thread; numba compiled before timing): the engine's milliseconds, the plain
reference's on the same maps, their ratio, and whether both gave identical answers.

Maps are realistic CAMs: 14x14 random smooth maps upsampled bicubically to 224x224 and
min-max normalised; each has one random GT box of 25-75% of the side.

Rows:
- ``maxboxacc_v2``: wsolevaluation's multi-contour boxes, IoU 30/50/70, at 1000
  thresholds (interval 0.001) and at 100 (0.01); reference: one cv2.findContours per
  threshold (`wsol.protocols.reference.reference_box_correct`);
- ``maxboxacc_v1``: the largest-contour boxes at IoU 50, 1000 thresholds;
- ``cam2016_box``: the paper's single-threshold box (0.2 x max, largest 8-connected
  component); reference: label + regionprops;
- ``pxap``: the score histograms at 1000 thresholds (plus 3 edges); references: one
  comparison per threshold, and wsolevaluation's own ``np.histogram``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["make_maps", "make_realistic_maps", "run"]


def _single_thread() -> None:
    cv2.setNumThreads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    try:
        import numba

        numba.set_num_threads(1)
    except (ImportError, ValueError):  # pragma: no cover
        pass


def make_maps(
    n: int, seed: int = 0, size: int = 224
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """n score maps (float64, [0, 1]), inclusive GT boxes (1, 4) and 0/1/255 masks."""
    rng = np.random.default_rng(seed)
    maps, gts, masks = [], [], []
    for _ in range(n):
        small = rng.random((14, 14))
        m = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
        m = (m - m.min()) / (m.max() - m.min())
        maps.append(m)
        bw, bh = (int(v) for v in rng.integers(size // 4, 3 * size // 4, 2))
        x0, y0 = int(rng.integers(0, size - bw)), int(rng.integers(0, size - bh))
        gts.append(np.array([[x0, y0, x0 + bw - 1, y0 + bh - 1]], dtype=np.int64))
        mask = np.zeros((size, size), dtype=np.uint8)
        mask[y0 : y0 + bh, x0 : x0 + bw] = 1
        mask[y0 : y0 + bh, x0 : x0 + 2] = 255
        masks.append(mask)
    return maps, gts, masks


def make_realistic_maps(
    n: int, seed: int = 0, size: int = 224, cam_size: int = 14
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """n score maps shaped like real CAMs of cluttered images, with their GT boxes.

    Each image has 1-4 objects (as ImageNet's ``localization.txt`` lists several boxes
    of the class for some images), each a box of 15-70% of the side; the map is made at
    the CAM's resolution (``cam_size``, 14 as GoogLeNet-GAP / VGG-GAP at 224) as a sum of
    smooth Gaussian blobs: a strong one over part of every object (a discriminative
    part, off the box's centre), weaker ones over the rest of it, a few false-positive
    blobs in the background and low-level noise; then upsampled bicubically to ``size``
    and min-max normalised as wsolevaluation does. Returns float64 maps in [0, 1] and
    inclusive integer GT boxes (G, 4) in the map's coordinates."""
    rng = np.random.default_rng(seed)
    g = (np.arange(cam_size) + 0.5) * (size / cam_size)
    yy, xx = np.meshgrid(g, g, indexing="ij")

    def blob(cx, cy, sx, sy, a):
        return a * np.exp(-0.5 * (((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2))

    maps, gts = [], []
    for _ in range(n):
        small = 0.08 * rng.random((cam_size, cam_size))
        boxes = []
        for _ in range(int(rng.choice([1, 1, 2, 2, 3, 4]))):
            bw, bh = (int(v) for v in rng.integers(int(0.15 * size), int(0.7 * size), 2))
            x0, y0 = int(rng.integers(0, size - bw)), int(rng.integers(0, size - bh))
            boxes.append([x0, y0, x0 + bw - 1, y0 + bh - 1])
            cx, cy = x0 + bw / 2, y0 + bh / 2
            small += blob(cx, cy, bw / 3.5, bh / 3.5, rng.uniform(0.3, 0.6))
            px, py = cx + rng.uniform(-0.3, 0.3) * bw, cy + rng.uniform(-0.3, 0.3) * bh
            small += blob(px, py, bw / 7, bh / 7, rng.uniform(0.5, 1.0))
        for _ in range(int(rng.integers(0, 4))):  # false positives in the background
            cx, cy = rng.uniform(0, size, 2)
            s = rng.uniform(0.05, 0.15) * size
            small += blob(cx, cy, s, s, rng.uniform(0.1, 0.5))
        m = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
        m = (m - m.min()) / (m.max() - m.min())
        maps.append(m)
        gts.append(np.array(boxes, dtype=np.int64))
    return maps, gts


def _time(fn: Callable[[int], object], idx: list[int], repeats: int) -> tuple[float, list]:
    """Best-of-`repeats` milliseconds per call of fn(i) over idx, and the last outputs."""
    best = float("inf")
    outs: list = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        outs = [fn(i) for i in idx]
        best = min(best, time.perf_counter() - t0)
    return 1000.0 * best / max(len(idx), 1), outs


def _same(a, b) -> bool:
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(np.array_equal(np.asarray(a), np.asarray(b)))


def run(n_maps: int = 50, seed: int = 0, n_ref_maps: int = 10, repeats: int = 3) -> list[dict]:
    """Time every row (see the module docstring); the engine on `n_maps` maps, the
    references on the first `n_ref_maps` of them (identity is checked on those)."""
    _single_thread()
    from wsol.protocols.box_sweep import box_correct_u8, scoremap_to_uint8, threshold_list
    from wsol.protocols.cam2016 import cam2016_box
    from wsol.protocols.pxap import pxap_edges, pxap_histograms
    from wsol.protocols.reference import (
        reference_box_correct,
        reference_cam2016_box,
        reference_pxap_counts,
        reference_pxap_histograms,
    )

    maps, gts, masks = make_maps(n_maps, seed)
    n_ref = min(n_ref_maps, n_maps)
    all_idx, ref_idx = list(range(n_maps)), list(range(n_ref))
    ious = [0.3, 0.5, 0.7]
    thr1000, thr100 = threshold_list(0.001), threshold_list(0.01)
    edges = pxap_edges(thr1000)

    def v2(thr):
        return lambda i: box_correct_u8(
            scoremap_to_uint8(maps[i]), gts[i], thr, ious, largest_iou=None
        )[0]

    def v2_ref(thr):
        return lambda i: reference_box_correct(maps[i], gts[i], thr, ious, multi_contour=True)

    def v1(i):
        return box_correct_u8(scoremap_to_uint8(maps[i]), gts[i], thr1000, [], largest_iou=0.5)[1]

    def v1_ref(i):
        return reference_box_correct(maps[i], gts[i], thr1000, [0.5], multi_contour=False)[:, 0]

    def counts(h):
        ht, hf = h
        n = len(thr1000)
        return ht[::-1].cumsum()[::-1][:n], hf[::-1].cumsum()[::-1][:n]

    rows_spec = [
        ("maxboxacc_v2", 1000, v2(thr1000), v2_ref(thr1000), "cv2 per threshold", None),
        ("maxboxacc_v2", 100, v2(thr100), v2_ref(thr100), "cv2 per threshold", None),
        ("maxboxacc_v1", 1000, v1, v1_ref, "cv2 per threshold", None),
        (
            "cam2016_box",
            1,
            lambda i: cam2016_box(maps[i], 0.2, 2),
            lambda i: reference_cam2016_box(maps[i], 0.2, 2),
            "label + regionprops",
            None,
        ),
        (
            "pxap",
            1000,
            lambda i: pxap_histograms(maps[i], masks[i], edges),
            lambda i: reference_pxap_counts(maps[i], masks[i], thr1000),
            "compare per threshold",
            counts,
        ),
        (
            "pxap",
            1000,
            lambda i: pxap_histograms(maps[i], masks[i], edges),
            lambda i: reference_pxap_histograms(maps[i], masks[i], thr1000),
            "np.histogram",
            None,
        ),
    ]
    out = []
    for task, n_thr, engine_fn, ref_fn, ref_name, convert in rows_spec:
        engine_fn(0)  # warm up (numba compile / cache load)
        ref_fn(0)
        engine_ms, _ = _time(engine_fn, all_idx, repeats)
        ref_ms, ref_out = _time(ref_fn, ref_idx, 1 if n_thr >= 100 and task != "pxap" else repeats)
        eng_out = [engine_fn(i) for i in ref_idx]
        if convert is not None:
            eng_out = [convert(o) for o in eng_out]
        out.append(
            {
                "task": task,
                "thresholds": n_thr,
                "engine_ms": engine_ms,
                "reference": ref_name,
                "reference_ms": ref_ms,
                "speedup": ref_ms / engine_ms if engine_ms > 0 else float("inf"),
                "identical": all(_same(a, b) for a, b in zip(eng_out, ref_out)),
                "n_maps": n_maps,
                "n_ref_maps": n_ref,
            }
        )
    return out


def _table(rows: list[dict]) -> str:
    head = f"{'task':<14}{'thresholds':>11}{'engine ms':>11}   {'reference':<22}{'ref ms':>9}{'ratio':>9}  identical"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['task']:<14}{r['thresholds']:>11}{r['engine_ms']:>11.3f}   {r['reference']:<22}"
            f"{r['reference_ms']:>9.3f}{r['speedup']:>8.1f}x  {r['identical']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-maps", type=int, default=50)
    parser.add_argument("--n-ref-maps", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    a = parser.parse_args(argv)
    rows = run(n_maps=a.n_maps, seed=a.seed, n_ref_maps=a.n_ref_maps, repeats=a.repeats)
    print(
        f"ms per 224x224 map, one thread; engine on {a.n_maps} maps, references on {min(a.n_ref_maps, a.n_maps)}"
    )
    print(_table(rows))


if __name__ == "__main__":
    main()
