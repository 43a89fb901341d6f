"""The Python API (`wsol.metrics`, docs/API.md): its numbers equal the CLI's and the
suite's scoring step exactly, two DDP processes equal one, bad input is one line naming
it, the stable names load lazily, the console scripts start, and every example of
docs/API.md runs as written.

The CLI is ``python -m wsol.evaluate`` in score-map mode on a box and a mask metadata
folder written here (tests/api_data.py), run in this process: a fresh interpreter costs
~10 s of imports here, which the console-script test pays once for ``--help``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests import api_data as data
from tests.helpers import REPO, compose_config
from wsol.errors import WSOLError

API_MD = REPO / "docs" / "API.md"
BIN = Path(sys.executable).parent


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="0", WANDB_MODE="offline")


def _metric_keys(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k.startswith(("maxboxacc", "pxap"))}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    """The box and mask metadata folders with their score maps on disk, and the
    metrics.json ``python -m wsol.evaluate`` writes for them (its function run here on
    the config it composes, as tests/helpers.py's `evaluate_here` does)."""
    root = tmp_path_factory.mktemp("api")
    boxes = data.write_box_metadata(root / "boxes" / "my_subset")  # not a split's name
    masks_dir = root / "masks"
    masks = data.write_mask_metadata(root / "openimages" / "test", masks_dir)
    for rows, maps, folder in (
        (data.BOX_ROWS, data.box_scoremaps(), root / "box_maps"),
        (data.MASK_ROWS, data.mask_scoremaps(), root / "mask_maps"),
    ):
        for row, m in zip(rows, maps):
            (folder / f"{row[0]}.npy").parent.mkdir(parents=True, exist_ok=True)
            np.save(folder / f"{row[0]}.npy", m)
    from wsol.evaluate import evaluate

    cli = {}
    for name, args in (
        ("boxes", [f"scoremaps={root / 'box_maps'}", f"metadata={boxes}"]),
        ("masks", [f"scoremaps={root / 'mask_maps'}", f"metadata={masks}", f"masks={masks_dir}"]),
    ):
        args = [*args, "protocol=wsolevaluation", f"paths.output_dir={root / name}"]
        evaluate(compose_config(args, "evaluate"), args)
        cli[name] = json.loads((root / name / "metrics.json").read_text())
    return {
        "boxes": boxes,
        "masks": masks,
        "masks_dir": masks_dir,
        "box_maps": root / "box_maps",
        "mask_maps": root / "mask_maps",
        "cli": cli,
    }


# ---- equal to the CLI ---------------------------------------------------------------------
def test_score_equals_the_cli_on_folders_and_on_arrays(inputs):
    from wsol.metrics import score

    want_boxes, want_masks = (_metric_keys(inputs["cli"][k]) for k in ("boxes", "masks"))
    assert "maxboxacc_v2" in want_boxes and set(want_masks) == {"pxap"}
    assert score(inputs["box_maps"], inputs["boxes"]) == want_boxes  # equal, not close
    assert score(inputs["mask_maps"], inputs["masks"], inputs["masks_dir"]) == want_masks
    arrays = {r[0]: m for r, m in zip(data.BOX_ROWS, data.box_scoremaps())}
    assert score(arrays, inputs["boxes"], batch_size=2) == want_boxes
    tensors = {
        r[0]: torch.from_numpy(np.asarray(m)) for r, m in zip(data.MASK_ROWS, data.mask_scoremaps())
    }
    assert score(tensors, inputs["masks"], inputs["masks_dir"], batch_size=1) == want_masks
    # another setting changes the numbers: the settings reach the protocol
    coarse = score(arrays, inputs["boxes"], cam_curve_interval=0.25)
    assert coarse["maxboxacc_threshold"] in (0.0, 0.25, 0.5, 0.75)


def test_metric_classes_equal_the_cli_with_targets_given_by_hand(inputs):
    """The targets in the documented convention (suite boxes, (height, width), 0/1/255
    masks) give the numbers of the metadata reader's records."""
    from wsol.metrics import MaxBoxAcc, MaxBoxAccV2, PxAP, Targets, WSOLEvaluation

    want = _metric_keys(inputs["cli"]["boxes"])
    boxes, maps = data.box_targets(), data.box_scoremaps()
    every, v1, v2 = (
        WSOLEvaluation(scoremaps=True),
        MaxBoxAcc(scoremaps=True),
        MaxBoxAccV2(scoremaps=True),
    )
    for idx in ([0, 1], [2], [3, 4]):
        t = {"boxes": [boxes["boxes"][i] for i in idx], "sizes": boxes["sizes"][idx]}
        batch = [torch.from_numpy(np.asarray(maps[i], dtype=np.float64)) for i in idx]
        for m in (every, v1, v2):
            m.update(torch.stack(batch), t)
    assert every.compute() == want
    assert v1.compute() == {
        k: v for k, v in want.items() if k in ("maxboxacc", "maxboxacc_threshold")
    }
    assert v2.compute() == {k: v for k, v in want.items() if k.startswith("maxboxacc_v2")}
    pxap = PxAP(scoremaps=True)
    masks = data.mask_targets()
    pxap.update(
        np.stack(data.mask_scoremaps())[:, None], Targets(masks=masks["masks"])
    )  # (B, 1, H, W)
    assert pxap.compute() == _metric_keys(inputs["cli"]["masks"])


def test_raw_maps_are_made_into_score_maps_as_the_suite_makes_them(inputs):
    """Raw (B, J, h, w) maps: column 0, resized bicubically to 224 and min-max normalised
    (`make_scoremap`, what the export writes): the numbers of score() on those maps, in
    any batching, from tensors or arrays."""
    from wsol.metrics import MaxBoxAccV2, make_scoremap, score

    raw = data.raw_maps(len(data.BOX_ROWS))
    want = score(
        {r[0]: make_scoremap(raw[b, 0].numpy()) for b, r in enumerate(data.BOX_ROWS)},
        inputs["boxes"],
    )
    t = data.box_targets()
    whole, one_by_one = MaxBoxAccV2(), MaxBoxAccV2()
    whole.update(raw, t)
    for b in range(len(data.BOX_ROWS)):
        one_by_one.update(
            raw[b : b + 1, 0].numpy(), {"boxes": [t["boxes"][b]], "sizes": t["sizes"][b : b + 1]}
        )
    expected = {k: v for k, v in want.items() if k.startswith("maxboxacc_v2")}
    assert whole.compute() == one_by_one.compute() == expected
    # forward(): this batch's numbers, its counts added to the state as update() adds them
    head, tail = (
        {"boxes": t["boxes"][s], "sizes": t["sizes"][s]} for s in (slice(2), slice(2, None))
    )
    alone = MaxBoxAccV2()
    alone.update(raw[:2], head)
    fwd = MaxBoxAccV2()
    assert fwd(raw[:2], head) == alone.compute() != expected
    fwd(raw[2:], tail)
    assert fwd.compute() == expected


# ---- equal to the suite's scoring step (CAM 2016) -----------------------------------------
def _suite_batch(t: dict) -> dict:
    """The targets as the readers' records batched (`wsol.data.record.collate`)."""
    from wsol.data.record import collate

    return collate(
        [
            {"label": int(y), "boxes": b, "size": tuple(s), "mask": None, "id": i, "index": k}
            for k, (y, b, s, i) in enumerate(zip(t["labels"], t["boxes"], t["sizes"], t["ids"]))
        ]
    )


def test_cam2016_metrics_equal_the_suites_scoring_step():
    from wsol.evaluation.scoring import is_guess, score_batch
    from wsol.metrics import Cam2016Error, Cam2016OfficialError
    from wsol.protocols import Cam2016Metric, Cam2016OfficialMetric

    t = data.box_targets()
    raw, classes = data.raw_maps(len(data.BOX_ROWS)), data.guess_classes(t["labels"])
    suite = {"cam2016": Cam2016Metric(), "cam2016_official": Cam2016OfficialMetric()}
    score_batch(suite, raw, torch.from_numpy(classes), _suite_batch(t))
    api = {"cam2016": Cam2016Error(), "cam2016_official": Cam2016OfficialError()}
    for m in api.values():
        m.update(raw[:3], {k: v[:3] for k, v in t.items()}, classes=classes[:3])
        m.update(raw[3:], {k: v[3:] for k, v in t.items()}, classes=torch.from_numpy(classes[3:]))
    for name in api:
        got, want = api[name].compute(), suite[name].compute()
        assert got == want and any(is_guess(k) for k in got), name
    # no classes: column 0 scored as a baseline is, without the guesses' errors
    labels = torch.from_numpy(t["labels"])
    base = {"cam2016": Cam2016Metric(), "cam2016_official": Cam2016OfficialMetric()}
    score_batch(
        base, raw[:, [0, 0]], torch.stack([labels, labels], 1), _suite_batch(t), guesses=False
    )
    for name, cls in (("cam2016", Cam2016Error), ("cam2016_official", Cam2016OfficialError)):
        gt_only = cls()
        gt_only.update(raw[:, 0], t)
        want = {k: v for k, v in base[name].compute().items() if not is_guess(k)}
        assert gt_only.compute() == want and want, name
        # one batch without classes: the guesses' errors would count it wrong, so none
        mixed = cls()
        mixed.update(raw[:2], {k: v[:2] for k, v in t.items()}, classes=classes[:2])
        mixed.update(raw[2:], {k: v[2:] for k, v in t.items()})
        assert not any(is_guess(k) for k in mixed.compute()), name


# ---- DDP: two processes equal one ---------------------------------------------------------
def test_two_gloo_processes_compute_what_one_does(tmp_path):
    """Every metric on uneven shares (3 and 2 box images, 2 and 1 mask images, batches
    of 2 and 1): `compute()` after torchmetrics' all-reduce of the integer states equals
    one process's on every rank, key for key, exactly. The processes are forked, so
    they inherit the imported modules (spawned ones spend ~10 s each importing torch and
    the protocols again); their process group and all-reduce are DDP's own (gloo)."""
    import torch.multiprocessing as mp

    ctx = mp.start_processes(
        data.ddp_worker,
        args=(2, str(tmp_path / "store"), str(tmp_path)),
        nprocs=2,
        join=False,
        start_method="fork",
    )
    deadline = time.monotonic() + 240
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("the DDP processes did not finish in 240 s")
    one = data.api_metrics(0, 1, batch_size=len(data.BOX_ROWS))
    assert all(one.values()), one
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got == one, rank  # JSON round-trips floats exactly


# ---- bad input: one line naming it --------------------------------------------------------
_MAPS = torch.rand(2, 7, 7, generator=torch.Generator().manual_seed(0))
_BOX = [np.array([[0.0, 0.0, 5.0, 5.0]])] * 2
_OK = {"boxes": _BOX, "sizes": [(10, 10), (10, 10)]}
# (metric, maps, targets, words of its message)
BAD_UPDATES = [
    ("MaxBoxAccV2", _MAPS, {"boxes": _BOX}, "targets lack 'sizes'"),
    ("MaxBoxAcc", _MAPS, {"sizes": _OK["sizes"]}, "targets lack 'boxes'"),
    ("PxAP", _MAPS, _OK, "targets lack 'masks'"),
    ("Cam2016Error", _MAPS, _OK, "targets lack 'labels'"),
    ("WSOLEvaluation", _MAPS, {"labels": [0, 1]}, "lack 'boxes' (with 'sizes') and 'masks'"),
    ("MaxBoxAccV2", _MAPS, {**_OK, "box": _BOX}, "unknown targets key(s) 'box'"),
    ("MaxBoxAccV2", _MAPS, [_BOX], "targets must be a dict"),
    ("MaxBoxAccV2", _MAPS.numpy().tolist(), _OK, "maps must be a torch tensor or a numpy array"),
    ("MaxBoxAccV2", torch.rand(2, 7), _OK, "got shape (2, 7)"),
    ("MaxBoxAccV2", (_MAPS * 9).long(), _OK, "maps must be floating point, got torch.int64"),
    ("MaxBoxAccV2", _MAPS, {**_OK, "sizes": [(10, 10)]}, "targets['sizes'] has 1 entries for 2 maps"),
    ("MaxBoxAccV2", _MAPS, {**_OK, "sizes": [(10, 10), (0, 10)]}, "of image 1 is not positive"),
    ("MaxBoxAccV2", _MAPS, {**_OK, "sizes": [10, 10]}, "must be (B, 2) whole numbers"),
    ("MaxBoxAccV2", _MAPS, {**_OK, "boxes": [np.zeros(4)] * 2}, "must be (N, 4) [x0, y0, x1, y1], got shape (4,)"),
    ("MaxBoxAccV2", _MAPS, {**_OK, "boxes": [_BOX[0], np.array([[5.0, 0, 5, 5]])]}, "box [5.0, 0.0, 5.0, 5.0] of image 1 is empty"),
    ("MaxBoxAccV2", _MAPS, {**_OK, "boxes": [_BOX[0], np.array([[0, 0, 11.0, 5]])], "ids": ["a", "b"]},
     "of image 'b' reaches outside its image of (height, width) (10, 10)"),
    ("MaxBoxAccV2", _MAPS, {**_OK, "boxes": [_BOX[0], np.array([[0, np.nan, 5, 5]])]}, "empty or not finite"),
    ("PxAP", _MAPS, {"masks": [np.full((4, 4), 2, np.uint8), None]}, "got [2]"),
    ("PxAP", _MAPS, {"masks": [np.full((4, 4), 0.5), None]}, "got float64 values"),
    ("PxAP", _MAPS, {"masks": [np.zeros(4, np.uint8), None]}, "must be 2-D"),
    ("PxAP", _MAPS, {"masks": [None]}, "targets['masks'] has 1 entries for 2 maps"),
    ("Cam2016Error", _MAPS, {**_OK, "labels": [0.5, 1]}, "targets['labels'] must be (B,) whole numbers"),
    ("MaxBoxAccV2", _MAPS, {**_OK, "boxes": _BOX[:1] * 3}, "targets['boxes'] has 3 entries for 2 maps"),
    ("MaxBoxAccV2", _MAPS, {**_OK, "boxes": torch.zeros(2, 4)}, "one (N_i, 4) array per image, got shape (2, 4)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("metric", "maps", "targets", "words"), BAD_UPDATES, ids=[c[3][:40] for c in BAD_UPDATES]
)
def test_bad_update_is_one_line_naming_the_value(metric, maps, targets, words):
    import wsol.metrics

    with pytest.raises(WSOLError) as e:
        getattr(wsol.metrics, metric)().update(maps, targets)
    msg = str(e.value)
    assert msg.startswith(f"{metric}.update: ") and words in msg and "\n" not in msg, msg


def test_bad_scoremaps_classes_and_settings_name_the_value():
    from wsol.metrics import Cam2016Error, MaxBoxAccV2

    t = {
        "boxes": [np.array([[0.0, 0.0, 5.0, 5.0]])] * 2,
        "sizes": [(10, 10)] * 2,
        "ids": ["a", "b"],
    }
    maps = np.stack([data.blob(50, 50, 9, 9), 2 * data.blob(50, 50, 9, 9)])
    with pytest.raises(WSOLError, match=r"score map of b: score map values must lie in \[0, 1\]"):
        MaxBoxAccV2(scoremaps=True).update(maps, t)
    with pytest.raises(WSOLError, match=r"must have shape \(224, 224\), got \(7, 7\)"):
        MaxBoxAccV2(scoremaps=True).update(np.zeros((2, 7, 7)), t)
    t["labels"] = [0, 1]
    cam = Cam2016Error()
    for classes, words in (
        ([[1, 0], [1, 0]], "classes[:, 0] must be the labels"),
        ([[0, 1, 2], [1, 0, 2]], "classes has 3 columns but maps only 2"),
        ([0, 1], "classes must be (B, J) whole numbers for 2 maps"),
    ):
        with pytest.raises(WSOLError) as e:
            cam.update(torch.rand(2, 2, 7, 7), t, classes=classes)
        assert words in str(e.value), str(e.value)
    with pytest.raises(WSOLError, match=r"protocol.cam_curve_interval=1.5: must be in \(0, 1\)"):
        MaxBoxAccV2(cam_curve_interval=1.5)
    with pytest.raises(WSOLError, match=r"protocol.cam_threshold=0: must be in \(0, 1\)"):
        Cam2016Error(threshold=0)
    with pytest.raises(WSOLError, match=r"scoremaps='yes': must be True or False"):
        MaxBoxAccV2(scoremaps="yes")


def test_bad_score_input_names_the_value(inputs, tmp_path):
    from wsol.metrics import score

    arrays = {r[0]: m for r, m in zip(data.BOX_ROWS, data.box_scoremaps())}
    missing = dict(arrays)
    del missing[data.BOX_ROWS[3][0]]
    cases = [
        (missing, {}, f"maps has no score map for image {data.BOX_ROWS[3][0]!r}"),
        ({**arrays, data.BOX_ROWS[1][0]: np.ones((224, 224), np.int64)}, {},
         f"score map of image {data.BOX_ROWS[1][0]!r}: a score map must have a floating dtype"),
        ([arrays], {}, "maps must be a folder of <image_id>.npy or a dict"),
        (tmp_path / "nowhere", {}, f"maps={tmp_path / 'nowhere'} does not exist"),
        (arrays, {"batch_size": 0}, "batch_size=0: must be an integer >= 1"),
        (arrays, {"iou_thresholds": [30, 130]}, "protocol.iou_thresholds="),
    ]  # fmt: skip
    for maps, kwargs, words in cases:
        with pytest.raises(WSOLError) as e:
            score(maps, inputs["boxes"], **kwargs)
        assert words in str(e.value) and "\n" not in str(e.value), str(e.value)
    with pytest.raises(WSOLError, match="lists mask PNGs: set masks=DIR"):
        score(tmp_path, inputs["masks"])


# ---- the stable names and the console scripts ---------------------------------------------
def test_import_wsol_is_cheap_and_every_stable_name_loads():
    code = (
        "import sys, wsol\n"
        "assert not {'torch', 'pytorch_lightning', 'torchmetrics'} & set(sys.modules), 'eager'\n"
        "assert set(wsol.__all__) <= set(dir(wsol))\n"
        "try:\n    wsol.nothing\nexcept AttributeError as e:\n    print(e)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "module 'wsol' has no attribute 'nothing'" in r.stdout
    import wsol
    import wsol.metrics

    names = {n: getattr(wsol, n) for n in wsol.__all__}
    assert names["metrics"] is wsol.metrics and names["WSOLError"] is WSOLError
    assert all(names[n] is getattr(wsol.metrics, n) for n in wsol.metrics.__all__)
    assert set(wsol.__all__) - set(wsol.metrics.__all__) == {"metrics", "WSOLError", "__version__"}


def test_console_scripts_start():
    scripts = {
        "wsol-run": "Configuration groups",
        "wsol-evaluate": "scoremaps=DIR",
        "wsol-study": "usage:",
    }
    if not all((BIN / s).is_file() for s in scripts):
        pytest.skip(f"the console scripts are not installed in {BIN} (pip install -e .)")
    procs = {
        s: subprocess.Popen([str(BIN / s), "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
        for s in scripts
    }  # fmt: skip
    for s, p in procs.items():
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0 and scripts[s] in out, f"{s}: {out[-2000:]}"


# ---- docs/API.md: every example runs as written -------------------------------------------
def api_examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", API_MD.read_text(), flags=re.S)


def test_api_md_has_the_three_examples():
    blocks = api_examples()
    assert len(blocks) == 3
    assert "LightningModule" in blocks[0] and "torchcam" in blocks[1] and "score(" in blocks[2]


@pytest.mark.parametrize("k", range(3), ids=["lightning", "torchcam", "arrays"])
def test_api_md_example_runs(k, tmp_path, monkeypatch, capsys):
    """Each block in a fresh namespace, in an empty working folder; each ends by printing
    ``metrics``, a dict of the suite's percentages."""
    monkeypatch.chdir(tmp_path)
    code = api_examples()[k]
    namespace: dict = {"__name__": f"api_example_{k}"}
    exec(compile(code, f"{API_MD}:python block {k + 1}", "exec"), namespace)
    metrics = namespace["metrics"]
    assert metrics and all(0 <= float(v) <= 100 for v in metrics.values()), metrics
    assert any("maxboxacc_v2" in key for key in metrics), metrics
    assert str(next(iter(metrics))) in capsys.readouterr().out


@pytest.mark.slow
def test_a_users_lightning_module_under_ddp_logs_what_one_process_does(tmp_path):
    """Lightning's own DDP (``strategy="ddp"``, two CPU processes, gloo) around a user's
    LightningModule that updates `WSOLEvaluation` and `Cam2016Error` in its validation
    step: both ranks compute the numbers of one process (tests/api_data.py)."""
    results = {}
    for devices in (1, 2):
        r = subprocess.run(
            [sys.executable, "-m", "tests.api_data", str(devices), str(tmp_path)],
            cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr[-3000:]
        for rank in range(devices):
            results[devices, rank] = json.loads(
                (tmp_path / f"lightning_{devices}_rank{rank}.json").read_text()
            )
    one = results[1, 0]
    assert one["every"]["pxap"] >= 0 and "loc_top1_err" in one["cam2016"]
    assert results[2, 0] == one and results[2, 1] == one
