"""``logger=wandb``: a tiny training logs, offline and without a network, its config, its
training and test metrics, the CAM figure as an image and the predictions as a table; the
offline run folder is read back with `wsol.report.wandb.read_offline_run`."""

from __future__ import annotations

import json

import pytest

from tests.helpers import TINY, compose_config
from wsol.pipeline import train_and_evaluate
from wsol.report.wandb import find_offline_runs, read_offline_run


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    # everything W&B writes goes under tmp_path; no network
    for key in (
        "WANDB_DIR",
        "WANDB_CACHE_DIR",
        "WANDB_CONFIG_DIR",
        "WANDB_DATA_DIR",
        "WANDB_ARTIFACT_DIR",
    ):
        monkeypatch.setenv(key, str(tmp_path / key.lower()))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    yield tmp_path


def test_tiny_training_logs_metrics_image_and_table_offline(offline_wandb):
    import wandb

    out = offline_wandb / "run"
    cfg = compose_config([*TINY, "logger=wandb", f"paths.output_dir={out}"])
    metrics = train_and_evaluate(cfg)
    assert wandb.run is None  # the job finished its W&B run (a multirun's next job starts its own)

    found = find_offline_runs(out)
    assert len(found) == 1 and found[0].parent.parent == out / "wandb"
    run_dir = found[0].parent
    logged = read_offline_run(run_dir)
    assert logged["complete"]  # the run's final (exit) record was written
    summary = logged["summary"]

    # the test metrics (as the evaluation logged them and in the summary)
    for key in ("gt_known_loc", "cls_top1_err", "maxboxacc_v2", "pxap"):
        assert summary[f"test/{key}"] == pytest.approx(metrics[key]), key
    assert any("test/gt_known_loc" in step for step in logged["history"])
    assert summary["run/model"] == "tiny_gap" and summary["run/pool"] == "avg"
    # the training metrics, logged by Lightning
    assert any("train/loss_epoch" in step for step in logged["history"])
    assert "val/acc" in summary

    # the config
    assert logged["config"]["model"]["name"] == "tiny_gap"
    assert logged["config"]["seed"] == 0
    assert logged["config"]["logger"]["offline"] is True

    # cams.png as an image, predictions.csv as a table, both saved in the run folder
    assert summary["test/cams/_type"] == "image-file"
    assert (run_dir / "files" / summary["test/cams/path"]).is_file()
    assert summary["test/predictions/_type"] == "table-file"
    assert summary["test/predictions/nrows"] == 24 == summary["test/predictions_rows_logged"]
    table = json.loads((run_dir / "files" / summary["test/predictions/path"]).read_text())
    assert len(table["data"]) == 24 and "cam2016_iou" in table["columns"]
    assert any(p.endswith(".png") for p in logged["files"])
