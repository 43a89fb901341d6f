"""Every ``conf/model/NAME.yaml`` of the zoo builds its network with ``model=NAME``, and
every registered network has one (extending ``conf/_model_base.yaml``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from zoo_cases import EXPECTED, FC_NETWORKS, NETWORKS

from tests.helpers import compose_config
from wsol.models import available

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"
TRANSFORM_INPUT = ("inceptionv3_gap", "googlenet_gap", "googlenet")


def test_every_registered_network_has_one_yaml():
    assert sorted(p.stem for p in CONF.glob("*.yaml")) == available()
    for p in CONF.glob("*.yaml"):
        assert OmegaConf.load(p).defaults == ["/_model_base@_here_", "_self_"], p.name


@pytest.mark.parametrize("name", NETWORKS)
def test_config_builds_the_network(name):
    model = compose_config([f"model={name}"]).model
    assert model._target_ == "wsol.models.build_model" and model.name == name
    assert OmegaConf.is_missing(model, "num_classes")
    assert model.input_size == EXPECTED[name][0]
    assert list(model.mean) == [0.485, 0.456, 0.406] and list(model.std) == [0.229, 0.224, 0.225]
    assert ("transform_input" in model) == (name in TRANSFORM_INPUT)
    cfg = OmegaConf.create({"pool": {"name": "max"}, "model": model})
    cfg.model.num_classes = 3
    net = instantiate(cfg.model)
    assert net.name == name and net.input_size == EXPECTED[name][0]
    assert net.pool == (None if name in FC_NETWORKS else "max")
    assert net.head_lr_mult == model.head_lr_mult and not net.pretrained
    if name in TRANSFORM_INPUT:
        assert net.features.transform_input.enabled is False  # follows model.pretrained
