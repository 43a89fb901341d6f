"""Weight loading: torchvision state dicts (``model.weights=PATH`` and ``pretrained=True``
from the hub cache) land tensor for tensor on the kept layers; our own state dicts and
Lightning checkpoints load strictly; every wrong file is a one-line `WSOLError`.

The torchvision networks are randomly initialised here and saved by the tests (no
network, no real ImageNet weights)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import torch
import torchvision.models as tvm
from zoo_cases import TORCHVISION

import wsol.models.weights as weights_mod
from wsol.errors import WSOLError
from wsol.models import build_model
from wsol.models.registry import weight_source
from wsol.models.weights import cached_weights_path


def _randomise_buffers(module: torch.nn.Module) -> None:
    """BatchNorm statistics that are not the defaults, so that copying them is tested."""
    g = torch.Generator().manual_seed(1)
    for name, b in module.named_buffers():
        if name.endswith("running_mean"):
            b.copy_(torch.randn(b.shape, generator=g))
        elif name.endswith("running_var"):
            b.copy_(torch.rand(b.shape, generator=g) + 0.5)
        elif name.endswith("num_batches_tracked"):
            b.fill_(7)


@pytest.fixture(scope="module")
def torchvision_files(tmp_path_factory):
    """arch -> (path of a saved, randomly initialised torchvision state dict named as
    torchvision's ImageNet file, that state dict); built on first use."""
    root = tmp_path_factory.mktemp("tv")
    made: dict[str, tuple[Path, dict[str, torch.Tensor]]] = {}

    def get(name: str) -> tuple[Path, dict[str, torch.Tensor]]:
        arch, kwargs = TORCHVISION[name]
        if arch not in made:
            torch.manual_seed(0)
            tv = getattr(tvm, arch)(weights=None, **kwargs)
            _randomise_buffers(tv)
            sd = tv.state_dict()
            path = root / weight_source(name).file_name
            torch.save(sd, path)
            made[arch] = (path, sd)
        return made[arch]

    return get


def _put_in_cache(path: Path, name: str) -> Path:
    """The file where ``pretrained=True`` looks for it ($TORCH_HOME/hub/checkpoints)."""
    dst = cached_weights_path(weight_source(name))
    assert dst.parent == Path(torch.hub.get_dir()) / "checkpoints"
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(path)
    return dst


def _check_loaded(net, name: str, tv_sd: dict[str, torch.Tensor], num_classes: int) -> None:
    """Every tensor of a kept layer equals torchvision's; the layers not loaded are exactly
    the new ones (``new_layer_prefixes``), plus nothing else."""
    source = weight_source(name)
    ours = net.state_dict()
    loaded = set()
    for k, v in tv_sd.items():
        m = source.map_key(k)
        if m is None:
            continue
        if v.shape != ours[m].shape:  # a replaced classifier
            assert net.is_new_parameter(m) and num_classes != 1000, m
            continue
        assert torch.equal(ours[m], v), f"{k} -> {m}"
        loaded.add(m)
    not_loaded = {k for k in ours if k not in loaded}
    new = {k for k in ours if net.is_new_parameter(k)}
    assert not_loaded <= new
    if num_classes != 1000:  # new_layer_prefixes names exactly what is not in the source
        assert not_loaded == new
    else:  # with 1000 classes a kept classifier is loaded too
        assert new - not_loaded <= {k for k in new if "fc." in k or "classifier.6." in k}


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_torchvision_state_dict_from_a_path(name, torchvision_files, offline_hub, caplog):
    path, tv_sd = torchvision_files(name)
    with caplog.at_level("INFO", logger="wsol.models.weights"):
        net = build_model(name, num_classes=7, weights=str(path))
    _check_loaded(net, name, tv_sd, 7)
    assert net.pretrained and not offline_hub  # no download attempted
    text = caplog.text
    assert "new layers of" in text and "removed by the surgery" in text
    for prefix in net.new_layer_prefixes:
        assert prefix.rstrip(".") in text


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_pretrained_from_the_hub_cache(name, torchvision_files, offline_hub):
    path, tv_sd = torchvision_files(name)
    _put_in_cache(path, name)
    net = build_model(name, num_classes=1000, pretrained=True)
    _check_loaded(net, name, tv_sd, 1000)
    assert not offline_hub


@pytest.mark.parametrize("name", ["vgg16", "alexnet", "googlenet"])
def test_unmodified_networks_compute_torchvisions_function(name, torchvision_files):
    """With 1000 classes the unmodified networks load all of torchvision's layers (but the
    auxiliary classifiers) and give its logits."""
    path, tv_sd = torchvision_files(name)
    arch, kwargs = TORCHVISION[name]
    tv = getattr(tvm, arch)(weights=None, **kwargs)
    tv.load_state_dict(tv_sd)
    tv.eval()
    net = build_model(name, num_classes=1000, weights=str(path)).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(net(x), tv(x))


def test_pretrained_without_cache_or_network_names_file_folder_and_url(offline_hub):
    with pytest.raises(WSOLError) as e:
        build_model("vgg16_gap", num_classes=5, pretrained=True)
    msg = str(e.value)
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    assert "vgg16-397923af.pth" in msg and str(folder) in msg
    assert "https://download.pytorch.org/models/vgg16-397923af.pth" in msg
    assert "\n" not in msg
    assert offline_hub == [
        (
            "https://download.pytorch.org/models/vgg16-397923af.pth",
            str(folder / "vgg16-397923af.pth"),
        )
    ]


def test_pretrained_downloads_into_the_cache(torchvision_files, monkeypatch):
    path, tv_sd = torchvision_files("alexnet_gap")
    fetched = []

    def fake_download(url, dst):
        fetched.append(url)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(path.read_bytes())

    monkeypatch.setattr(weights_mod, "_download", fake_download)
    net = build_model("alexnet_gap", num_classes=3, pretrained=True)
    _check_loaded(net, "alexnet_gap", tv_sd, 3)
    assert fetched == [weight_source("alexnet_gap").url]
    assert cached_weights_path(weight_source("alexnet_gap")).is_file()
    build_model("alexnet_gap", num_classes=3, pretrained=True)  # from the cache now
    assert len(fetched) == 1


def test_corrupt_cached_file_is_named():
    dst = cached_weights_path(weight_source("alexnet"))
    dst.parent.mkdir(parents=True)
    dst.write_bytes(b"<html>404</html>")
    with pytest.raises(WSOLError, match=r"alexnet-owt-7be5be79\.pth.*delete the file"):
        build_model("alexnet", num_classes=3, pretrained=True)


@pytest.mark.parametrize("name", ["nin", "tiny_gap"])
def test_no_torchvision_weights(name):
    with pytest.raises(WSOLError, match=rf"no torchvision weights for {name}.*model\.weights=PATH"):
        build_model(name, num_classes=3, pretrained=True)


@pytest.mark.parametrize("name", ["nin", "alexnet_star_gap", "resnet50_gap"])
def test_own_state_dict_round_trip(name, tmp_path):
    src = build_model(name, num_classes=4)
    path = tmp_path / "own.pth"
    torch.save(src.state_dict(), path)
    net = build_model(name, num_classes=4, weights=str(path), pretrained=True)  # the file wins
    for k, v in src.state_dict().items():
        assert torch.equal(net.state_dict()[k], v), k


def test_lightning_checkpoint(tmp_path):
    src = build_model("alexnet_gap", num_classes=4)
    ckpt = {
        "epoch": 3,
        "state_dict": {"net." + k: v for k, v in src.state_dict().items()},
        "hyper_parameters": {"model": {"name": "alexnet_gap"}},
    }
    path = tmp_path / "last.ckpt"
    torch.save(ckpt, path)
    net = build_model("alexnet_gap", num_classes=4, weights=str(path))
    for k, v in src.state_dict().items():
        assert torch.equal(net.state_dict()[k], v), k


# -- wrong files ---------------------------------------------------------------------------


class _NotATensor:
    pass


def test_text_file(tmp_path):
    path = tmp_path / "weights.pth"
    path.write_text("these are not weights\n")
    with pytest.raises(WSOLError, match=r"weights\.pth.*not a file written by torch\.save"):
        build_model("alexnet_gap", num_classes=3, weights=str(path))


def test_truncated_file(tmp_path):
    path = tmp_path / "cut.pth"
    torch.save(build_model("alexnet_gap", num_classes=3).state_dict(), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(WSOLError, match=r"cut\.pth.*damaged or truncated"):
        build_model("alexnet_gap", num_classes=3, weights=str(path))


def test_pickle_that_needs_code(tmp_path):
    path = tmp_path / "obj.pth"
    torch.save({"features.0.weight": _NotATensor()}, path)
    with pytest.raises(WSOLError, match=r"obj\.pth.*objects other than tensors.*_NotATensor"):
        build_model("alexnet_gap", num_classes=3, weights=str(path))


def test_not_a_dict_and_missing_file(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(WSOLError, match="holds a list, not a state dict"):
        build_model("alexnet_gap", num_classes=3, weights=str(path))
    with pytest.raises(WSOLError, match=r"nope\.pth: no such file"):
        build_model("alexnet_gap", num_classes=3, weights=str(tmp_path / "nope.pth"))


def test_wrong_number_of_classes(tmp_path):
    path = tmp_path / "cub.pth"
    torch.save(build_model("vgg16_gap", num_classes=10).state_dict(), path)
    with pytest.raises(WSOLError) as e:
        build_model("vgg16_gap", num_classes=200, weights=str(path))
    assert "head.fc.weight has shape (10, 1024) in the file but (200, 1024) in vgg16_gap" in str(
        e.value
    )
    assert "cub.pth" in str(e.value)


def test_another_networks_own_state_dict(tmp_path):
    path = tmp_path / "gap.pth"
    torch.save(build_model("alexnet_gap", num_classes=3).state_dict(), path)
    with pytest.raises(WSOLError) as e:
        build_model("alexnet_star_gap", num_classes=3, weights=str(path))
    msg = str(e.value)
    assert "does not match alexnet_star_gap" in msg
    assert "features.conv5.weight" in msg and "features.cam_conv.weight" in msg
    assert "head.fc.weight has shape (3, 1024) in the file but (3, 512)" in msg


def test_another_torchvision_network(torchvision_files):
    path, _ = torchvision_files("alexnet")
    with pytest.raises(WSOLError) as e:
        build_model("vgg16_gap", num_classes=3, weights=str(path))
    msg = str(e.value)
    assert "not the torchvision vgg16 state dict" in msg
    assert "features.0.weight has shape (64, 3, 11, 11) in the file" in msg


def test_torchvision_file_missing_a_kept_tensor_or_with_an_unknown_key(torchvision_files, tmp_path):
    _, tv_sd = torchvision_files("alexnet_gap")
    sd = dict(tv_sd)
    del sd["features.8.weight"]
    torch.save(sd, tmp_path / "a.pth")
    with pytest.raises(WSOLError, match=r"missing from the file \(1\): features\.8\.weight"):
        build_model("alexnet_gap", num_classes=3, weights=str(tmp_path / "a.pth"))
    sd = dict(tv_sd)
    sd["features.99.weight"] = torch.zeros(3)
    torch.save(sd, tmp_path / "b.pth")
    with pytest.raises(
        WSOLError, match=r"torchvision's alexnet does not have \(1\): features\.99\.weight"
    ):
        build_model("alexnet_gap", num_classes=3, weights=str(tmp_path / "b.pth"))


def test_never_strict_false():
    calls = re.findall(r"load_state_dict\([^)]*\)", inspect.getsource(weights_mod))
    assert calls and all("strict=True" in c for c in calls)
