"""The embedded synthetic data set: deterministic, well-formed, a real localization task."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsol.data.synthetic import SyntheticWSOL, class_styles
from wsol.errors import WSOLError


def make(split="train", **kw):
    kw.setdefault("image_size", 64)
    kw.setdefault("train_size", 40)
    kw.setdefault("val_size", 10)
    kw.setdefault("test_size", 20)
    return SyntheticWSOL(split, **kw)


def test_same_seed_split_index_gives_the_same_image():
    a, b = make(), make()
    for i in (0, 7, 39):
        ra, rb = a[i], b[i]
        assert torch.equal(ra["image"], rb["image"])
        assert torch.equal(ra["boxes"], rb["boxes"])
        assert np.array_equal(ra["mask"], rb["mask"])
        assert ra["label"] == rb["label"]


def test_order_of_access_does_not_matter():
    a, b = make(), make()
    forward = [a[i]["image"] for i in range(5)]
    backward = [b[i]["image"] for i in reversed(range(5))][::-1]
    assert all(torch.equal(x, y) for x, y in zip(forward, backward))


def test_seed_and_split_change_the_images():
    base = make()[3]["image"]
    assert not torch.equal(base, make(seed=1)[3]["image"])
    assert not torch.equal(base, make("test")[3]["image"])


def test_record_is_well_formed_and_box_is_the_mask_box():
    ds = make(image_size=80)
    for i in range(len(ds)):
        r = ds[i]
        assert r["image"].shape == (3, 80, 80) and r["image"].dtype == torch.float32
        assert 0.0 <= float(r["image"].min()) and float(r["image"].max()) <= 1.0
        assert r["size"] == (80, 80)
        assert r["label"] == i % ds.num_classes
        ys, xs = np.nonzero(r["mask"])
        expected = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        assert r["boxes"].tolist() == [expected]


def test_objects_are_neither_tiny_nor_frame_filling():
    ds = make(image_size=96, train_size=200)
    fractions = []
    for i in range(len(ds)):
        x0, y0, x1, y1 = ds[i]["boxes"][0].tolist()
        fractions.append((x1 - x0) * (y1 - y0) / 96**2)
    fractions = np.array(fractions)
    # objects as large as CUB's birds (mean box ~36% of the image) but not frame-filling:
    # the whole-image box reaches IoU 0.5 (box area >= half the image) on < 20% of them
    assert 0.25 < fractions.mean() < 0.5
    assert (fractions >= 0.5).mean() < 0.2
    assert fractions.min() > 0.05


def test_classes_differ_in_the_part_and_are_balanced():
    styles = class_styles(10)
    assert len({(s.part_shape, round(s.part_hue, 3)) for s in styles}) == 10
    ds = make(train_size=50)
    counts = np.bincount([ds[i]["label"] for i in range(50)], minlength=10)
    assert counts.tolist() == [5] * 10


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"num_classes": 1}, "num_classes"),
        ({"image_size": 16}, "image_size"),
        ({"test_size": 0}, "test_size"),
        ({"cache_splits": ["train", "tran"]}, "cache_splits: unknown split"),
    ],
)
def test_bad_settings_are_one_line_errors(kw, fragment):
    with pytest.raises(WSOLError, match=fragment):
        make("test", **kw)


def test_cache_keeps_the_pixels_and_survives_in_place_changes():
    plain, cached = make(), make(cache_splits=["train", "val"])
    for i in (0, 3, 0, 3):  # second reads come from the cache
        a, b = plain[i], cached[i]
        assert torch.equal(a["image"], b["image"])
        assert torch.equal(a["boxes"], b["boxes"])
        assert np.array_equal(a["mask"], b["mask"])
        # a transform that works in place must not reach the cached render
        b["image"].mul_(0)
        b["boxes"].add_(5)
        b["mask"][:] = 7
    assert set(cached._cache) == {0, 3}
    assert make("test", cache_splits=["train"])._cache is None


def test_cache_limit_bounds_its_memory():
    ds = make(cache_splits=["train"], cache_limit_mb=0.11)  # room for 2 images of 64 px
    for i in range(6):
        ds[i]
    assert len(ds._cache) == 2 and ds._cache_bytes <= 0.11 * 2**20
    assert torch.equal(ds[5]["image"], make()[5]["image"])  # beyond it: rendered again


def test_eval_view_of_the_train_split_is_not_augmented():
    """The sample grid draws the original boxes on the eval view: no flips there."""
    from wsol.data.datamodule import WSOLDataModule

    def factory(split, transform):
        return make(split, transform=transform)

    dm = WSOLDataModule(factory, input_size=64, mean=(0, 0, 0), std=(1, 1, 1), flip=True)
    view = dm.eval_view("train")
    plain = make("train")
    for i in range(8):  # with flips on, some of 8 training reads would be mirrored
        assert torch.allclose(view[i]["image"], plain[i]["image"], atol=1e-6)
    assert dm.eval_view("test") is dm.dataset("test")


def test_train_split_renders_at_train_image_size_and_the_datamodule_evaluates_at_its_own():
    """The default job trains on 160 px renderings and evaluates on 224/256 px ones: the
    train split has its own size, val and test keep image_size, and the DataModule's
    eval_input_size resizes the evaluation splits (not the training one)."""
    from wsol.data.datamodule import WSOLDataModule

    tr, te = make("train", train_image_size=48), make("test", train_image_size=48)
    assert tuple(tr[0]["image"].shape) == (3, 48, 48)
    assert tuple(tr[0]["size"]) == (48, 48)
    assert tuple(te[0]["image"].shape) == (3, 64, 64)
    assert torch.equal(make("test")[5]["image"], te[5]["image"])  # eval scenes unchanged
    with pytest.raises(WSOLError, match="train_image_size must be at least 32"):
        make("train", train_image_size=16)

    def factory(split, transform):
        return make(split, train_image_size=48, transform=transform)

    dm = WSOLDataModule(factory, input_size=48, eval_input_size=64, num_workers=0)
    assert tuple(dm.dataset("train")[0]["image"].shape) == (3, 48, 48)
    assert tuple(dm.dataset("test")[0]["image"].shape) == (3, 64, 64)
    assert tuple(dm.eval_view("train")[0]["image"].shape) == (3, 64, 64)
    assert WSOLDataModule(factory, input_size=48).eval_input_size == 48
