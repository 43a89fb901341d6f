"""WSOLEvaluationMetric: data-set-level threshold choice, PxAP by hand, score maps,
annotations, checks, operating points, curves."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from wsol.errors import WSOLError
from wsol.protocols import WSOLEvaluationMetric, check_scoremap
from wsol.protocols.box_sweep import threshold_list
from wsol.protocols.reference import reference_box_correct, reference_pxap_histograms
from wsol.protocols.wsolevaluation import (
    make_scoremap,
    normalize_scoremap,
    resize_boxes,
    resize_mask,
)

from .helpers import cam_map, make_batch


def nested_map() -> np.ndarray:
    """Three nested squares: S1 rows/cols 32..191 at 0.32 (uint8 81), S2 72..151 at
    0.62 (158), S3 92..131 at 1.0 (255). Boxes (x1 = last + 1): S1 for t <= 0.31,
    S2 for 0.32 <= t <= 0.61, S3 for t >= 0.62."""
    m = np.zeros((224, 224))
    m[32:192, 32:192] = 0.32
    m[72:152, 72:152] = 0.62
    m[92:132, 92:132] = 1.0
    return m


S2_GT = [72, 72, 153, 153]  # suite box whose inclusive form is S2's box [72, 72, 152, 152]
S3_GT = [92, 92, 133, 133]  # S3's box
# S3's box moved 14 columns right: IoU 1107 / 2255 = 0.49 with S3's box, 0.256 with S2's
NEAR_S3_GT = [106, 92, 147, 133]


def _score(metric, gts):
    maps = np.stack([nested_map()] * len(gts))
    batch = make_batch([0] * len(gts), [[g] for g in gts], [[224, 224]] * len(gts))
    return metric.score_scoremaps(maps, batch)


def test_the_best_threshold_is_chosen_per_iou_over_the_data_set():
    metric = WSOLEvaluationMetric(cam_curve_interval=0.01)
    metric.update(_score(metric, [S2_GT, S3_GT, NEAR_S3_GT]))
    out = metric.compute()
    # IoU 30: 1/3 right on [0.32, 0.61], 2/3 on [0.62, 0.99] -> 0.62
    assert out["maxboxacc_v2_iou30"] == pytest.approx(200 / 3)
    assert out["maxboxacc_v2_iou30_threshold"] == pytest.approx(0.62)
    # IoU 50 and 70: 1/3 on both ranges -> the first, 0.32 (per image 2/3 would be right)
    for key in ("maxboxacc_v2_iou50", "maxboxacc_v2_iou70", "maxboxacc"):
        assert out[key] == pytest.approx(100 / 3)
        assert out[f"{key}_threshold"] == pytest.approx(0.32)
    assert out["maxboxacc_v2"] == pytest.approx((200 / 3 + 100 / 3 + 100 / 3) / 3)
    assert "pxap" not in out


def test_operating_thresholds_from_val():
    val = WSOLEvaluationMetric()
    val.update(_score(val, [S2_GT, S3_GT, NEAR_S3_GT]))
    chosen = val.chosen_thresholds()
    assert chosen["maxboxacc_v2_iou30"] == pytest.approx(0.62)
    assert chosen["maxboxacc_v2_iou50"] == pytest.approx(0.32)
    test = WSOLEvaluationMetric()
    test.operating_thresholds = chosen
    test.update(_score(test, [S2_GT, S2_GT, S3_GT]))
    out = test.compute()
    assert out["maxboxacc_v2_iou30_at_val"] == pytest.approx(100 / 3)  # at 0.62: S3 only
    assert out["maxboxacc_v2_iou50_at_val"] == pytest.approx(200 / 3)  # at 0.32: both S2
    assert out["maxboxacc_v2_iou70_at_val"] == pytest.approx(200 / 3)
    assert out["maxboxacc_at_val"] == pytest.approx(200 / 3)
    assert out["maxboxacc_v2_at_val"] == pytest.approx((100 / 3 + 400 / 3) / 3)
    assert out["maxboxacc_v2_iou30"] == pytest.approx(200 / 3)  # its own best
    test.operating_thresholds = {"maxboxacc": 0.123456}
    with pytest.raises(WSOLError, match="grid"):
        test.compute()


def test_pxap_by_hand_with_ignore_pixels():
    # interval 0.25: edges [0, .25, .5, .75, 1, 2, 3]; 3x3 score maps
    metric = WSOLEvaluationMetric(cam_curve_interval=0.25, resize=3)
    s = np.array([[0.9, 0.6, 0.3], [0.8, 1.0, 0.5], [0.5, 0.5, 0.5]])
    mask = np.array([[1, 1, 0], [0, 255, 255], [255, 255, 255]], dtype=np.uint8)
    batch = make_batch([0], [[[0, 0, 2, 2]]], [[3, 3]], masks=[mask])
    r = metric.score_scoremaps(s[None], batch)
    assert r["hist_true"].tolist() == [0, 0, 1, 1, 0, 0]
    assert r["hist_false"].tolist() == [0, 1, 0, 1, 0, 0]
    metric.update(r)
    # >= 0.75: 1 TP (0.9), 1 FP (0.8): P 1/2, R 1/2; >= 0.5: 2 TP, 1 FP: P 2/3, R 1
    assert metric.compute()["pxap"] == pytest.approx(100 * (0.5 * 0.5 + 2 / 3 * 0.5))
    curves = metric.curves()
    assert list(curves["threshold"]) == [0.0, 0.25, 0.5, 0.75]
    assert curves["pxap_precision"].tolist() == pytest.approx([0.5, 0.5, 2 / 3, 0.5])
    assert curves["pxap_recall"].tolist() == pytest.approx([1.0, 1.0, 1.0, 0.5])
    # had the ignore pixels counted as background, the answer would differ
    mask2 = np.where(mask == 255, 0, mask).astype(np.uint8)
    other = WSOLEvaluationMetric(cam_curve_interval=0.25, resize=3)
    other.update(
        other.score_scoremaps(s[None], make_batch([0], [[[0, 0, 2, 2]]], [[3, 3]], masks=[mask2]))
    )
    assert other.compute()["pxap"] != pytest.approx(metric.compute()["pxap"])


def test_pxap_state_equals_reference_histograms():
    rng = np.random.default_rng(0)
    metric = WSOLEvaluationMetric(cam_curve_interval=0.001)
    maps = np.stack([cam_map(rng) for _ in range(3)])
    masks = [rng.choice(np.array([0, 1, 255], dtype=np.uint8), (100, 150)) for _ in range(3)]
    batch = make_batch([0, 0, 0], [[[0, 0, 10, 10]]] * 3, [[100, 150]] * 3, masks=masks)
    metric.update(metric.score_scoremaps(maps, batch))
    want_t = np.zeros(1002, dtype=np.int64)
    want_f = np.zeros(1002, dtype=np.int64)
    for s, m in zip(maps, masks):
        m224 = cv2.resize(m, (224, 224), interpolation=cv2.INTER_NEAREST)
        t, f = reference_pxap_histograms(s, m224, threshold_list(0.001))
        want_t += t
        want_f += f
    np.testing.assert_array_equal(metric.hist_true.numpy(), want_t)
    np.testing.assert_array_equal(metric.hist_false.numpy(), want_f)


def test_scoremaps_as_wsolevaluation_makes_them():
    rng = np.random.default_rng(1)
    cam = rng.standard_normal((7, 7)).astype(np.float32)
    want = cv2.resize(cam.astype(np.float64), (224, 224), interpolation=cv2.INTER_CUBIC)
    want = (want - want.min()) / (want - want.min()).max()
    got = make_scoremap(cam)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)
    assert got.min() == 0 and got.max() == 1
    assert (normalize_scoremap(np.full((3, 3), 2.0)) == 0).all()
    nan = np.ones((3, 3))
    nan[1, 1] = np.nan
    assert (normalize_scoremap(nan) == 0).all()
    # score() uses column 0 only, and equals scoring its score map
    maps = torch.as_tensor(rng.standard_normal((2, 3, 7, 7)).astype(np.float32))
    batch = make_batch([1, 2], [[[10, 10, 120, 90]], [[0, 0, 60, 60]]], [[100, 150], [80, 80]])
    metric = WSOLEvaluationMetric()
    r = metric.score(maps, torch.tensor([[1, 0, 3], [2, 2, 1]]), batch)
    r2 = metric.score_scoremaps(np.stack([make_scoremap(c) for c in maps[:, 0].numpy()]), batch)
    np.testing.assert_array_equal(r["v2"], r2["v2"])
    np.testing.assert_array_equal(r["v1"], r2["v1"])


def test_gt_boxes_are_resized_as_resize_bbox():
    # suite [10, 20, 111, 221] in a 300 (h) x 400 (w) image -> inclusive [10, 20, 110, 220]
    # -> int(10*224/400)=5, int(20*224/300)=14, int(110*224/400)=61, int(220*224/300)=164
    got = resize_boxes(np.array([[10, 20, 111, 221]]), 300, 400)
    assert got.tolist() == [[5, 14, 61, 164]]
    # and the metric scores against exactly those boxes
    rng = np.random.default_rng(2)
    s = cam_map(rng)
    metric = WSOLEvaluationMetric()
    r = metric.score_scoremaps(s[None], make_batch([0], [[[10, 20, 111, 221]]], [[300, 400]]))
    want = reference_box_correct(s, got, metric.thresholds, [0.3, 0.5, 0.7], True)
    np.testing.assert_array_equal(r["v2"][0], want)


def test_masks_are_resized_nearest():
    m = np.zeros((2, 4), dtype=np.uint8)
    m[:, 2:] = 1
    m[0, 3] = 255
    r = resize_mask(m, 4)
    assert r.tolist() == [[0, 0, 1, 255], [0, 0, 1, 255], [0, 0, 1, 1], [0, 0, 1, 1]]


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((224, 224), dtype=np.uint8), "floating"),
        (np.zeros((224, 224, 1)), "2-D"),
        (np.zeros((100, 224)), "shape"),
        (np.full((224, 224), np.nan), "NaN"),
        (np.full((224, 224), np.inf), "NaN or inf"),
        (np.full((224, 224), 1.5), r"\[0, 1\]"),
        (np.full((224, 224), -0.1), r"\[0, 1\]"),
    ],
)
def test_check_scoremap_errors_name_the_source(array, message):
    with pytest.raises(WSOLError, match=message) as e:
        check_scoremap(array, "maps/img7.npy")
    assert "maps/img7.npy" in str(e.value)
    assert "\n" not in str(e.value)


def test_check_scoremap_accepts_float32_and_score_scoremaps_checks():
    a = check_scoremap(np.zeros((224, 224), dtype=np.float32), "x")
    assert a.dtype == np.float64
    metric = WSOLEvaluationMetric()
    bad = np.full((1, 224, 224), 2.0)
    with pytest.raises(WSOLError, match="img0"):
        metric.score_scoremaps(bad, make_batch([0], [[[0, 0, 5, 5]]], [[10, 10]]))


def test_curves_and_empty_metric():
    metric = WSOLEvaluationMetric()
    assert metric.curves() is None
    metric.update(_score(metric, [S2_GT]))
    df = metric.curves()
    assert list(df.columns) == ["threshold", "maxboxacc", "v2_iou30", "v2_iou50", "v2_iou70"]
    assert len(df) == 100
    row = df[np.isclose(df["threshold"], 0.4)].iloc[0]
    assert row["v2_iou70"] == 100.0 and row["maxboxacc"] == 100.0
    assert df[np.isclose(df["threshold"], 0.7)].iloc[0]["v2_iou30"] == 0.0


def test_rows():
    metric = WSOLEvaluationMetric()
    rows = metric.rows(_score(metric, [S2_GT, S3_GT]))
    assert rows[0]["wsolevaluation_v2_iou50_n_correct"] == 30  # thresholds 0.32 .. 0.61
    assert rows[1]["wsolevaluation_v2_iou50_n_correct"] == 38  # 0.62 .. 0.99
    assert all(k.startswith("wsolevaluation_") for k in rows[1])


def test_score_is_pure():
    metric = WSOLEvaluationMetric()
    _score(metric, [S2_GT])
    assert int(metric.box_count) == 0 and int(metric.v2_correct.sum()) == 0
