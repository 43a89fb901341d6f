"""The GAP-vs-GMP box statistics of a study (`gap_vs_gmp` and its twins): how well and
how large the boxes of the ground-truth class's CAM are, from each run's
``predictions.csv``, and `box_sentence`, which says from the numbers whether the CAM
paper's argument holds here (GMP finds only the most discriminative part: small boxes,
area ratio below 1; GAP covers the object). numpy and pandas only; the figures drawing
them are `wsol.study.figures`.
"""

from __future__ import annotations

import math

import numpy as np

from wsol.models.registry import network_label  # the label registered with each network

POOL_LABELS = {"avg": "GAP", "max": "GMP"}


def pool_label(pool: str) -> str:
    return POOL_LABELS.get(pool, pool)


# ---- boxes from predictions.csv ---------------------------------------------------------
def parse_box(text: str) -> np.ndarray:
    """``"x0 y0 x1 y1"`` -> (4,) float64."""
    v = np.asarray([float(t) for t in str(text).split()], dtype=np.float64)
    if v.size != 4:
        raise ValueError(f"not a box: {text!r}")
    return v


def parse_boxes(text: str) -> np.ndarray:
    """``"x0 y0 x1 y1;x0 y0 x1 y1"`` -> (N, 4) float64 (N may be 0)."""
    parts = [p for p in str(text).split(";") if p.strip()]
    if not parts:
        return np.zeros((0, 4))
    return np.stack([parse_box(p) for p in parts])


def _area(b: np.ndarray) -> np.ndarray:
    return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)


def box_iou(box: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """IoU of one box with each of ``gts`` (suite convention: x1, y1 exclusive)."""
    x0 = np.maximum(box[0], gts[:, 0])
    y0 = np.maximum(box[1], gts[:, 1])
    x1 = np.minimum(box[2], gts[:, 2])
    y1 = np.minimum(box[3], gts[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = _area(box) + _area(gts) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def box_stats(predictions, protocol: str = "cam2016"):
    """Per test image: ``iou`` (the protocol's IoU of the ground-truth class's box) and
    ``area_ratio`` = area of that box / area of its ground-truth box (the one it overlaps
    most; the largest when it overlaps none)."""
    import pandas as pd

    box_col, iou_col = f"{protocol}_gt_known_box", f"{protocol}_iou"
    missing = [c for c in (box_col, iou_col, "gt_boxes") if c not in predictions.columns]
    if missing:
        raise KeyError(f"predictions.csv has no column {', '.join(missing)}")
    ratios = []
    for pred_text, gt_text in zip(predictions[box_col], predictions["gt_boxes"]):
        pred, gts = parse_box(pred_text), parse_boxes(gt_text)
        if len(gts) == 0:
            ratios.append(np.nan)
            continue
        ious = box_iou(pred, gts)
        k = int(np.argmax(ious)) if ious.max() > 0 else int(np.argmax(_area(gts)))
        gt_area = float(_area(gts[k]))
        ratios.append(float(_area(pred)) / gt_area if gt_area > 0 else np.nan)
    return pd.DataFrame(
        {"iou": predictions[iou_col].astype(float).to_numpy(), "area_ratio": ratios}
    )


def summarize_boxes(per_image):
    """Per (network, pool, seed): images, mean and median IoU, median area ratio, and the
    share of boxes smaller than their ground truth."""
    import pandas as pd

    rows = []
    for (network, pool, seed), g in per_image.groupby(["network", "pool", "seed"], sort=False):
        r = g["area_ratio"].dropna()
        rows.append(
            {
                "network": network,
                "pool": pool,
                "seed": int(seed),
                "images": len(g),
                "mean_iou": float(g["iou"].mean()),
                "median_iou": float(g["iou"].median()),
                "median_area_ratio": float(r.median()) if len(r) else np.nan,
                "share_smaller": float((r < 1).mean()) if len(r) else np.nan,
            }
        )
    return pd.DataFrame(rows)


def box_size_verdicts(summary, z: float = 2.0, min_relative: float = 0.05):
    """Per network with finished GAP and GMP runs: each pool's mean ± sample std over
    seeds of the run's median area ratio (`wsol.report.tables.mean_std`; ``gap``/``gmp``
    as the tables print them), the difference GAP − GMP and its standard error over seeds,
    and a verdict: ``smaller`` (GMP's boxes smaller by more than ``z`` standard errors and
    by more than ``min_relative`` of GAP's ratio: the paper's argument), ``larger`` (GMP's
    larger by as much), ``unclear`` otherwise (within ``z`` standard errors; a difference
    too small to mean "a part, not the whole object" however steady the seeds; or fewer
    than two seeds of a pool: no spread to judge by, se nan)."""
    import pandas as pd

    from wsol.report.tables import format_mean_std, mean_std

    rows = []
    for network, g in summary.groupby("network", sort=False):
        ratios = {
            pool: g.loc[g["pool"] == pool, "median_area_ratio"].tolist() for pool in ("avg", "max")
        }
        (a_mean, a_std, a_n), (m_mean, m_std, m_n) = (mean_std(ratios[p]) for p in ("avg", "max"))
        if a_n == 0 or m_n == 0:
            continue
        diff = a_mean - m_mean
        se = math.sqrt(a_std**2 / a_n + m_std**2 / m_n) if min(a_n, m_n) > 1 else math.nan
        if math.isnan(se) or abs(diff) <= max(z * se, min_relative * a_mean):
            verdict = "unclear"
        else:
            verdict = "smaller" if diff > 0 else "larger"
        rows.append(
            {
                "network": network,
                "gap": format_mean_std(ratios["avg"]),
                "gap_seeds": a_n,
                "gmp": format_mean_std(ratios["max"]),
                "gmp_seeds": m_n,
                "difference": diff,
                "se": se,
                "verdict": verdict,
            }
        )
    return pd.DataFrame(rows)


def box_sentence(summary, z: float = 2.0, min_relative: float = 0.05) -> str:
    """One paragraph, from `summarize_boxes`' numbers: the area ratios under GAP and GMP
    with their spread over seeds, and whether the paper's claim (GMP boxes cover less of
    the object) holds here: only differences beyond ``z`` standard errors over seeds and
    beyond ``min_relative`` of GAP's ratio count (`box_size_verdicts`)."""
    if summary is None or len(summary) == 0:
        return "No finished GAP/GMP runs with predictions yet: the box statistics are not computed."
    pools = set(summary["pool"])
    if "avg" not in pools or "max" not in pools:
        return "The box statistics need both GAP and GMP runs of a network; only one pool has finished runs."
    v = box_size_verdicts(summary, z, min_relative)
    if len(v) == 0:
        return "No network has finished runs under both GAP and GMP yet."
    n = len(v)
    count = v["verdict"].value_counts()
    smaller, larger = int(count.get("smaller", 0)), int(count.get("larger", 0))
    unclear = n - smaller - larger
    gap_all = float(summary.loc[summary["pool"] == "avg", "median_area_ratio"].median())
    gmp_all = float(summary.loc[summary["pool"] == "max", "median_area_ratio"].median())
    iou = summary.groupby("pool")["mean_iou"].mean()
    if smaller > n / 2:
        verdict = (
            "consistent with the paper's argument that GMP localizes only the most "
            "discriminative part"
        )
    elif larger > n / 2:
        verdict = (
            "so the paper's argument that GMP boxes cover only the most discriminative "
            "part does not hold here"
        )
    else:
        verdict = (
            "so these runs neither confirm nor refute the paper's argument that GMP boxes "
            "cover only the most discriminative part"
        )
    per_net = "; ".join(f"{network_label(r.network)} {r.gap} vs {r.gmp}" for r in v.itertuples())
    seeds = int(min(v["gap_seeds"].min(), v["gmp_seeds"].min()))
    spread = (
        f"mean ± sample std over seeds, GAP vs GMP: {per_net}"
        if seeds > 1
        else f"GAP vs GMP, one seed of some pools, so no spread to judge by: {per_net}"
    )
    return (
        f"Box size: the median ratio of the ground-truth class's box area to its ground-truth "
        f"box area is {gap_all:.2f} under GAP and {gmp_all:.2f} under GMP (median over runs of "
        f"each run's median; {spread}). Counting only differences larger than {z:g} standard "
        f"errors over seeds and than {100 * min_relative:g}% of GAP's ratio, GMP's boxes are "
        f"smaller than GAP's for {smaller} of {n} network(s), larger for {larger}, and within "
        f"the seeds' spread or that margin for {unclear}, "
        f"{verdict}. Mean box IoU: GAP {100 * iou.get('avg', np.nan):.1f}, "
        f"GMP {100 * iou.get('max', np.nan):.1f}."
    )
