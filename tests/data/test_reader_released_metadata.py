"""The wsolevaluation metadata of CUB, ILSVRC and OpenImages30k exactly as released
(``../shared/data``): every split of the three releases reads, with the counts the
releases document, and the OpenImages lines (an empty ``image_sizes.txt``, ignore paths
empty on an image's later lines) give records, a baseline run and a score-map run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import SHARED_DATA
from tests.helpers import (
    evaluate_here,
    openimages_center_args,
    released_openimages_subset,
    text_lines,
)
from wsol.data.wsol_metadata import DATASETS, WSOLMetadataDataset, read_metadata

RELEASE = {
    "CUB": SHARED_DATA / "wsolevaluation-metadata-CUB",
    "ILSVRC": SHARED_DATA / "wsolevaluation-metadata-ILSVRC",
    "OpenImages": SHARED_DATA / "wsolevaluation-metadata-OpenImages",
}
#: (data set, split, images, localization lines, sizes given) as the releases document
SPLITS = [
    ("CUB", "train", 5994, 5994, True),
    ("CUB", "val", 1000, 1000, True),
    ("CUB", "test", 5794, 5794, True),
    ("ILSVRC", "val", 10000, None, True),
    # 80,477 box lines (README: "80,476", the count of `wc -l`: the file has no final
    # newline); four lines repeat a box of the same image, kept as wsolevaluation keeps them
    ("ILSVRC", "test", 50000, 80477, True),
    ("OpenImages", "val", 2500, None, False),
    ("OpenImages", "test", 5000, 7632, False),  # README "7,631": `wc -l` again
]
needs_release = pytest.mark.skipif(
    not all(p.is_dir() for p in RELEASE.values()), reason=f"{SHARED_DATA} lacks a release"
)


@needs_release
@pytest.mark.parametrize(("name", "split", "images", "loc_lines", "sized"), SPLITS)
def test_every_released_split_reads(name, split, images, loc_lines, sized):
    num_classes, kind = DATASETS[name]
    folder = RELEASE[name] / split
    ann = read_metadata(RELEASE[name], split, num_classes, kind)
    lines = text_lines(folder / "localization.txt")
    assert len(ann.ids) == images == len(text_lines(folder / "image_ids.txt"))
    assert loc_lines is None or len(lines) == loc_lines
    assert ann.labels.min() >= 0 and ann.labels.max() < num_classes
    assert (ann.sizes is not None) == sized
    if kind == "boxes":
        assert sum(len(b) for b in ann.boxes) == len(lines)
        assert all((b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all() for b in ann.boxes)
        return
    # OpenImages: one line per instance mask, the ignore mask on the image's first line
    assert (folder / "image_sizes.txt").stat().st_size == 0  # as released
    assert sum(len(m) for m in ann.masks) == len(lines)
    firsts: dict[str, str] = {}
    for ln in lines:
        image_id, _, ignore = ln.split(",")
        firsts.setdefault(image_id, ignore)
    assert [ann.ignores[i] for i in range(len(ann.ids))] == [firsts[i] for i in ann.ids]
    assert sum(1 for ln in lines if ln.endswith(",")) > 0  # lines with an empty ignore path
    assert len(set(ann.labels.tolist())) == num_classes


@needs_release
def test_openimages_release_records_take_their_size_from_the_masks(tmp_path):
    meta, masks, ids = released_openimages_subset(tmp_path)
    ds = WSOLMetadataDataset(
        "test",
        metadata_root=str(meta.parent),
        dataset_name="OpenImages",
        mask_root=str(masks),
        load_images=False,
    )
    assert ds.ids == ids and ds.ann.sizes is None
    for i in range(len(ds)):
        r = ds[i]
        assert r["size"] == r["mask"].shape
        assert set(np.unique(r["mask"]).tolist()) <= {0, 1, 255} and (r["mask"] == 1).any()
        assert len(r["boxes"]) >= 1


@needs_release
def test_openimages_release_baseline_and_scoremaps_runs(tmp_path, capsys):
    meta, masks, ids = released_openimages_subset(tmp_path)
    base = openimages_center_args(meta, masks)
    out = tmp_path / "baseline"
    export = tmp_path / "maps"
    code, err = evaluate_here(
        [*base, f"paths.output_dir={out}", f"export_scoremaps={export}"], capsys
    )
    assert code == 0, err[-2000:]
    first = json.loads((out / "metrics.json").read_text())
    assert first["images"] == len(ids) and 0 < first["pxap"] < 100
    # the exported maps scored from disk with the released lines: the same PxAP
    out2 = tmp_path / "scoremaps"
    code, err = evaluate_here(
        [
            f"scoremaps={export}",
            f"metadata={meta}",
            f"masks={masks}",
            "protocol=wsolevaluation",
            "num_workers=0",
            f"paths.output_dir={out2}",
        ],
        capsys,
    )
    assert code == 0, err[-2000:]
    second = json.loads((out2 / "metrics.json").read_text())
    assert second["pxap"] == first["pxap"]
