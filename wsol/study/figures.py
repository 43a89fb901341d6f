"""The figures of a study, the kind a paper shows, and `write_figures`, which reads a
study's runs for them. A methods study (``figures.kind: methods``) gets one figure: each
table row's map, by the row's own map maker and network, on the same test images
(``NAME_cams.png``, `cam_pairs` with one row per table row). A GAP-vs-GMP study (`gap_vs_gmp` and its twins) gets three:

- `cam_pairs` (``NAME_cams.png``): the same test images with the CAM of a GAP network and
  of its GMP twin, side by side, the ground-truth box (green) and the predicted box (red);
  `cam_samples` computes them from a run's checkpoint (`wsol.evaluation.checkpoint.
  load_network`: strict loading, one-line error on a bad file);
- `threshold_curves` (``NAME_threshold.png``): box accuracy against the CAM threshold (a
  ``curves.csv`` column such as ``v2_iou50``), GAP and GMP on one panel per network, mean
  over seeds with a ±1 std band;
- `box_figure` (``NAME_boxes.png``, with ``NAME_boxes.csv``): the IoU of the
  ground-truth class's box and the ratio of its area to its ground-truth box's, GAP vs
  GMP, and the per-network medians (the statistics: `wsol.study.boxes`).

A figure whose inputs are absent (a fresh clone has no checkpoints or predictions) is
left as it is; a figure that fails never stops the tables.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

from wsol.errors import WSOLError
from wsol.io import write_csv
from wsol.report.figures import GT_COLOR, PRED_COLOR, save_figure
from wsol.study.boxes import (
    POOL_LABELS,
    box_iou,
    box_sentence,
    box_stats,
    network_label,
    pool_label,
    summarize_boxes,
)
from wsol.study.plan import Run
from wsol.study.spec import FiguresSpec, Study

log = logging.getLogger("wsol.study")
POOL_COLORS = {"avg": "#1f77b4", "max": "#ff7f0e"}


def _draw_box(ax, box, color: str, lw: float = 1.5) -> None:
    """A box in the suite convention (pixel edges, x1/y1 exclusive) over imshow's pixel
    centres."""
    x0, y0, x1, y1 = (float(v) for v in box)
    ax.add_patch(
        plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=color, lw=lw)
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


# ---- a study's runs -> the figures ------------------------------------------------------
def _cam_runs(runs: Sequence[Run]) -> list[Run]:
    return [
        r for r in runs if r.identity["localizer"] == "cam" and r.identity["pool"] in ("avg", "max")
    ]


def _curves_frame(runs: Sequence[Run], column: str):
    import pandas as pd

    frames = []
    for r in _cam_runs(runs):
        f = r.folder / "curves.csv"
        if not r.done or not f.is_file():
            continue
        c = pd.read_csv(f)
        if column not in c.columns:
            continue
        frames.append(
            pd.DataFrame(
                {
                    "network": r.identity["model"],
                    "pool": r.identity["pool"],
                    "seed": r.identity["seed"],
                    "threshold": c["threshold"].astype(float),
                    column: c[column].astype(float),
                }
            )
        )
    return pd.concat(frames, ignore_index=True) if frames else None


def _box_frames(runs: Sequence[Run]):
    import pandas as pd

    frames = []
    for r in _cam_runs(runs):
        f = r.folder / "predictions.csv"
        if not r.done or not f.is_file():
            continue
        try:
            stats = box_stats(pd.read_csv(f, keep_default_na=False))
        except (KeyError, ValueError) as e:
            log.warning("%s: no box statistics (%s)", f, e)
            continue
        stats.insert(0, "seed", r.identity["seed"])
        stats.insert(0, "pool", r.identity["pool"])
        stats.insert(0, "network", r.identity["model"])
        frames.append(stats)
    return pd.concat(frames, ignore_index=True) if frames else None


def run_weights(run: Run) -> Path | None:
    """The network a finished run evaluated: its own checkpoint, or for an evaluation
    run (``train=false``) the checkpoint its ``model.weights`` names; None when absent."""
    own = run.folder / "checkpoints" / "last.ckpt"
    if own.is_file():
        return own
    weights = run.resolved.get("model", {}).get("weights") if run.resolved is not None else None
    if isinstance(weights, str) and weights.endswith(".ckpt") and Path(weights).is_file():
        return Path(weights)
    return None


def cam_samples(run: Run, n: int, own_localizer: bool = False) -> list[dict]:
    """The first ``n`` test images of ``run``'s data with the map of the ground-truth
    class of ``run``'s network (`run_weights`), normalised to [0, 1] at the image's size,
    its box (the paper's: 20% of the max, largest component) and the box's IoU. The map
    is the CAM, or with ``own_localizer`` the run's own map maker (``localizer`` of its
    config.yaml: Grad-CAM, Score-CAM, ...)."""
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from wsol.data import collate
    from wsol.evaluation.checkpoint import load_network
    from wsol.localize.cam import CAM
    from wsol.report.figures import cam_sample

    weights = run_weights(run)
    if weights is None:
        raise WSOLError(f"{run.folder}: no checkpoint to draw its maps from")
    net, _ = load_network(weights)
    cfg = OmegaConf.load(run.folder / "config.yaml")
    dm = instantiate(cfg.data, num_workers=0, persistent_workers=False, pin_memory=False)
    ds = dm.dataset("test")
    batch = collate([ds[i] for i in range(min(n, len(ds)))])
    names = dm.class_names
    localizer = instantiate(cfg.localizer) if own_localizer else CAM()
    with torch.no_grad():
        f = net.forward_features(batch["image"])
    maps = localizer(net, batch["image"], f, batch["label"][:, None]).detach().float()
    out = []
    for b in range(maps.shape[0]):
        sample = cam_sample(batch["image"][b], maps[b, 0], batch["size"][b], net.mean, net.std)
        gts = batch["boxes"][b].numpy().reshape(-1, 4)
        label = int(batch["label"][b])
        out.append(
            {
                "id": batch["id"][b],
                "image": sample["image"],
                "gt_boxes": gts,
                "cam": sample["cam"],
                "box": sample["box"],
                "iou": float(box_iou(sample["box"], gts).max()) if len(gts) else 0.0,
                "caption": names[label] if names else str(label),
            }
        )
    return out


def _cam_figure(spec: FiguresSpec, cam_runs: Sequence[Run], path: Path) -> str | None:
    """NAME_cams.png for the spec's network and seed; its caption, when the file exists."""
    network = spec.network or (cam_runs[0].identity["model"] if cam_runs else None)
    pair = {
        pool: next(
            (
                r
                for r in cam_runs
                if r.identity["model"] == network
                and r.identity["pool"] == pool
                and r.identity["seed"] == spec.seed
            ),
            None,
        )
        for pool in ("avg", "max")
    }
    if all(
        r is not None and r.done and (r.folder / "checkpoints" / "last.ckpt").is_file()
        for r in pair.values()
    ):
        try:
            gap, gmp = cam_samples(pair["avg"], spec.images), cam_samples(pair["max"], spec.images)
            samples = [
                {
                    "image": a["image"],
                    "gt_boxes": a["gt_boxes"],
                    "caption": a["caption"],
                    "maps": {"avg": a, "max": b},
                }
                for a, b in zip(gap, gmp)
                if a["id"] == b["id"]
            ]
            title = f"{network_label(network)}, seed {spec.seed}: GAP vs GMP"
            cam_pairs(samples, path, title=title)
        except Exception as e:  # a figure never stops the tables (WSOLError included)
            log.warning("CAM figure not made: %s: %s", type(e).__name__, e)
    if not path.is_file():
        return None
    return f"CAMs of {network_label(str(network))} (seed {spec.seed}) under GAP and GMP"


def _methods_figure(study: Study, runs: Sequence[Run], spec: FiguresSpec, path: Path) -> str | None:
    """NAME_cams.png of a methods study: one row per table row that has a finished run of
    the spec's seed with a network to load (its own checkpoint, or the ``model.weights``
    an evaluation run scored): the map of the ground-truth class by the run's own map
    maker (``localizer``) on the run's own network (ACoL's two branches, SPG's class map,
    FSL's foreground; Grad-CAM, Score-CAM, ... for a study of map makers), the same test
    images in the columns; its caption, when the file exists."""
    from wsol.study.plan import matches

    chosen: dict[str, Run] = {}
    for row in study.rows:
        run = next(
            (
                r
                for r in runs
                if matches(r, row.where)
                and r.identity["seed"] == spec.seed
                and r.done
                and run_weights(r) is not None
            ),
            None,
        )
        if run is not None:
            chosen[row.label] = run
    if chosen:
        try:
            per_row = {
                label: cam_samples(run, spec.images, own_localizer=True)
                for label, run in chosen.items()
            }
            first = next(iter(per_row.values()))
            samples = [
                {
                    "image": s["image"],
                    "gt_boxes": s["gt_boxes"],
                    "caption": s["caption"],
                    "maps": {
                        label: rows[j]
                        for label, rows in per_row.items()
                        if rows[j]["id"] == s["id"]
                    },
                }
                for j, s in enumerate(first)
            ]
            cam_pairs(samples, path, pools=list(chosen), title=f"{study.title}, seed {spec.seed}")
        except Exception as e:  # a figure never stops the tables (WSOLError included)
            log.warning("maps figure not made: %s: %s", type(e).__name__, e)
    if not path.is_file():
        return None
    return f"Each row's map of the ground-truth class on the same test images (seed {spec.seed})"


def write_figures(
    study: Study, runs: Sequence[Run], results_dir: Path
) -> tuple[dict[str, str], str]:
    """The study's figures (``figures.kind``); (caption -> file name of each figure
    present, the box sentence). A figure whose inputs are absent (e.g. a fresh clone
    without checkpoints) is left as it is."""
    import pandas as pd

    spec = study.figures or FiguresSpec()
    name = study.name
    if spec.kind == "methods":
        cams_file = results_dir / f"{name}_cams.png"
        caption = _methods_figure(study, runs, spec, cams_file)
        return ({caption: cams_file.name} if caption else {}), ""
    shown: dict[str, str] = {}
    # 1. CAM overlays, GAP vs GMP
    cams_file = results_dir / f"{name}_cams.png"
    caption = _cam_figure(spec, _cam_runs(runs), cams_file)
    if caption:
        shown[caption] = cams_file.name
    # 2. accuracy against the CAM threshold
    column = spec.curve
    curves_file = results_dir / f"{name}_threshold.png"
    threshold_curves(_curves_frame(runs, column), curves_file, column=column)
    if curves_file.is_file():
        shown[f"Box accuracy ({column}) against the CAM threshold, GAP vs GMP"] = curves_file.name
    # 3. box IoU and size
    boxes_file, summary_file = results_dir / f"{name}_boxes.png", results_dir / f"{name}_boxes.csv"
    per_image = _box_frames(runs)
    summary = None
    if per_image is not None:
        summary = summarize_boxes(per_image)
        write_csv(summary_file, summary)
        box_figure(per_image, summary, boxes_file)
    elif summary_file.is_file():
        summary = pd.read_csv(summary_file)
    if boxes_file.is_file():
        shown["Box IoU and box size relative to the ground truth, GAP vs GMP"] = boxes_file.name
    text = box_sentence(summary)
    if summary is not None:
        text += f" (Per-run numbers: [{summary_file.name}]({summary_file.name}).)"
    return shown, text
