"""Figures of a GAP-vs-GMP study (`gap_vs_gmp` and its twins), the kind a paper shows:

- `cam_pairs`: the same test images with the CAM of a GAP network and of its GMP twin,
  side by side, the ground-truth box (green) and the predicted box (red) drawn;
- `threshold_curves`: box accuracy against the CAM threshold (a `curves.csv` column such
  as ``v2_iou50``), GAP and GMP on one panel per network, mean over seeds with a ±1 std
  band;
- `box_figure`: how well and how large the boxes are: the IoU of the ground-truth class's
  box (``cam2016_iou``) and the ratio of its area to the area of its ground-truth box, for
  GAP and for GMP, plus the per-network medians. The CAM paper's argument is that GMP
  finds only the most discriminative part (small boxes, ratio below 1) while GAP covers
  the object; `box_sentence` says, from the numbers, whether that holds here.

Pure drawing and pandas: the runs' files are read by `wsol.study`, which also computes
the CAMs of `cam_pairs` (it may import the networks; this package may not).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

from wsol.report.figures import GT_COLOR, PRED_COLOR, save_figure

POOL_LABELS = {"avg": "GAP", "max": "GMP"}
POOL_COLORS = {"avg": "#1f77b4", "max": "#ff7f0e"}
#: the networks' names in figures (the architecture; the pool is said separately)
NETWORK_LABELS = {
    "googlenet_gap": "GoogLeNet",
    "googlenet": "GoogLeNet (unmodified)",
    "vgg16_gap": "VGGnet",
    "vgg16": "VGGnet (unmodified)",
    "alexnet_gap": "AlexNet",
    "alexnet_star_gap": "AlexNet*",
    "alexnet": "AlexNet (unmodified)",
    "nin": "NIN",
    "resnet50_gap": "ResNet-50",
    "inceptionv3_gap": "Inception-v3",
    "tiny_gap": "tiny",
}


def _draw_box(ax, box, color: str, lw: float = 1.5) -> None:
    """A box in the suite convention (pixel edges, x1/y1 exclusive) over imshow's pixel
    centres."""
    x0, y0, x1, y1 = (float(v) for v in box)
    ax.add_patch(
        plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=color, lw=lw)
    )


def network_label(name: str) -> str:
    return NETWORK_LABELS.get(name, name)


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


# ---- figures ----------------------------------------------------------------------------
def cam_pairs(
    samples: Sequence[Mapping],
    path: str | Path,
    pools: Sequence[str] = ("avg", "max"),
    title: str = "",
) -> None:
    """Rows: one per pool (GAP, GMP); columns: the same test images. Each sample:
    ``image`` (H, W, 3) in [0, 1], ``gt_boxes`` (N, 4), ``caption``, and ``maps``: pool ->
    {``cam`` (H, W) in [0, 1], ``box`` (4,), ``iou``}."""
    n = len(samples)
    if n == 0:
        return
    fig, axes = plt.subplots(
        len(pools), n, figsize=(1.9 * n + 0.6, 2.0 * len(pools) + 0.5), squeeze=False
    )
    for i, pool in enumerate(pools):
        for j, s in enumerate(samples):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            ax.imshow(s["image"])
            m = s["maps"].get(pool)
            if m is not None:
                ax.imshow(m["cam"], cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
                _draw_box(ax, m["box"], PRED_COLOR)
                ax.set_title(f"IoU {m['iou']:.2f}", fontsize=7, pad=2)
            for b in np.asarray(s["gt_boxes"]).reshape(-1, 4):
                _draw_box(ax, b, GT_COLOR)
            if j == 0:
                ax.set_ylabel(pool_label(pool), fontsize=10)
            if i == len(pools) - 1 and s.get("caption"):
                ax.set_xlabel(s["caption"], fontsize=7)
    fig.suptitle(
        (title + "\n" if title else "")
        + "CAM of the ground-truth class; green: ground truth, red: box at 20% of the CAM's max",
        fontsize=9,
    )
    fig.tight_layout(h_pad=1.2)
    save_figure(fig, path, dpi=120)


def _grid(n: int, max_cols: int = 4):
    cols = min(max_cols, max(1, n))
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False, sharex=True, sharey=True
    )
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes


def threshold_curves(curves, path: str | Path, column: str = "v2_iou50", title: str = "") -> bool:
    """``curves``: long frame with ``network``, ``pool``, ``seed``, ``threshold`` and
    ``column``. One panel per network; GAP and GMP curves (mean over seeds, ±1 std band).
    Returns False (nothing drawn) when there is nothing to draw."""
    if curves is None or len(curves) == 0 or column not in curves.columns:
        return False
    networks = list(dict.fromkeys(curves["network"]))
    fig, axes = _grid(len(networks))
    for ax, network in zip(axes.flat, networks):
        sub = curves[curves["network"] == network]
        for pool in [p for p in POOL_LABELS if p in set(sub["pool"])]:
            g = sub[sub["pool"] == pool].groupby("threshold")[column]
            mean, std, count = g.mean(), g.std(ddof=1).fillna(0.0), g.count()
            x = mean.index.to_numpy(dtype=float)
            seeds = int(count.max())
            ax.plot(
                x,
                mean.to_numpy(),
                color=POOL_COLORS[pool],
                lw=1.5,
                label=f"{pool_label(pool)} ({seeds} seed{'s' if seeds != 1 else ''})",
            )
            ax.fill_between(
                x,
                (mean - std).to_numpy(),
                (mean + std).to_numpy(),
                color=POOL_COLORS[pool],
                alpha=0.2,
                lw=0,
            )
        ax.set_title(network_label(network), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    for ax in axes[-1]:
        ax.set_xlabel("CAM threshold (fraction of the map's range)")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"{column} (%)")
    fig.suptitle(
        title or f"Box accuracy ({column}) against the CAM threshold: mean over seeds ± 1 std",
        fontsize=10,
    )
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    return True


def box_figure(per_image, summary, path: str | Path, title: str = "") -> bool:
    """Three panels: histogram of the box IoU, histogram of log2(area ratio), both GAP vs
    GMP over every finished run, and the per-network median area ratio GAP vs GMP."""
    if per_image is None or len(per_image) == 0:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.6))
    pools = [p for p in POOL_LABELS if p in set(per_image["pool"])]
    bins_iou = np.linspace(0, 1, 26)
    ratio = per_image["area_ratio"].to_numpy(dtype=float)
    finite = np.log2(ratio[np.isfinite(ratio) & (ratio > 0)])
    lo, hi = (
        (float(np.floor(finite.min())), float(np.ceil(finite.max()))) if finite.size else (-3, 3)
    )
    bins_ratio = np.linspace(min(lo, -1.0), max(hi, 1.0), 31)
    for pool in pools:
        g = per_image[per_image["pool"] == pool]
        kw = {"color": POOL_COLORS[pool], "alpha": 0.5, "density": True}
        axes[0].hist(
            g["iou"].to_numpy(dtype=float),
            bins=bins_iou,
            label=f"{pool_label(pool)} (median {g['iou'].median():.2f})",
            **kw,
        )
        r = g["area_ratio"].to_numpy(dtype=float)
        r = r[np.isfinite(r) & (r > 0)]
        axes[1].hist(
            np.log2(r),
            bins=bins_ratio,
            label=f"{pool_label(pool)} (median {np.median(r) if r.size else np.nan:.2f})",
            **kw,
        )
    axes[0].axvline(0.5, color="k", lw=0.8, ls="--")
    axes[0].set_xlabel("IoU of the ground-truth class's box")
    axes[0].set_ylabel("density")
    axes[0].set_title("Box IoU (dashed: the 0.5 criterion)", fontsize=9)
    axes[1].axvline(0.0, color="k", lw=0.8, ls="--")
    axes[1].set_xlabel("log2(predicted box area / ground-truth box area)")
    axes[1].set_title("Box size relative to the object (0: same area)", fontsize=9)
    for ax in axes[:2]:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    if summary is not None and len(summary):
        med = summary.groupby(["network", "pool"], sort=False)["median_area_ratio"].agg(
            ["mean", "std", "count"]
        )
        networks = list(dict.fromkeys(summary["network"]))
        y = np.arange(len(networks))
        for k, pool in enumerate(pools):
            xs = [
                med.loc[(n, pool), "mean"] if (n, pool) in med.index else np.nan for n in networks
            ]
            es = [med.loc[(n, pool), "std"] if (n, pool) in med.index else np.nan for n in networks]
            axes[2].errorbar(
                xs,
                y + (k - 0.5) * 0.2,
                xerr=np.nan_to_num(np.asarray(es, dtype=float)),
                fmt="o",
                color=POOL_COLORS[pool],
                label=pool_label(pool),
                ms=5,
                capsize=2,
            )
        axes[2].set_yticks(y)
        axes[2].set_yticklabels([network_label(n) for n in networks], fontsize=8)
        axes[2].set_ylim(len(networks) - 0.5, -0.5)
        axes[2].axvline(1.0, color="k", lw=0.8, ls="--")
        axes[2].set_xscale("log", base=2)
        vals = summary["median_area_ratio"].to_numpy(dtype=float)
        vals = vals[np.isfinite(vals) & (vals > 0)]
        if vals.size:
            axes[2].set_xlim(min(vals.min(), 1.0) / 1.5, max(vals.max(), 1.0) * 1.5)
        axes[2].xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        axes[2].set_xlabel("median area ratio (mean ± std over seeds)")
        axes[2].set_title("Per network", fontsize=9)
        axes[2].legend(fontsize=8)
        axes[2].grid(alpha=0.3)
    else:
        axes[2].set_visible(False)
    fig.suptitle(title or "Boxes of the ground-truth class's CAM: GAP vs GMP", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    return True
