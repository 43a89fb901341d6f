"""Every protocol setting of conf/protocol/*.yaml is range-checked when its protocol is
constructed: an out-of-range value is a `WSOLError` of one line that names the setting
as the override writes it (``protocol.cam_threshold=1.5: must be in (0, 1)``), whichever
protocols are selected, and the command line stops before it writes anything. Valid
edge values still work."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import TINY, compose_config
from tests.protocols.helpers import make_batch
from wsol.cli import guard
from wsol.errors import WSOLError
from wsol.job import selected_protocols
from wsol.protocols import Cam2016Metric, Cam2016OfficialMetric, WSOLEvaluationMetric

CAM, OFFICIAL, WSOLEVAL = Cam2016Metric, Cam2016OfficialMetric, WSOLEvaluationMetric

#: (protocol, constructor argument, bad value, the setting's key in conf/protocol/*.yaml)
BAD = [
    (CAM, "threshold", 1.5, "cam_threshold"),
    (CAM, "threshold", 1.0, "cam_threshold"),
    (CAM, "threshold", 0.0, "cam_threshold"),
    (CAM, "threshold", -0.2, "cam_threshold"),
    (CAM, "threshold", float("nan"), "cam_threshold"),
    (CAM, "threshold", "high", "cam_threshold"),
    (CAM, "connectivity", 0, "connectivity"),
    (CAM, "connectivity", 3, "connectivity"),
    (CAM, "connectivity", 1.5, "connectivity"),
    (CAM, "connectivity", True, "connectivity"),
    (CAM, "iou_threshold", 0.0, "loc_iou"),
    (CAM, "iou_threshold", 1.01, "loc_iou"),
    (CAM, "iou_threshold", 50, "loc_iou"),
    (OFFICIAL, "thresholds", [20, 100], "official_thresholds"),
    (OFFICIAL, "thresholds", [20, 100, 110, 120], "official_thresholds"),
    (OFFICIAL, "thresholds", [20, 100, 256], "official_thresholds"),
    (OFFICIAL, "thresholds", [-1, 100, 110], "official_thresholds"),
    (OFFICIAL, "thresholds", [0.1, 0.4, 0.45], "official_thresholds"),
    (OFFICIAL, "thresholds", 20, "official_thresholds"),
    (OFFICIAL, "dt_keep", -1, "official_dt_keep"),
    (OFFICIAL, "dt_keep", 255, "official_dt_keep"),
    (OFFICIAL, "dt_keep", 10.5, "official_dt_keep"),
    (OFFICIAL, "iou_threshold", 0.0, "loc_iou"),
    (OFFICIAL, "iou_threshold", 1.5, "loc_iou"),
    (WSOLEVAL, "cam_curve_interval", 0.0, "cam_curve_interval"),
    (WSOLEVAL, "cam_curve_interval", 1.0, "cam_curve_interval"),
    (WSOLEVAL, "cam_curve_interval", -0.01, "cam_curve_interval"),
    (WSOLEVAL, "iou_thresholds", [], "iou_thresholds"),
    (WSOLEVAL, "iou_thresholds", [0, 50], "iou_thresholds"),
    (WSOLEVAL, "iou_thresholds", [30, 150], "iou_thresholds"),
    (WSOLEVAL, "iou_thresholds", [50, 50], "iou_thresholds"),
    (WSOLEVAL, "iou_thresholds", list(range(1, 63)), "iou_thresholds"),
    (WSOLEVAL, "iou_thresholds", 50, "iou_thresholds"),
    (WSOLEVAL, "resize", 0, "resize_length"),
    (WSOLEVAL, "resize", -224, "resize_length"),
    (WSOLEVAL, "resize", 22.5, "resize_length"),
]


def _id(case) -> str:
    cls, arg, value, _ = case
    return f"{cls.name}-{arg}={value}"


def _override(value) -> str:
    if isinstance(value, list):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


@pytest.mark.parametrize("case", BAD, ids=[_id(c) for c in BAD])
def test_out_of_range_setting_is_one_line_naming_it(case):
    cls, arg, value, key = case
    with pytest.raises(WSOLError) as e:
        cls(**{arg: value})
    message = str(e.value)
    assert message.startswith(f"protocol.{key}="), message
    assert ": must be " in message and "\n" not in message


@pytest.mark.parametrize("case", BAD, ids=[_id(c) for c in BAD])
def test_the_named_key_is_the_override_of_the_composed_config(case, capsys):
    """The same values as overrides of the composed config (all three protocols
    selected): building the protocols as the entry points do (`wsol.job.selected_protocols`
    under `wsol.cli.guard`) ends in one line that starts with the override itself."""
    _, _, value, key = case
    override = f"protocol.{key}={_override(value)}"
    cfg = compose_config(["protocol=[cam2016,cam2016_official,wsolevaluation]", override])
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        guard(selected_protocols, cfg)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {override}: must be ") and err.count("\n") == 1, err


def test_messages_say_the_rule():
    cases = [
        (lambda: CAM(threshold=1.5), "protocol.cam_threshold=1.5: must be in (0, 1)"),
        (lambda: CAM(iou_threshold=2), "protocol.loc_iou=2: must be in (0, 1]"),
        (
            lambda: CAM(connectivity=4),
            "protocol.connectivity=4: must be 1 (4-neighbours) or 2 (8-neighbours)",
        ),
        (
            lambda: OFFICIAL(thresholds=(20, 100, 300)),
            "protocol.official_thresholds=[20,100,300]: must be 3 integers in 0..255",
        ),
        (
            lambda: OFFICIAL(dt_keep=255),
            "protocol.official_dt_keep=255: must be an integer in 0..254",
        ),
        (
            lambda: WSOLEVAL(iou_thresholds=[30, 500]),
            "protocol.iou_thresholds=[30,500]: must be a list of 1 to 61 distinct "
            "percentages in (0, 100]",
        ),
        (lambda: WSOLEVAL(resize=0), "protocol.resize_length=0: must be a positive integer"),
    ]
    for make, message in cases:
        with pytest.raises(WSOLError) as e:
            make()
        assert str(e.value) == message


def test_valid_edge_values_still_work():
    cam = CAM(threshold=0.999, connectivity=1, iou_threshold=1.0)
    assert (cam.threshold, cam.connectivity, cam.iou_threshold) == (0.999, 1, 1.0)
    assert CAM(threshold=1e-6, connectivity=2.0).connectivity == 2
    off = OFFICIAL(thresholds=[1, 2, 254], dt_keep=0, iou_threshold=1.0)
    assert (off.thresholds, off.dt_keep, off.iou_threshold) == ((1, 2, 254), 0, 1.0)
    assert OFFICIAL(dt_keep=254).dt_keep == 254
    with pytest.warns(UserWarning, match="30, 90, 150"):  # in range, ignored by dt_box
        assert OFFICIAL(thresholds=[0, 100, 255]).thresholds == (30, 90, 150)
    ev = WSOLEVAL(cam_curve_interval=0.999, iou_thresholds=[100], resize=1)
    assert (len(ev.thresholds), ev.iou_thresholds, ev.resize) == (
        2,
        (100.0,),
        1,
    )  # thresholds 0, 0.999
    # the most IoU thresholds a sweep takes (61 here, plus MaxBoxAcc's 50), and IoU 100:
    # scoring works and an identical box is right at every one of them
    many = [t + 0.5 for t in range(39, 99)] + [100]
    ev = WSOLEVAL(cam_curve_interval=0.25, iou_thresholds=many, resize=8)
    m = np.zeros((1, 8, 8))
    m[0, 2:5, 3:7] = 1.0
    # the region's wsolevaluation box is [x, y, x + w, y + h] = [3, 2, 7, 5]: the suite
    # box [3, 2, 8, 6] (inclusive [3, 2, 7, 5])
    ev.update(ev.score_scoremaps(m, make_batch([0], [[[3, 2, 8, 6]]], [[8, 8]])))
    out = ev.compute()
    assert out["maxboxacc_v2_iou100"] == 100.0 and out["maxboxacc"] == 100.0
    assert out["maxboxacc_v2"] == 100.0


def test_evaluate_stops_on_a_bad_setting_before_writing(cli, tiny_ckpt, tmp_path):
    """``python -m wsol.evaluate ckpt=... protocol=cam2016 protocol.cam_threshold=1.5``:
    exit code 2, the one-line error, and an earlier metrics.json left as it was."""
    out = tmp_path / "out"
    out.mkdir()
    sentinel = b'{"sentinel": "an earlier run"}\n'
    (out / "metrics.json").write_bytes(sentinel)
    data = [a for a in TINY if not a.startswith("model=")]  # the checkpoint says the model
    args = [
        f"ckpt={tiny_ckpt}",
        *data,
        "data.dataset.num_classes=3",
        "protocol=cam2016",
        "protocol.cam_threshold=1.5",
        f"paths.output_dir={out}",
    ]
    r = cli.run("wsol.evaluate", args, cwd=tmp_path, timeout=240)
    assert r.returncode == 2, r.stderr[-3000:]
    assert r.last_line == "error: protocol.cam_threshold=1.5: must be in (0, 1)", r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    assert (out / "metrics.json").read_bytes() == sentinel
    # Hydra's log of the attempt is all it adds
    assert all(p.name == "metrics.json" or p.suffix == ".log" for p in out.iterdir())
