"""Every network of the zoo, with both pools, through the real main job on a tiny
synthetic set (issue: `python -m wsol.run model=NAME pool=P` runs for every NAME)."""

from __future__ import annotations

import pytest

from tests.helpers import compose_config
from tests.models.zoo_cases import FC_NETWORKS, NETWORKS
from wsol.pipeline import train_and_evaluate

#: full-size backbones are slow on a CPU; they still get a forward and backward pass in
#: every default run (tests/models/test_model_zoo.py) and this end to end test with -m slow
BIG = {"vgg16", "vgg16_gap", "resnet50_gap", "inceptionv3_gap"}

MICRO = [
    "data.dataset.image_size=64",
    "data.dataset.train_image_size=null",
    "data.dataset.train_size=8",
    "data.dataset.val_size=4",
    "data.dataset.test_size=6",
    "data.dataset.num_classes=3",
    "data.batch_size=4",
    "data.eval_batch_size=6",
    "data.num_workers=0",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "figure_images=2",
    "protocol=[cam2016,wsolevaluation]",
]
LOC_KEYS = {"gt_known_loc", "loc_top1_err", "maxboxacc_v2"}


def _cases():
    for name in NETWORKS:
        for pool in ("avg", "max"):
            marks = [pytest.mark.slow] if name in BIG else []
            yield pytest.param(name, pool, marks=marks, id=f"{name}-{pool}")


@pytest.mark.parametrize(("name", "pool"), list(_cases()))
def test_main_job_runs_for_every_network_and_pool(tmp_path, name, pool):
    cfg = compose_config([*MICRO, f"model={name}", f"pool={pool}", f"paths.output_dir={tmp_path}"])
    m = train_and_evaluate(cfg)
    assert m["model"] == name and m["pool"] == pool
    assert 0 <= m["cls_top1_err"] <= 100
    if name in FC_NETWORKS:  # no CAM: classification only, localization absent (never zero)
        assert not LOC_KEYS & m.keys()
    else:
        assert LOC_KEYS <= m.keys()
        assert (tmp_path / "cams.png").is_file()


@pytest.mark.parametrize(
    "localizer",
    ["backprop", "gradcam"],
)
@pytest.mark.parametrize("name", ["alexnet", pytest.param("vgg16", marks=pytest.mark.slow)])
def test_networks_without_gap_localize_with_backprop_and_gradcam(tmp_path, name, localizer):
    cfg = compose_config(
        [
            *MICRO,
            f"model={name}",
            f"localizer={localizer}",
            "protocol=[cam2016,cam2016_official,wsolevaluation]",
            f"paths.output_dir={tmp_path}",
        ]
    )
    m = train_and_evaluate(cfg)
    assert m["localizer"] == localizer
    for key in (
        "gt_known_loc",
        "loc_top5_err",
        "official_gt_known_loc",
        "maxboxacc",
        "maxboxacc_v2",
        "pxap",
    ):
        assert 0 <= m[key] <= 100, key
