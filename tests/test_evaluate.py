"""`python -m wsol.evaluate`: score maps on disk, checkpoints, export, baselines.

Expected numbers come from the plain per-threshold loop of wsolevaluation
(`wsol.protocols.reference`) on maps and annotations the tests write, with the
annotations resized the wsolevaluation way here (``int(x * 224 / width)``)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import SHARED_DATA
from tests.helpers import (
    BOX_ROWS,
    TINY,
    compose_config,
    evaluate_here,
    run_cli,
    write_box_metadata,
    write_lines,
)
from wsol.protocols.reference import (
    reference_box_correct,
    reference_pxap,
    reference_pxap_histograms,
)

THRESHOLDS = np.arange(0, 1, 0.01)
BOX_KEYS = (
    "maxboxacc",
    "maxboxacc_v2",
    "maxboxacc_v2_iou30",
    "maxboxacc_v2_iou50",
    "maxboxacc_v2_iou70",
)
CUB_TEST = SHARED_DATA / "wsolevaluation-metadata-CUB" / "test"


# ---- writing metadata and maps -----------------------------------------------------------
def save_map(folder: Path, image_id: str, array: np.ndarray) -> Path:
    path = folder / f"{image_id}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array)
    return path


def resize_224(box, width: int, height: int) -> list[int]:
    x0, y0, x1, y1 = box
    return [
        int(x0 * 224 / width),
        int(y0 * 224 / height),
        int(x1 * 224 / width),
        int(y1 * 224 / height),
    ]


def blob(cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    """A separable Gaussian on the 224 grid, maximum 1."""
    u = np.arange(224) + 0.5
    gx = np.exp(-((u - cx) ** 2) / (2 * sx**2))
    gy = np.exp(-((u - cy) ** 2) / (2 * sy**2))
    m = np.outer(gy, gx)
    return m / m.max()


def reference_box_metrics(maps, gts) -> dict[str, float]:
    """wsolevaluation's MaxBoxAcc and MaxBoxAccV2 (percent) of 224 maps and GT boxes."""
    v1 = np.mean(
        [
            reference_box_correct(m, g, THRESHOLDS, [0.5], multi_contour=False)[:, 0]
            for m, g in zip(maps, gts)
        ],
        axis=0,
    )
    v2 = np.mean(
        [reference_box_correct(m, g, THRESHOLDS, [0.3, 0.5, 0.7]) for m, g in zip(maps, gts)],
        axis=0,
    )
    out = {"maxboxacc": 100 * v1.max()}
    for k, t in enumerate((30, 50, 70)):
        out[f"maxboxacc_v2_iou{t}"] = 100 * v2[:, k].max()
    out["maxboxacc_v2"] = np.mean([out[f"maxboxacc_v2_iou{t}"] for t in (30, 50, 70)])
    return out


def metrics_of(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


# ---- mode 2: score maps on disk ----------------------------------------------------------


def box_maps() -> list[np.ndarray]:
    """Per image of BOX_ROWS: exactly its first GT box (right at every threshold); a blob;
    zeros (never right); a box elsewhere (never right); a blob off the box."""
    maps = []
    g = resize_224(BOX_ROWS[0][3][0], 100, 80)
    m = np.zeros((224, 224))
    m[g[1] : g[3] + 1, g[0] : g[2] + 1] = 1.0
    maps.append(m.astype(np.float32))
    maps.append(blob(90, 120, 35, 45))
    maps.append(np.zeros((224, 224), np.float16))
    m = np.zeros((224, 224))
    m[0:30, 0:30] = 0.8
    maps.append(m)
    maps.append(blob(70, 60, 30, 20).astype(np.float32))
    return maps


def test_scoremaps_boxes_match_the_reference(tmp_path):
    meta = write_box_metadata(tmp_path / "metadata" / "my_subset", BOX_ROWS)  # not a split name
    maps = box_maps()
    for (image_id, *_), m in zip(BOX_ROWS, maps):
        save_map(tmp_path / "maps", image_id, m)
    out = tmp_path / "out"
    r = run_cli(
        "wsol.evaluate",
        [
            f"scoremaps={tmp_path / 'maps'}",
            f"metadata={meta}",
            "protocol=wsolevaluation",
            "protocol.cam_curve_interval=0.01",
            f"paths.output_dir={out}",
        ],
    )
    assert r.returncode == 0, r.stderr[-3000:]
    got = metrics_of(out)
    gts = [[resize_224(b, *size) for b in boxes] for _, _, size, boxes in BOX_ROWS]
    want = reference_box_metrics([m.astype(np.float64) for m in maps], gts)
    for key in BOX_KEYS:
        assert got[key] == pytest.approx(want[key], abs=1e-9), key
    # by hand: image 0 is right at every threshold, images 2 and 3 never
    assert 20.0 <= got["maxboxacc"] <= 60.0
    assert "pxap" not in got and got["images"] == 5 and got["mode"] == "scoremaps"
    curves = pd.read_csv(out / "curves.csv")
    assert len(curves) == 100 and curves["maxboxacc"].max() == pytest.approx(got["maxboxacc"])
    pred = pd.read_csv(out / "predictions.csv")
    assert pred["id"].tolist() == [r[0] for r in BOX_ROWS]
    assert pred["wsolevaluation_v1_n_correct"].iloc[0] == 100  # the exact box map
    assert pred["wsolevaluation_v1_n_correct"].iloc[2] == 0  # the zero map


def write_mask(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.asarray(arr, np.uint8))


def test_scoremaps_masks_pxap_matches_the_reference(tmp_path):
    """OpenImages layout: instance and ignore PNGs, no image_sizes.txt, no images."""
    rng = np.random.default_rng(0)
    meta, masks, maps_dir = tmp_path / "meta" / "test", tmp_path / "masks", tmp_path / "maps"
    ids = ["test/c0/x0.jpg", "test/c1/x1.jpg", "test/c2/x2.jpg"]
    shapes = [(40, 60), (100, 80), (32, 32)]  # (height, width) of the masks
    loc, want_masks = [], []
    for i, (image_id, (h, w)) in enumerate(zip(ids, shapes)):
        stem = image_id[:-4]
        inst1 = np.zeros((h, w), np.uint8)
        inst1[h // 4 : h // 2, w // 5 : w // 2] = 255
        inst2 = np.zeros((h, w), np.uint8)
        inst2[h // 2 : h - 2, w // 2 : w - 3] = 1 if i == 1 else 255
        ignore = np.zeros((h, w), np.uint8)
        ignore[: h // 3, :] = 255
        write_mask(masks / f"{stem}_m1.png", inst1)
        write_mask(masks / f"{stem}_m2.png", inst2)
        if i != 2:
            write_mask(masks / f"{stem}_ignore.png", ignore)
        loc.append(
            f"{image_id},{stem}_m1.png,{stem}_ignore.png"
            if i != 2
            else f"{image_id},{stem}_m1.png,"
        )
        loc.append(f"{image_id},{stem}_m2.png,")
        fg = (inst1 > 0) | (inst2 > 0)
        mask = fg.astype(np.uint8)
        if i != 2:
            mask[(ignore > 0) & ~fg] = 255
        want_masks.append(cv2.resize(mask, (224, 224), interpolation=cv2.INTER_NEAREST))
    write_lines(meta / "image_ids.txt", ids)
    write_lines(meta / "class_labels.txt", [f"{p},{k}" for k, p in enumerate(ids)])
    write_lines(meta / "localization.txt", loc)
    maps = [
        (want_masks[0] == 1).astype(np.float64),  # perfect
        blob(150, 160, 40, 40).astype(np.float32),
        rng.random((224, 224)),
    ]
    for image_id, m in zip(ids, maps):
        save_map(maps_dir, image_id, m)
    out = tmp_path / "out"
    r = run_cli(
        "wsol.evaluate",
        [
            f"scoremaps={maps_dir}",
            f"metadata={meta}",
            f"masks={masks}",
            "protocol=wsolevaluation",
            "protocol.cam_curve_interval=0.01",
            f"paths.output_dir={out}",
        ],
    )
    assert r.returncode == 0, r.stderr[-3000:]
    got = metrics_of(out)
    ht = np.zeros(len(THRESHOLDS) + 2, np.int64)
    hf = np.zeros_like(ht)
    for m, mask in zip(maps, want_masks):
        a, b = reference_pxap_histograms(m.astype(np.float64), mask, THRESHOLDS)
        ht += a
        hf += b
    assert got["pxap"] == pytest.approx(reference_pxap(ht, hf), abs=1e-9)
    assert "maxboxacc" not in got  # masks are scored by PxAP only, as wsolevaluation does
    assert {"pxap_precision", "pxap_recall"} <= set(pd.read_csv(out / "curves.csv").columns)


# ---- errors ------------------------------------------------------------------------------
ONE_ROW = [
    ("001.Alpha/a_0001.jpg", 0, (100, 80), [(10, 20, 59, 69)]),
    ("001.Alpha/a_0002.jpg", 0, (50, 50), [(1, 1, 40, 40)]),
]


def test_missing_map_is_one_line_naming_the_file_and_leaves_out_alone(tmp_path):
    meta = write_box_metadata(tmp_path / "meta" / "test", ONE_ROW)
    save_map(tmp_path / "maps", ONE_ROW[0][0], blob(100, 100, 30, 30))
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text('{"old": 1}\n')
    r = run_cli(
        "wsol.evaluate",
        [
            f"scoremaps={tmp_path / 'maps'}",
            f"metadata={meta}",
            "protocol=wsolevaluation",
            f"paths.output_dir={out}",
        ],
    )
    assert r.returncode == 2, r.stderr[-2000:]
    last = last_line(r.stderr)
    assert (
        last.startswith("error: ")
        and str(tmp_path / "maps" / "001.Alpha" / "a_0002.jpg.npy") in last
    ), last
    assert "does not exist" in last and "Traceback" not in r.stderr
    assert json.loads((out / "metrics.json").read_text()) == {"old": 1}
    assert sorted(p.name for p in out.iterdir() if p.suffix != ".log") == ["metrics.json"]


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ("nan", "NaN or inf"),
        ("inf", "NaN or inf"),
        ("shape", "(200, 200)"),
        ("text", "not a .npy file"),
        ("range", "[0, 1]"),
        ("int", "floating dtype"),
        ("pickle", "cannot be read"),
    ],
)
def test_bad_map_is_one_line_naming_the_file(tmp_path, capsys, bad, words):
    meta = write_box_metadata(tmp_path / "meta" / "val", ONE_ROW)
    good = blob(100, 100, 30, 30)
    save_map(tmp_path / "maps", ONE_ROW[0][0], good)
    target = tmp_path / "maps" / f"{ONE_ROW[1][0]}.npy"
    if bad == "nan":
        m = good.copy()
        m[5, 5] = np.nan
        np.save(target, m)
    elif bad == "inf":
        m = good.astype(np.float32)
        m[0, 0] = np.inf
        np.save(target, m)
    elif bad == "shape":
        np.save(target, np.zeros((200, 200)))
    elif bad == "text":
        target.write_text("0.5 0.5\n")
    elif bad == "range":
        np.save(target, good * 1.5)
    elif bad == "int":
        np.save(target, (good * 255).astype(np.uint8))
    else:
        np.save(target, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    code, err = evaluate_here(
        [
            f"scoremaps={tmp_path / 'maps'}",
            f"metadata={meta}",
            "protocol=wsolevaluation",
            "num_workers=0",
            f"paths.output_dir={tmp_path / 'out'}",
        ],
        capsys,
    )
    last = last_line(err)
    assert code == 2 and str(target) in last and words in last, last
    assert not (tmp_path / "out" / "metrics.json").exists()
    assert not list((tmp_path / "out").glob(".predictions*"))


def test_scoremaps_refuse_other_protocols_and_mixed_modes(tmp_path, capsys):
    meta = write_box_metadata(tmp_path / "meta" / "test", ONE_ROW)
    base = [f"scoremaps={tmp_path}", f"metadata={meta}", f"paths.output_dir={tmp_path / 'out'}"]
    code, err = evaluate_here([*base, "protocol=[cam2016,wsolevaluation]"], capsys)
    assert code == 2 and "protocol=wsolevaluation" in last_line(err) and "cam2016" in last_line(err)
    code, err = evaluate_here([*base, "protocol=wsolevaluation", "ckpt=x.ckpt"], capsys)
    assert code == 2 and "two modes" in last_line(err)
    code, err = evaluate_here([f"paths.output_dir={tmp_path / 'out'}"], capsys)
    assert code == 2 and "nothing to evaluate" in last_line(err)


# ---- scale: the real CUB test metadata ---------------------------------------------------
def read_cub(n: int | None):
    ids = CUB_TEST.joinpath("image_ids.txt").read_text().split()
    ids = ids[:n] if n else ids
    keep = set(ids)
    sizes, boxes = {}, {}
    for line in CUB_TEST.joinpath("image_sizes.txt").read_text().split():
        p, w, h = line.split(",")
        sizes[p] = (int(w), int(h))
    for line in CUB_TEST.joinpath("localization.txt").read_text().split():
        p, *b = line.split(",")
        boxes.setdefault(p, []).append([int(v) for v in b])
    return ids, keep, sizes, boxes


@pytest.mark.parametrize("n", [200, pytest.param(None, marks=pytest.mark.slow)])
def test_cub_test_metadata_blobs_on_the_boxes_beat_the_center_baseline(tmp_path, capsys, n):
    if not (CUB_TEST / "image_ids.txt").is_file():
        pytest.skip(f"{CUB_TEST} is absent")
    ids, keep, sizes, boxes = read_cub(n)
    if n:  # a metadata folder of the first n ids
        meta = tmp_path / "meta" / "test"
        for name in ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt"):
            lines = CUB_TEST.joinpath(name).read_text().split()
            write_lines(meta / name, [x for x in lines if x.split(",")[0] in keep])
    else:
        meta = CUB_TEST
    maps = tmp_path / "maps"
    for image_id in ids:  # a blob on the first GT box, float16 to keep the disk small
        x0, y0, x1, y1 = resize_224(boxes[image_id][0], *sizes[image_id])
        m = blob((x0 + x1 + 1) / 2, (y0 + y1 + 1) / 2, (x1 - x0 + 1) / 4, (y1 - y0 + 1) / 4)
        save_map(maps, image_id, m.astype(np.float16))
    out = tmp_path / "blobs"
    r = run_cli(
        "wsol.evaluate",
        [
            f"scoremaps={maps}",
            f"metadata={meta}",
            "protocol=wsolevaluation",
            "protocol.cam_curve_interval=0.01",
            f"paths.output_dir={out}",
        ],
    )
    assert r.returncode == 0, r.stderr[-3000:]
    blobs = metrics_of(out)
    assert blobs["images"] == len(ids)
    assert blobs["maxboxacc"] > 90 and blobs["maxboxacc_v2"] > 80, blobs
    # the center baseline from the annotations alone (mode 4, no images, no maps)
    code, err = evaluate_here(
        [
            "data=cub_wsol",
            f"data.dataset.metadata_root={meta.parent}",
            "localizer=center",
            "protocol=wsolevaluation",
            "num_workers=0",
            f"paths.output_dir={tmp_path / 'center'}",
        ],
        capsys,
    )
    assert code == 0, err[-3000:]
    center = metrics_of(tmp_path / "center")
    assert center["images"] == len(ids)
    assert 20 < center["maxboxacc"] < blobs["maxboxacc"] - 20
    assert center["maxboxacc_v2"] < blobs["maxboxacc_v2"] - 20


# ---- modes 1 and 3: a checkpoint of a tiny run, exported maps ----------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from wsol.pipeline import train_and_evaluate

    out = tmp_path_factory.mktemp("tiny_run")
    torch.manual_seed(0)
    cfg = compose_config(
        [*TINY, f"paths.output_dir={out}", "protocol=[cam2016,cam2016_official,wsolevaluation]"]
    )
    train_and_evaluate(cfg)
    return out


def write_synthetic_metadata(folder: Path) -> None:
    """The wsolevaluation metadata of TINY's synthetic test split."""
    from hydra.utils import instantiate

    cfg = compose_config(TINY)
    ds = instantiate(cfg.data.dataset)(split="test")
    rows = []
    for i in range(len(ds)):
        r = ds[i]
        h, w = r["size"]
        inc = [(int(b[0]), int(b[1]), int(b[2]) - 1, int(b[3]) - 1) for b in r["boxes"].tolist()]
        rows.append((r["id"], r["label"], (w, h), inc))
    write_box_metadata(folder, rows)


def test_checkpoint_gives_the_run_metrics_and_exported_maps_round_trip(tiny_run, tmp_path, capsys):
    ckpt = tiny_run / "checkpoints" / "last.ckpt"
    out, export = tmp_path / "eval", tmp_path / "exported"
    data = [a for a in TINY if not a.startswith("model=")]  # the checkpoint says the model
    r = run_cli(
        "wsol.evaluate",
        [
            *data,
            f"ckpt={ckpt}",
            "protocol=[cam2016,cam2016_official,wsolevaluation]",
            f"export_scoremaps={export}",
            f"paths.output_dir={out}",
        ],
    )
    assert r.returncode == 0, r.stderr[-3000:]
    trained, got = metrics_of(tiny_run), metrics_of(out)
    from wsol.pipeline import VOLATILE_METRICS

    skip = VOLATILE_METRICS
    skip |= {"precision", "channels_last", "cpu_isa", "cpu_bf16"}  # how training ran
    for key in set(trained) - skip:
        assert got[key] == trained[key], key
    for name in ("predictions.csv", "curves.csv", "cams.png"):
        assert (out / name).is_file(), name
    assert got["exported_scoremaps"] == 24
    files = sorted(export.rglob("*.npy"))
    assert (
        len(files) == 24 and files[0].relative_to(export).as_posix() == "synthetic/test/000000.npy"
    )
    m = np.load(files[0])
    assert m.shape == (224, 224) and m.dtype == np.float64 and m.min() >= 0 and m.max() <= 1
    # mode 2 on the exported maps: exactly mode 1's numbers
    meta = tmp_path / "meta" / "test"
    write_synthetic_metadata(meta)
    code, err = evaluate_here(
        [
            f"scoremaps={export}",
            f"metadata={meta}",
            "protocol=wsolevaluation",
            "num_workers=0",
            f"paths.output_dir={tmp_path / 'maps'}",
        ],
        capsys,
    )
    assert code == 0, err[-3000:]
    again = metrics_of(tmp_path / "maps")
    for key in BOX_KEYS:
        assert again[key] == got[key], key
        assert again[f"{key}_threshold" if key != "maxboxacc_v2" else key] is not None


def test_export_with_val_thresholds_writes_only_the_test_maps(tiny_run, tmp_path, capsys):
    """val_thresholds=true scores val first on a copy of the protocols: that copy must
    not export the val split's maps into the folder (only the test split's)."""
    ckpt = tiny_run / "checkpoints" / "last.ckpt"
    export = tmp_path / "exported"
    data = [a for a in TINY if not a.startswith("model=")]
    code, err = evaluate_here(
        [
            *data,
            f"ckpt={ckpt}",
            "protocol=wsolevaluation",
            "val_thresholds=true",
            f"export_scoremaps={export}",
            f"paths.output_dir={tmp_path / 'eval'}",
        ],
        capsys,
    )
    assert code == 0, err[-3000:]
    got = metrics_of(tmp_path / "eval")
    assert "val_maxboxacc" in got  # the val pass ran
    files = sorted(f.relative_to(export).as_posix() for f in export.rglob("*.npy"))
    assert got["exported_scoremaps"] == len(files) == 24
    assert all(f.startswith("synthetic/test/") for f in files), files[:3]


def test_checkpoint_errors_name_the_file(tiny_run, tmp_path, capsys):
    ckpt = tiny_run / "checkpoints" / "last.ckpt"
    data = [a for a in TINY if not a.startswith("model=")]
    out = f"paths.output_dir={tmp_path / 'out'}"
    # another number of classes than the data set
    code, err = evaluate_here([*data, "data.dataset.num_classes=7", f"ckpt={ckpt}", out], capsys)
    last = last_line(err)
    assert code == 2 and str(ckpt) in last and "10 classes" in last and "7" in last, last
    # a model that contradicts the checkpoint
    code, err = evaluate_here([*data, "model=nin", f"ckpt={ckpt}", out], capsys)
    last = last_line(err)
    assert code == 2 and str(ckpt) in last and "tiny_gap" in last and "model=nin" in last, last
    code, err = evaluate_here(
        [*data, "model=tiny_gap", "model.width=8", f"ckpt={ckpt}", out], capsys
    )
    last = last_line(err)
    assert code == 2 and "model.width=8" in last and "16" in last, last
    # not a checkpoint: a text file, a bare state dict
    text = tmp_path / "notes.ckpt"
    text.write_text("hello\n")
    code, err = evaluate_here([*data, f"ckpt={text}", out], capsys)
    last = last_line(err)
    assert code == 2 and str(text) in last and "not a checkpoint" in last, last
    bare = tmp_path / "bare.pt"
    torch.save({"w": torch.zeros(2)}, bare)
    code, err = evaluate_here([*data, f"ckpt={bare}", out], capsys)
    last = last_line(err)
    assert code == 2 and str(bare) in last and "state_dict" in last, last
    assert not (tmp_path / "out" / "metrics.json").exists()


# ---- mode 4: baselines -------------------------------------------------------------------
def test_baselines_on_synthetic_data_without_a_network(tmp_path, capsys):
    data = [a for a in TINY if a.startswith("data.")]
    got = {}
    for name in ("center", "full"):
        code, err = evaluate_here(
            [
                *data,
                f"localizer={name}",
                "protocol=[cam2016,wsolevaluation]",
                "num_workers=0",
                f"paths.output_dir={tmp_path / name}",
            ],
            capsys,
        )
        assert code == 0, err[-3000:]
        got[name] = metrics_of(tmp_path / name)
        assert got[name]["images"] == 24 and got[name]["localizer"] == name
        # no classifier: no top-1 / top-5 numbers
        assert not any("top1" in k or "top5" in k or k.startswith("cls_") for k in got[name])
        assert {"gt_known_loc", "maxboxacc", "maxboxacc_v2", "pxap"} <= set(got[name])
        assert (tmp_path / name / "curves.csv").is_file()
        assert len(pd.read_csv(tmp_path / name / "predictions.csv")) == 24
    # the full-image map's box is the whole image
    assert got["full"]["gt_known_loc"] == got["full"]["full_image_gt_known_loc"]
    assert got["center"]["maxboxacc"] != got["full"]["maxboxacc"]
    # a baseline's maps exported, then scored from disk: the same numbers
    export = tmp_path / "exported"
    code, err = evaluate_here(
        [
            *data,
            "localizer=center",
            "protocol=wsolevaluation",
            f"export_scoremaps={export}",
            "num_workers=0",
            f"paths.output_dir={tmp_path / 'center_export'}",
        ],
        capsys,
    )
    assert code == 0, err[-3000:]
    assert metrics_of(tmp_path / "center_export")["exported_scoremaps"] == 24
    write_synthetic_metadata(tmp_path / "meta" / "test")
    code, err = evaluate_here(
        [
            f"scoremaps={export}",
            f"metadata={tmp_path / 'meta' / 'test'}",
            "protocol=wsolevaluation",
            "num_workers=0",
            f"paths.output_dir={tmp_path / 'center_maps'}",
        ],
        capsys,
    )
    assert code == 0, err[-3000:]
    for key in BOX_KEYS:
        assert metrics_of(tmp_path / "center_maps")[key] == got["center"][key], key
