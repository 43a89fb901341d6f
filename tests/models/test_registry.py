"""The registry finds the network files by itself, raises their import errors, and holds
each network's display label and torchvision weight source."""

from __future__ import annotations

import pytest

from wsol.models import available, registry


def test_network_files_are_found_without_a_list():
    mods = registry.network_modules()
    assert "wsol.models.vgg" in mods and "wsol.models.tiny" in mods
    assert not {f"wsol.models.{m}" for m in registry._INFRASTRUCTURE} & set(mods)


def test_an_import_error_in_a_network_file_is_raised(monkeypatch):
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "network_modules", lambda: ["wsol.models.no_such_network"])
    with pytest.raises(ModuleNotFoundError, match="no_such_network"):
        available()


def test_labels_and_weight_sources():
    assert registry.network_label("alexnet_star_gap") == "AlexNet*"
    assert registry.network_label("not_a_network") == "not_a_network"
    assert all(registry.network_label(n) for n in available())
    assert registry.weight_source("nin") is None and registry.weight_source("tiny_gap") is None
    assert registry.weight_source("vgg16").arch == "vgg16"
    assert set(registry.weight_sources()) < set(available())


def test_a_name_registered_twice_is_refused(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("tiny_gap")(lambda **kw: None)
