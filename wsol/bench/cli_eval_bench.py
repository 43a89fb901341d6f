"""Figure ``evaluate_cli``: scoring score maps from disk through the real command, as a
user runs it, against wsolevaluation's evaluator on the same maps.

    python -m wsol.evaluate scoremaps=DIR metadata=DIR protocol=wsolevaluation \\
        protocol.cam_curve_interval=0.001 paths.output_dir=OUT

The maps (`wsol.bench.eval_bench.make_realistic_maps`): 224x224 float32 ``.npy`` files
shaped like real CAMs (14x14 sums of smooth blobs over 1-4 objects and a few false
positives, upsampled bicubically, min-max normalised), in wsolevaluation's layout, with
a metadata folder whose ``localization.txt`` lists several boxes for some images (as
ImageNet's does) in original-image coordinates (random image sizes, so the boxes are
rescaled to 224 as wsolevaluation does).

Measured: the command's wall time on ``n_maps`` and on ``n_small`` maps, each in a fresh
process; the **marginal cost per map** is their difference over ``n_maps - n_small``
(start-up and imports cancel), the start-up is what is left. The start-up itself varies
by about a second from run to run, so the per-map figure is good to about
1000 / (n_maps - n_small) ms: 1000 maps (the default) make that about 1 ms. One run gives MaxBoxAcc
(V1) and MaxBoxAccV2 (IoU 30/50/70) together, file reading included.

The baseline is wsolevaluation's evaluator loop (one ``cv2.findContours`` per threshold,
`wsol.protocols.reference`, the same arithmetic), timed per map on ``n_ref_maps`` maps
with its file reading: once for V1 (the largest contour) and once for V2 (every contour),
as wsolevaluation needs two runs (``multi_contour_eval`` False / True) for the two
numbers. With ``wsolevaluation=DIR`` (a checkout of clovaai/wsolevaluation and its
``munch`` dependency importable) its own ``evaluation.evaluate_wsol`` is timed instead,
the same way as ours (two map counts, fresh processes). Both must give the same numbers:
the figure checks MaxBoxAcc and MaxBoxAccV2 against the reference's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from wsol.bench.common import row, say
from wsol.io import save_npy, write_text

TARGET_SPEEDUP = 20.0


def write_maps(folder: Path, n: int, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """``folder/scoremaps/<id>.npy`` and ``folder/metadata/`` for n realistic maps;
    returns (image id, inclusive GT boxes at 224) per map."""
    from wsol.bench.eval_bench import make_realistic_maps
    from wsol.protocols.wsolevaluation import resize_boxes

    maps, gts = make_realistic_maps(n, seed)
    rng = np.random.default_rng(seed + 1)
    meta = folder / "metadata"
    maps_dir = folder / "scoremaps"
    (maps_dir / "val").mkdir(parents=True, exist_ok=True)
    meta.mkdir(parents=True, exist_ok=True)
    ids, sizes, locs, out = [], [], [], []
    for i, (m, gt) in enumerate(zip(maps, gts)):
        image_id = f"val/image_{i:05d}.JPEG"
        w, h = (int(v) for v in rng.integers(300, 640, 2))
        # boxes in the original image, inclusive, that wsolevaluation's int(x * 224 / w)
        # maps back onto the map's boxes (or within a pixel of them)
        boxes = []
        for x0, y0, x1, y1 in gt.tolist():
            boxes.append([int(np.ceil(x0 * w / 224)), int(np.ceil(y0 * h / 224))])
            boxes[-1] += [
                min(w - 1, int(np.ceil(x1 * w / 224))),
                min(h - 1, int(np.ceil(y1 * h / 224))),
            ]
        boxes = np.asarray(boxes, dtype=np.int64)
        save_npy(maps_dir / f"{image_id}.npy", m.astype(np.float32))
        ids.append(image_id)
        sizes.append(f"{image_id},{w},{h}")
        locs += [f"{image_id},{b[0]},{b[1]},{b[2]},{b[3]}" for b in boxes.tolist()]
        out.append((image_id, resize_boxes(boxes + np.array([0, 0, 1, 1]), h, w)))
    write_text(meta / "image_ids.txt", "\n".join(ids) + "\n")
    write_text(meta / "class_labels.txt", "".join(f"{i},0\n" for i in ids))
    write_text(meta / "image_sizes.txt", "\n".join(sizes) + "\n")
    write_text(meta / "localization.txt", "\n".join(locs) + "\n")
    return out


def _subset_metadata(src: Path, dst: Path, n: int) -> None:
    """The metadata of the first n images of ``src``."""
    dst.mkdir(parents=True, exist_ok=True)
    ids = (src / "image_ids.txt").read_text().split()[:n]
    keep = set(ids)
    write_text(dst / "image_ids.txt", "\n".join(ids) + "\n")
    for name in ("class_labels.txt", "image_sizes.txt", "localization.txt"):
        lines = [ln for ln in (src / name).read_text().splitlines() if ln.split(",")[0] in keep]
        write_text(dst / name, "\n".join(lines) + "\n")


def _timed(cmd: list[str], env: dict | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed: {r.stderr.strip()[-800:]}")
    return dt, r.stdout


def _suite(root: Path, meta: Path, interval: float, tag: str) -> tuple[float, dict]:
    out = root / f"out_{tag}"
    cmd = [
        sys.executable,
        "-m",
        "wsol.evaluate",
        f"scoremaps={root / 'scoremaps'}",
        f"metadata={meta}",
        "protocol=wsolevaluation",
        f"protocol.cam_curve_interval={interval}",
        f"paths.output_dir={out}",
        "hydra/job_logging=disabled",
    ]
    dt, _ = _timed(cmd, env=dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1"))
    return dt, json.loads((out / "metrics.json").read_text())


_THEIRS = """
import sys, numpy as np
np.float = float  # its util.t2n uses np.float, an alias numpy >= 1.24 removed (float64)
sys.path.insert(0, {repo!r})
from evaluation import evaluate_wsol
for multi, ious in ((False, [50]), (True, [30, 50, 70])):
    p = evaluate_wsol(scoremap_root={maps!r}, metadata_root={meta!r}, mask_root={maps!r},
                      dataset_name="ILSVRC", split="val", multi_contour_eval=multi,
                      multi_iou_eval=multi, iou_threshold_list=ious,
                      cam_curve_interval={interval!r})
    print("RESULT", multi, float(p))
"""


def _theirs(repo: str, root: Path, meta: Path, interval: float) -> tuple[float, dict]:
    """wsolevaluation's own evaluate_wsol, V1 then V2, on ``meta`` (laid out as it wants
    it: METADATA/ILSVRC/val/)."""
    lay = meta.parent / f"theirs_{meta.name}"
    (lay / "ILSVRC").mkdir(parents=True, exist_ok=True)
    if not (lay / "ILSVRC" / "val").exists():
        os.symlink(meta, lay / "ILSVRC" / "val")
    code = _THEIRS.format(repo=repo, maps=str(root / "scoremaps"), meta=str(lay), interval=interval)
    dt, stdout = _timed([sys.executable, "-c", code], env=dict(os.environ, OMP_NUM_THREADS="1"))
    res = {}
    for line in stdout.splitlines():
        if line.startswith("RESULT"):
            _, multi, value = line.split()
            res["maxboxacc_v2" if multi == "True" else "maxboxacc"] = float(value)
    return dt, res


def _reference_per_map(root: Path, items: list, interval: float) -> tuple[float, float, dict]:
    """ms per map of wsolevaluation's per-threshold loop (V1 run, V2 run), file reading
    included, and the accuracies those maps give."""
    import cv2

    from wsol.protocols.box_sweep import threshold_list
    from wsol.protocols.reference import reference_box_correct

    cv2.setNumThreads(1)
    thr = threshold_list(interval)
    acc1 = np.zeros(len(thr))
    acc2 = np.zeros((len(thr), 3))
    t0 = time.perf_counter()
    for image_id, gt in items:
        m = np.load(root / "scoremaps" / f"{image_id}.npy")
        acc1 += reference_box_correct(m, gt, thr, [0.5], multi_contour=False)[:, 0]
    t1 = time.perf_counter()
    for image_id, gt in items:
        m = np.load(root / "scoremaps" / f"{image_id}.npy")
        acc2 += reference_box_correct(m, gt, thr, [0.3, 0.5, 0.7], multi_contour=True)
    t2 = time.perf_counter()
    n = len(items)
    acc = {
        "maxboxacc": float((acc1 * 100 / n).max()),
        "maxboxacc_v2": float((acc2 * 100 / n).max(0).mean()),
    }
    return 1000 * (t1 - t0) / n, 1000 * (t2 - t1) / n, acc


def run(
    n_maps: int = 1000,
    n_small: int = 50,
    n_ref_maps: int = 40,
    interval: float = 0.001,
    seed: int = 0,
    wsolevaluation: str | None = None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="wsol-evalcli-") as tmp:
        root = Path(tmp)
        say(f"  writing {n_maps} realistic score maps and their metadata")
        items = write_maps(root, n_maps, seed)
        small = root / "metadata_small"
        _subset_metadata(root / "metadata", small, n_small)
        refs = root / "metadata_ref"
        _subset_metadata(root / "metadata", refs, n_ref_maps)
        if n_small > 0:
            _suite(root, small, interval, "warm")  # numba's cache, the OS's file cache
            say(f"  wsol.evaluate on {n_small} and {n_maps} maps")
            t_small, _ = _suite(root, small, interval, "small")
        else:  # (--quick) one run: its wall time over the maps, start-up included
            t_small = 0.0
        t_big, ours = _suite(root, root / "metadata", interval, "big")
        _, ours_ref = _suite(root, refs, interval, "ref")
        per_map = 1000 * (t_big - t_small) / (n_maps - n_small)
        startup = t_small - n_small * per_map / 1000
        if wsolevaluation:
            say(f"  wsolevaluation's evaluate_wsol (V1 and V2 runs) on {n_small} and {n_maps} maps")
            w_small = _theirs(wsolevaluation, root, small, interval)[0] if n_small else 0.0
            w_big, theirs = _theirs(wsolevaluation, root, root / "metadata", interval)
            base_ms = 1000 * (w_big - w_small) / (n_maps - n_small)
            base_name = "wsolevaluation evaluate_wsol, V1 run + V2 run"
            base_v1 = base_v2 = None
            same = all(abs(theirs[k] - ours[k]) < 1e-9 for k in ("maxboxacc", "maxboxacc_v2"))
        else:
            say(f"  the per-threshold reference loop on {n_ref_maps} maps")
            base_v1, base_v2, theirs = _reference_per_map(root, items[:n_ref_maps], interval)
            base_ms = base_v1 + base_v2
            base_name = "wsolevaluation's loop (wsol.protocols.reference), V1 run + V2 run"
            same = all(abs(theirs[k] - ours_ref[k]) < 1e-9 for k in ("maxboxacc", "maxboxacc_v2"))
    speedup = base_ms / per_map if per_map > 0 else None  # None: too few maps to tell
    n_thr = round(1 / interval)
    rows = [
        row(
            f"wsol.evaluate scoremaps=... @{n_thr} thr, V1+V2, vs {base_name} "
            f"({'same' if same else 'DIFFERENT'} numbers) (ms/map)",
            per_map,
            base_ms,
            speedup,
            unit="ms/map",
            target=f"ratio >= {TARGET_SPEEDUP:g}",
            met=None if speedup is None else (speedup >= TARGET_SPEEDUP and same),
        ),
        row(
            "wsol.evaluate scoremaps=... start-up (imports, config, numba cache) (s)",
            startup,
            unit="s",
        ),
    ]
    notes = [
        f"maps: wsol.bench.eval_bench.make_realistic_maps (seed {seed}): 1-4 objects per image, "
        "several GT boxes, 14x14 blob CAMs upsampled to 224, float32 .npy",
        f"ours: marginal cost per map = (wall({n_maps} maps) - wall({n_small} maps)) / "
        f"{n_maps - n_small}, each a fresh `python -m wsol.evaluate` process, one thread",
    ]
    if base_v1 is not None:
        notes.append(
            f"baseline per map on {n_ref_maps} maps, file reading included: V1 run {base_v1:.1f} ms "
            f"+ V2 run {base_v2:.1f} ms; numbers compared on those maps"
        )
    return {
        "figure": "evaluate_cli",
        "title": "Evaluation as users run it: wsol.evaluate on score maps from disk (ms per map)",
        "rows": rows,
        "notes": notes,
        "metrics": {"ours": ours, "baseline": theirs},
    }
