"""The main job end to end: tiny configs through the real entry points."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.helpers import TINY, compose_config, run_cli
from wsol.pipeline import train_and_evaluate

SPINE_KEYS = {
    "cls_top1_err",
    "cls_top5_err",
    "loc_top1_err",
    "loc_top5_err",
    "gt_known_loc",
    "mean_iou",
    "full_image_gt_known_loc",
}


def test_plain_function_writes_every_output(tmp_path):
    cfg = compose_config(
        [
            *TINY,
            f"paths.output_dir={tmp_path}",
            "protocol=[cam2016,cam2016_official,wsolevaluation]",
        ]
    )
    metrics = train_and_evaluate(cfg)
    for name in (
        "config.yaml",
        "metrics.json",
        "predictions.csv",
        "curves.csv",
        "cams.png",
        "checkpoints/last.ckpt",
    ):
        assert (tmp_path / name).is_file(), name
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written == json.loads(json.dumps(metrics))
    assert SPINE_KEYS <= written.keys()
    assert {"official_loc_top1_err", "maxboxacc", "maxboxacc_v2", "pxap"} <= written.keys()
    assert {
        "model": "tiny_gap",
        "pool": "avg",
        "data": "synthetic",
        "seed": 0,
    }.items() <= written.items()
    for key in SPINE_KEYS:
        assert 0.0 <= written[key] <= 100.0
    pred = pd.read_csv(tmp_path / "predictions.csv")
    assert len(pred) == 24 and pred["index"].tolist() == list(range(24))
    assert {
        "id",
        "label",
        "top5",
        "pred_class",
        "gt_boxes",
        "cam2016_pred_box",
        "cam2016_iou",
    } <= set(pred.columns)
    # the metrics are the predictions' averages
    assert written["gt_known_loc"] == pytest.approx(100 * pred["cam2016_gt_known_right"].mean())
    assert written["mean_iou"] == pytest.approx(100 * pred["cam2016_iou"].mean())
    assert written["cls_top1_err"] == pytest.approx(
        100 * (pred["pred_class"] != pred["label"]).mean()
    )
    curves = pd.read_csv(tmp_path / "curves.csv")
    assert len(curves) == 100 and curves["threshold"].iloc[1] == pytest.approx(0.01)


def test_cli_run_and_gmp_baseline(tmp_path):
    out = tmp_path / "gmp"
    r = run_cli("wsol.run", [*TINY, "pool=max", f"paths.output_dir={out}"])
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["pool"] == "max" and "gt_known_loc" in m
    assert "gt_known_loc" in r.stdout  # the end-of-run table
    assert not (tmp_path / "outputs").exists()


def test_cli_multirun_gap_and_gmp(tmp_path):
    r = run_cli(
        "wsol.run", ["-m", *TINY, "pool=avg,max", f"hydra.sweep.dir={tmp_path}/sweep"], cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr[-2000:]
    runs = sorted((tmp_path / "sweep").glob("*/metrics.json"))
    assert [json.loads(p.read_text())["pool"] for p in runs] == ["avg", "max"]


def test_unknown_choice_is_one_line_with_the_valid_ones(tmp_path):
    r = run_cli("wsol.run", ["model=googlenet_gapp", f"paths.output_dir={tmp_path}"])
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: unknown model 'googlenet_gapp'") and "googlenet_gap" in last
    assert not any(tmp_path.iterdir())


def test_val_thresholds_report_test_at_the_thresholds_chosen_on_val(tmp_path):
    cfg = compose_config(
        [*TINY, f"paths.output_dir={tmp_path}", "protocol=wsolevaluation", "val_thresholds=true"]
    )
    m = train_and_evaluate(cfg)
    curves = pd.read_csv(tmp_path / "curves.csv")
    for iou in (30, 50, 70):
        chosen = m[f"val_maxboxacc_v2_iou{iou}_threshold"]
        row = curves.loc[(curves["threshold"] - chosen).abs() < 1e-9]
        assert len(row) == 1
        # the test accuracy at the val-chosen threshold is read off the test curve there
        assert m[f"maxboxacc_v2_iou{iou}_at_val"] == pytest.approx(
            float(row[f"v2_iou{iou}"].iloc[0])
        )
        assert m[f"maxboxacc_v2_iou{iou}_at_val"] <= m[f"maxboxacc_v2_iou{iou}"]
