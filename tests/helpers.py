"""Helpers for tests that run the real entry points on tiny configs."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CONF = REPO / "conf"

#: a run that takes seconds: tiny network, tiny synthetic data, one epoch
TINY = [
    "model=tiny_gap",
    "data.dataset.image_size=48",
    "data.dataset.train_image_size=null",
    "data.dataset.train_size=48",
    "data.dataset.val_size=16",
    "data.dataset.test_size=24",
    "data.batch_size=16",
    "data.eval_batch_size=12",
    "data.num_workers=0",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "figure_images=4",
]


def compose_config(overrides: list[str], config_name: str = "config") -> DictConfig:
    import wsol  # noqa: F401  (resolvers)

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF), job_name="test"):
        return compose(config_name=config_name, overrides=overrides)


def run_cli(
    module: str,
    args: list[str],
    cwd: Path | None = None,
    timeout: int = 600,
    env: dict | None = None,
):
    """Run ``python -m module args`` and return the CompletedProcess (text)."""
    e = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        HYDRA_FULL_ERROR="0",
    )
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=e,
    )


def evaluate_here(args: list[str], capsys) -> tuple[int, str]:
    """``python -m wsol.evaluate ARGS`` in this process (as the CLI runs it after composing):
    (exit code, stderr)."""
    from wsol.cli import guard
    from wsol.evaluate import evaluate

    capsys.readouterr()
    cfg = compose_config(args, config_name="evaluate")
    try:
        guard(evaluate, cfg, args)
        code = 0
    except SystemExit as e:
        code = int(e.code)
    return code, capsys.readouterr().err


def text_lines(path: Path) -> list[str]:
    """The non-empty lines of a text file (the releases have no final newline)."""
    return [ln for ln in path.read_text().split("\n") if ln]


def released_openimages_subset(tmp_path: Path, n: int = 3) -> tuple[Path, Path, list[str]]:
    """The first ``n`` test images of the OpenImages release, their lines verbatim (an
    empty image_sizes.txt included), with mask PNGs written where the lines point."""
    src = SHARED_DATA / "wsolevaluation-metadata-OpenImages" / "test"
    ids = text_lines(src / "image_ids.txt")[:n]
    keep = set(ids)
    meta = tmp_path / "meta" / "test"
    meta.mkdir(parents=True)
    for name in ("image_ids.txt", "class_labels.txt", "localization.txt"):
        rows = [ln for ln in text_lines(src / name) if ln.split(",")[0] in keep]
        (meta / name).write_text("\n".join(rows))
    (meta / "image_sizes.txt").write_bytes(b"")
    masks = tmp_path / "masks"
    from PIL import Image

    rng = np.random.default_rng(0)
    for ln in text_lines(meta / "localization.txt"):
        image_id, mask, ignore = ln.split(",")
        h, w = 30 + 2 * ids.index(image_id), 40  # one size per image
        m = np.zeros((h, w), np.uint8)
        y, x = rng.integers(0, 15), rng.integers(0, 20)
        m[y : y + 10, x : x + 12] = 255
        for rel, arr in (
            (mask, m),
            (ignore, np.pad(np.full((4, 4), 255, np.uint8), ((0, h - 4), (0, w - 4)))),
        ):
            if rel and not (masks / rel).exists():
                (masks / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(masks / rel)
    return meta, masks, ids


def openimages_center_args(meta: Path, masks: Path) -> list[str]:
    """``wsol.evaluate`` overrides of the center baseline on a `released_openimages_subset`."""
    return [
        "data=openimages_wsol",
        f"data.dataset.metadata_root={meta.parent}",
        f"data.dataset.mask_root={masks}",
        "data.dataset.val_per_class=0",
        "localizer=center",
        "protocol=wsolevaluation",
        "num_workers=0",
    ]


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


#: small wsolevaluation box metadata: id, label, (width, height), inclusive boxes x0,y0,x1,y1
BOX_ROWS = [
    ("001.Alpha/a_0001.jpg", 0, (100, 80), [(10, 20, 59, 69)]),
    ("001.Alpha/a_0002.jpg", 0, (224, 224), [(30, 40, 150, 200), (160, 10, 220, 60)]),
    ("002.Beta/b_0001.png", 1, (50, 60), [(5, 5, 44, 54)]),
    ("002.Beta/b_0002.jpg", 1, (300, 200), [(150, 20, 290, 180)]),
    ("003.Gamma/c_0001.jpg", 2, (64, 48), [(0, 0, 31, 23)]),
]


def write_box_metadata(folder: Path, rows) -> Path:
    """wsolevaluation box metadata in ``folder``; rows: (id, label, (width, height),
    [inclusive boxes x0,y0,x1,y1])."""
    write_lines(folder / "image_ids.txt", [r[0] for r in rows])
    write_lines(folder / "class_labels.txt", [f"{r[0]},{r[1]}" for r in rows])
    write_lines(folder / "image_sizes.txt", [f"{r[0]},{r[2][0]},{r[2][1]}" for r in rows])
    write_lines(
        folder / "localization.txt",
        [f"{r[0]},{x0},{y0},{x1},{y1}" for r in rows for x0, y0, x1, y1 in r[3]],
    )
    return folder


def rescore_checkpoint(ckpt: Path, out: Path, capsys) -> dict:
    """``python -m wsol.evaluate ckpt=CKPT`` (in this process) on TINY's data: its
    metrics.json."""
    import json

    code, err = evaluate_here(
        [f"ckpt={ckpt}", f"paths.output_dir={out}", *[a for a in TINY if a.startswith("data.")]],
        capsys,
    )
    assert code == 0, err
    return json.loads((out / "metrics.json").read_text())


def run_wsol_here(args: list[str]) -> None:
    """`wsol.run.main` on ``args`` as its command line (``-m ...`` for a multirun such
    as a search), in this process (a fresh interpreter costs 10-20 s of imports here);
    Hydra's global state and the logging it configured are put back after."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    from wsol.run import main

    handlers, level, argv = logging.root.handlers[:], logging.root.level, sys.argv
    sys.argv = ["wsol.run", *args]
    try:
        main()
    finally:
        sys.argv = argv
        HydraConfig.instance().cfg = None
        GlobalHydra.instance().clear()
        logging.root.handlers[:] = handlers
        logging.root.setLevel(level)
