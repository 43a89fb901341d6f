"""``python -m wsol.samples``: draw a grid of a data set's images with their ground-truth
boxes (and masks' outlines where there are masks) to results/<data>_samples.png.

Takes the same overrides as ``wsol.run`` (``data=...``, ``data.dataset.difficulty=0.8``,
``+samples.split=val``, ``+samples.n=32``)."""

from __future__ import annotations

from pathlib import Path

import hydra
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from omegaconf import DictConfig

import wsol  # noqa: F401
from wsol.cli import CONF_DIR, guard, precheck_overrides
from wsol.pipeline import build_data
from wsol.report.figures import GT_COLOR, _draw_box, image_at_size, save_figure


def draw_samples(cfg: DictConfig) -> Path:
    opts = cfg.get("samples") or {}
    split, n = opts.get("split", "train"), int(opts.get("n", 32))
    dm = build_data(cfg)
    # the evaluation view (whole image, no flips) of the chosen split: the boxes and
    # masks are the original annotations, so an augmented image would not match them
    dm_eval = dm.eval_view(split if split in ("test", "val") else "train")
    cols = 8
    rows = (min(n, len(dm_eval)) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.1 * rows), squeeze=False)
    names = dm.class_names
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= min(n, len(dm_eval)):
            continue
        r = dm_eval[i]
        ax.imshow(image_at_size(r["image"], r["size"], dm.mean, dm.std))
        if r.get("mask") is not None:
            ax.contour(r["mask"] == 1, levels=[0.5], colors="white", linewidths=0.6)
        for b in r["boxes"].reshape(-1, 4).numpy():
            _draw_box(ax, b, GT_COLOR)
        ax.set_title(names[int(r["label"])], fontsize=7)
    fig.suptitle(
        f"{cfg.data.get('name', 'data')} ({split} split): ground-truth boxes in green, masks in white",
        fontsize=9,
    )
    fig.tight_layout()
    out = Path(cfg.paths.results_dir) / f"{cfg.data.get('name', 'data')}_samples.png"
    save_figure(fig, out, dpi=80)
    print(f"wrote {out}")
    return out


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    guard(draw_samples, cfg)


if __name__ == "__main__":
    precheck_overrides()
    main()
