"""End to end: one tiny epoch of training and the evaluation, through the real entry point
(`wsol.pipeline.train_and_evaluate` on the composed Hydra config), on tiny data sets
written in the real layouts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from tiny_datasets import write_cub, write_imagenet, write_openimages, write_wsol_boxes

import wsol  # noqa: F401  (registers the config resolvers)

CONF = Path(__file__).resolve().parents[2] / "conf"
FAST = [
    "model=tiny_gap",
    "trainer=cpu",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "logger=none",
    "protocol=[cam2016,wsolevaluation]",
    "data.batch_size=2",
    "data.eval_batch_size=2",
    "data.num_workers=0",
    "data.pin_memory=false",
    "data.resize_size=72",
    "figure_images=2",
]


def run(tmp_path: Path, overrides: list[str]) -> dict:
    from wsol.pipeline import train_and_evaluate

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "config", overrides=[*overrides, *FAST, f"paths.output_dir={tmp_path / 'run'}"]
        )
    metrics = train_and_evaluate(cfg)
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written.get("data") == cfg.data.name
    return metrics


def test_cub_wsol_trains_and_evaluates(tmp_path):
    images, meta = write_wsol_boxes(tmp_path)
    metrics = run(
        tmp_path,
        [
            "data=cub_wsol",
            f"data.dataset.root={images}",
            f"data.dataset.metadata_root={meta}",
            "data.dataset.num_classes=3",
        ],
    )
    assert metrics


def test_cub_trains_and_evaluates(tmp_path):
    root = write_cub(tmp_path)
    # CUB-200-2011 has no val split: hold one training image per class out as val
    metrics = run(
        tmp_path,
        [
            "data=cub",
            f"data.dataset.root={root}",
            "data.dataset.val_per_class=1",
            "data.val_split=val",
        ],
    )
    assert metrics


def test_imagenet_trains_and_evaluates(tmp_path):
    root, xml_dir, _ = write_imagenet(tmp_path)
    metrics = run(
        tmp_path,
        ["data=imagenet", f"data.dataset.root={root}", f"data.dataset.val_annotations={xml_dir}"],
    )
    assert metrics


def test_openimages_wsol_trains_and_evaluates(tmp_path):
    root, meta, _ = write_openimages(tmp_path)
    metrics = run(
        tmp_path,
        [
            "data=openimages_wsol",
            f"data.dataset.root={root}",
            f"data.dataset.metadata_root={meta}",
            "data.dataset.num_classes=3",
            "data.dataset.val_per_class=1",
        ],
    )
    assert "pxap" in metrics  # OpenImages is scored by its masks


def test_missing_root_is_hydras_missing_value(tmp_path):
    from omegaconf.errors import MissingMandatoryValue

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["data=cub_wsol", "model=tiny_gap"])
    with pytest.raises(MissingMandatoryValue, match="root"):
        _ = cfg.data.dataset.root
