"""``localizer=torchcam``: torchcam's methods behind the suite's interface (shapes, columns,
layers, batching, the replay of Score-CAM's forward passes, state after errors, bad
settings), and the suite's own ``cam`` and ``gradcam`` held to torchcam's ``CAM`` and
``GradCAM``."""

from __future__ import annotations

import copy

import pytest
import torch
import torchcam.methods as tcm
from torch import nn

from wsol.errors import WSOLError
from wsol.localize import CAM, GradCAM, TorchCAM
from wsol.localize.torchcam import METHODS, _Replay

from .nets import (
    DEVICES,
    Boom,
    FCHeadNet,
    GapNet,
    SharedReluNet,
    Tripwire,
    assert_same_state,
    features_of,
    hooks_left,
    images,
    make,
    mixed_state,
    snapshot,
    tripwires,
)

ALL = sorted(METHODS)
#: fewer noisy samples than torchcam's defaults, to keep the file fast
FEW = {"smoothgradcampp": 2, "sscam": 3, "iscam": 3}
#: GapNet at 32 px (16x16 maps); FCHeadNet's linear layer fixes it at 8 px (4x4 maps)
SIZE = {GapNet: 32, FCHeadNet: 8}
CLASSES = torch.tensor([[0, 1, 2], [2, 2, 3], [3, 0, 1]])


def allclose(a: torch.Tensor, b: torch.Tensor, rtol: float, atol: float) -> None:
    """``torch.allclose`` with the largest difference in the message (torch.testing's
    ``assert_close`` costs seconds of imports on its first call)."""
    assert a.shape == b.shape, f"shapes {tuple(a.shape)} and {tuple(b.shape)}"
    assert torch.allclose(a, b, rtol=rtol, atol=atol), f"max |a - b| {(a - b).abs().max():.3g}"


def loc(method: str, **kw) -> TorchCAM:
    return TorchCAM(method, num_samples=FEW.get(method), **kw)


def setup(cls, b: int = 3):
    net = make(cls)
    x = images(b, size=SIZE[cls])
    return net, x, features_of(net, x)


# ---- maps for every method ---------------------------------------------------------------
@pytest.mark.parametrize("method", ALL)
@pytest.mark.parametrize("cls", [GapNet, FCHeadNet])
def test_every_method_gives_finite_maps_at_the_layers_resolution(method, cls):
    net, x, f = setup(cls)
    maps = loc(method)(net, x, f, CLASSES)
    assert maps.shape == (3, 3, *f.shape[2:]) and maps.dtype == torch.float32
    assert torch.isfinite(maps).all()
    assert (maps >= 0).all() and maps.amax() > 0  # torchcam's final ReLU, not all zero
    assert not maps.requires_grad and not hooks_left(net)


@pytest.mark.parametrize("method", ALL)
def test_each_column_equals_its_class_alone(method):
    net, x, f = setup(GapNet)
    maps = loc(method)(net, x, f, CLASSES)
    for j in range(CLASSES.shape[1]):
        alone = loc(method)(net, x, f, CLASSES[:, j : j + 1])
        allclose(maps[:, j], alone[:, 0], rtol=1e-6, atol=1e-12)
    # the repeated class of row 1 is one map
    assert torch.equal(maps[1, 0], maps[1, 1])
    # and the maps do depend on the class
    assert not torch.allclose(maps[0, 0], maps[0, 1])


def raw_torchcam(method: str, net: nn.Module, x: torch.Tensor, layer: str, classes, seed=0):
    """torchcam used as its README shows, one class column per call (the network's
    parameters require grad, so its gradient hooks connect)."""
    spec = METHODS[method]
    kw = {"num_samples": FEW[method]} if method in FEW else {}
    net.eval()
    out = []
    with getattr(tcm, spec.cls)(net, layer, **kw) as extractor:
        for j in range(classes.shape[1]):
            with torch.set_grad_enabled(spec.family != "score"):
                scores = net(x)
            torch.manual_seed(seed)
            cams = extractor(
                class_idx=classes[:, j].tolist(),
                scores=scores if spec.family == "gradient" else None,
                normalized=False,
            )
            out.append(cams[0].detach())
    return torch.stack(out, dim=1).float()


@pytest.mark.parametrize("method", ALL)
def test_maps_are_torchcams_own(method):
    """The wrapper changes nothing in what torchcam computes: the features-only path, the
    leaf at the layer, the replayed forward passes and the seeded noise give the maps of
    torchcam driven directly."""
    net, x, f = setup(GapNet)
    ours = loc(method)(net, x, f, CLASSES)
    theirs = raw_torchcam(method, net, x, "features", CLASSES)
    allclose(ours, theirs, rtol=1e-5, atol=1e-9)


# ---- layers ------------------------------------------------------------------------------
def no_inplace(net: nn.Module) -> nn.Module:
    net = copy.deepcopy(net)
    for m in net.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    return net


@pytest.mark.parametrize("method", ["xgradcam", "scorecam", "smoothgradcampp"])
def test_layer_override_weighs_the_layers_own_output(method):
    """``features.1`` (a BatchNorm) is followed by ``ReLU(inplace=True)``: the maps are of
    the BatchNorm's output, at its resolution (32x32 at 32 px), as torchcam gives them on
    the same network without the in-place op."""
    net, x, f = setup(GapNet)
    ours = loc(method, layer="features.1")(net, x, f, CLASSES)
    assert ours.shape == (3, 3, 32, 32)
    theirs = raw_torchcam(method, no_inplace(net), x, "features.1", CLASSES)
    allclose(ours, theirs, rtol=1e-5, atol=1e-9)
    # with the in-place ReLU left in, torchcam alone sees the post-ReLU tensor instead
    assert not torch.allclose(ours, raw_torchcam(method, net, x, "features.1", CLASSES))


@pytest.mark.parametrize("method", ["gradcampp", "layercam", "finercam"])
def test_a_head_layer_from_the_features_equals_from_the_images(method):
    net, x, f = setup(FCHeadNet)
    from_f = loc(method, layer="head.0")(net, x, f, CLASSES)
    from_x = loc(method, layer="head.0")(net, x, None, CLASSES)
    assert from_f.shape == (3, 3, 2, 2)
    allclose(from_f, from_x, rtol=1e-6, atol=1e-12)


def test_layer_errors():
    net, x, f = setup(GapNet)
    with pytest.raises(WSOLError, match=r"localizer.layer='nope' is no module"):
        TorchCAM("xgradcam", layer="nope")(net, x, f, CLASSES)
    with pytest.raises(WSOLError, match=r"must output \(B, K, h, w\) maps, got \(3, 4\)"):
        TorchCAM("xgradcam", layer="head.fc")(net, x, None, CLASSES)
    with pytest.raises(WSOLError, match="needs the images"):
        TorchCAM("xgradcam", layer="features.0")(net, None, f, CLASSES)
    with pytest.raises(WSOLError, match="needs the images"):
        TorchCAM("scorecam")(net, None, f, CLASSES)
    # a gradcam_layer the forward pass does not run
    shared = make(SharedReluNet)
    xs = images(2, size=16)
    with pytest.raises(WSOLError, match=r"layer=null \(features, the gradcam_layer\) is not used"):
        TorchCAM("scorecam")(shared, xs, None, CLASSES[:2])


# ---- batching and the replay -------------------------------------------------------------
@pytest.mark.parametrize("method", ["gradcampp", "scorecam", "iscam"])
def test_max_batch_does_not_change_deterministic_maps(method):
    net, x, f = setup(GapNet, b=5)
    classes = torch.tensor([[0, 1], [2, 2], [3, 0], [1, 3], [0, 0]])
    whole = loc(method, max_batch=8, score_batch=64)(net, x, f, classes)
    pieces = loc(method, max_batch=2, score_batch=5)(net, x, f, classes)
    allclose(whole, pieces, rtol=1e-6, atol=1e-12)


def test_score_cam_runs_its_forward_passes_once_for_all_columns():
    net, x, f = setup(GapNet)
    heads = []
    handle = net.head.register_forward_hook(lambda *a: heads.append(1))
    try:
        one = TorchCAM("scorecam", score_batch=4)
        one(net, x, f, CLASSES[:, :1])
        single = len(heads)
        heads.clear()
        three = TorchCAM("scorecam", score_batch=4)
        three(net, x, f, CLASSES)
    finally:
        handle.remove()
    # 3 images x 6 channels in chunks of 4 = 5 masked passes, + the baseline + our forward
    assert single == 7
    assert len(heads) == single and three.replay_counts == {"replayed": 12, "ran": 6}


def test_replay_runs_an_input_that_differs_from_the_record():
    calls = []

    def run(x):
        calls.append(x)
        return torch.stack([x.sum((1, 2, 3)), -x.sum((1, 2, 3)), x.amax((1, 2, 3))], 1)

    replay = _Replay(torch.tensor([0, 2]), 3)
    a, b = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    first = replay(a, run)
    replay.rewind(recording=False)
    again = replay(a, run)
    assert len(calls) == 1 and torch.equal(again[:, [0, 2]], first[:, [0, 2]])
    assert again[:, 1].isnan().all()  # a column nobody asked for is not made up
    replay.rewind(recording=False)
    other = replay(b, run)
    assert len(calls) == 2 and torch.equal(other, run(b))
    # the records hold no tensor: kept for a whole call between large short-lived
    # batches, small tensors pinned glibc's heap (SS-CAM's process grew ~10 MB per pass)
    assert not any(isinstance(v, torch.Tensor) for v in _leaves(replay.records))
    # a replayed record is the recorded logits exactly, in their dtype (float64 here)
    c = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    replay = _Replay(torch.tensor([0, 2]), 3)
    first = replay(c, run)
    replay.rewind(recording=False)
    again = replay(c, run)
    assert again.dtype == torch.float64 and torch.equal(again[:, [0, 2]], first[:, [0, 2]])


def _leaves(x):
    if isinstance(x, (list, tuple)):
        for v in x:
            yield from _leaves(v)
    else:
        yield x


# ---- state after use and after errors ----------------------------------------------------
class LateWire(Tripwire):
    """Raises `Boom` on its ``at``-th call: inside torchcam's own forward passes."""

    def __init__(self, at: int):
        super().__init__()
        self.at, self.calls = at, 0

    def forward(self, x):
        self.calls += 1
        if self.calls == self.at:
            raise Boom("late tripwire")
        return x


@pytest.mark.parametrize("method", ALL)
@pytest.mark.parametrize("where", [0, -1])  # the tripwire after the features, or in the head
def test_state_restored_after_an_exception_in_forward(method, where):
    net, x, f = setup(FCHeadNet)
    out = loc(method)(net, x, f, CLASSES)  # warm: nothing left behind by a good call
    assert torch.isfinite(out).all()
    mixed_state(net)
    before = snapshot(net)
    wire = tripwires(net)[where]
    wire.armed = True
    with pytest.raises(Boom):
        # a tripwire in the features only runs when the localizer computes them
        loc(method)(net, x, f if where == -1 else None, CLASSES)
    wire.armed = False
    assert not hooks_left(net)
    assert_same_state(before, net)


@pytest.mark.parametrize("method", ["smoothgradcampp", "scorecam", "sscam", "iscam"])
def test_state_restored_after_an_exception_inside_torchcam(method):
    """The second forward pass is one of torchcam's (a noisy copy, the baseline)."""
    net, x, f = setup(FCHeadNet)
    net.head[1] = LateWire(at=2)
    mixed_state(net)
    before = snapshot(net)
    with pytest.raises(Boom, match="late"):
        loc(method)(net, x, f, CLASSES)
    assert not hooks_left(net)
    assert_same_state(before, net)


@pytest.mark.parametrize("method", ["gradcampp", "finercam", "scorecam"])
def test_state_restored_after_torchcam_refuses_a_class(method):
    net, x, f = setup(FCHeadNet)
    mixed_state(net)
    before = snapshot(net)
    with pytest.raises((RuntimeError, IndexError, ValueError)):
        loc(method)(net, x, f, torch.tensor([[0], [1], [99]]))
    assert not hooks_left(net)
    assert_same_state(before, net)


def test_noise_is_seeded_and_the_callers_generator_kept():
    net, x, f = setup(GapNet)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = loc("smoothgradcampp")(net, x, f, CLASSES)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(7)
    assert torch.equal(a, loc("smoothgradcampp")(net, x, f, CLASSES))
    assert not torch.equal(a, loc("smoothgradcampp", seed=1)(net, x, f, CLASSES))


# ---- settings ----------------------------------------------------------------------------
def test_a_bad_method_is_one_line_listing_the_valid_ones():
    with pytest.raises(WSOLError) as e:
        TorchCAM("gradcam++")
    msg = str(e.value)
    assert "\n" not in msg and "localizer.method='gradcam++'" in msg
    assert "valid: " + ", ".join(ALL) in msg
    assert TorchCAM("ScoreCAM").method == "scorecam"  # torchcam's class names work too
    with pytest.raises(
        WSOLError,
        match=r"'GradCAM' is not a torchcam method here \(the suite's own: localizer=gradcam\)",
    ):
        TorchCAM("GradCAM")


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (
            {"method": "scorecam", "std": 1.0},
            r"localizer.std=1.0 does not apply to method=scorecam",
        ),
        ({"method": "gradcampp", "num_samples": 3}, r"num_samples=3 does not apply"),
        ({"method": "sscam", "std": -1.0}, r"localizer.std must be a positive number"),
        ({"max_batch": 0}, r"localizer.max_batch must be a positive integer, got 0"),
        ({"score_batch": 1.5}, r"localizer.score_batch must be a positive integer, got 1.5"),
        ({"seed": 0.5}, r"localizer.seed must be an integer"),
        ({"max_batch": "abc"}, r"localizer.max_batch must be a positive integer, got 'abc'"),
    ],
)
def test_bad_settings(kw, match):
    with pytest.raises(WSOLError, match=match):
        TorchCAM(**kw)


def test_the_config_builds_the_localizer():
    from hydra.utils import instantiate

    from tests.helpers import compose_config

    cfg = compose_config(["localizer=torchcam", "localizer.method=iscam", "localizer.max_batch=2"])
    built = instantiate(cfg.localizer)
    assert isinstance(built, TorchCAM) and built.name == "torchcam-iscam"
    assert (built.max_batch, built.needs_grad, built.needs_images) == (2, False, True)


@pytest.mark.parametrize("device", DEVICES)
def test_maps_on_the_models_device(device):
    net = make(FCHeadNet, dtype=torch.float32).to(device).eval()
    x = images(2, size=8, dtype=torch.float32).to(device)
    f = features_of(net, x)
    classes = torch.tensor([[0, 1], [2, 2]], device=device)
    for method in ("layercam", "smoothgradcampp", "sscam"):
        maps = loc(method)(net, x, f, classes)
        assert maps.device.type == device and maps.dtype == torch.float32


# ---- the suite's cam and gradcam are torchcam's CAM and GradCAM --------------------------
def close_to(ours: torch.Tensor, theirs: torch.Tensor, tol: float = 1e-4) -> None:
    """Equal to ``tol`` of the maps' largest magnitude."""
    scale = theirs.abs().amax().clamp_min(1e-12)
    assert ((ours - theirs).abs().amax() / scale) <= tol


def _tiny_gap(pool: str):
    from wsol.models import build_model

    torch.manual_seed(3)
    return build_model("tiny_gap", num_classes=5, pool=pool)


#: the suite's networks at test size: (builder, image size)
SUITE_NETS = {
    "test_gap": (lambda: make(GapNet, dtype=torch.float32), 32),
    "tiny_gap": (lambda: _tiny_gap("avg"), 64),
    "tiny_gap_max": (lambda: _tiny_gap("max"), 64),
    "test_fc": (lambda: make(FCHeadNet, dtype=torch.float32), 8),
}


def suite_net(name: str):
    build, size = SUITE_NETS[name]
    net = build().eval()
    x = images(3, size=size, dtype=torch.float32)
    return net, x, torch.tensor([[0, 1, 3], [2, 2, 0], [3, 1, 2]])


@pytest.mark.parametrize("name", ["test_gap", "tiny_gap", "tiny_gap_max"])
def test_suite_cam_is_torchcams_cam(name):
    net, x, classes = suite_net(name)
    ours = CAM()(net, x, features_of(net, x), classes)
    theirs = []
    with tcm.CAM(net, "features", "head.fc") as extractor:
        with torch.no_grad():
            net(x)
        for j in range(classes.shape[1]):
            theirs.append(extractor(class_idx=classes[:, j].tolist(), normalized=False)[0])
    close_to(ours, torch.stack(theirs, 1))


@pytest.mark.parametrize(
    ("name", "layer"),
    [
        ("test_gap", None),
        ("tiny_gap", None),
        ("tiny_gap_max", None),
        ("tiny_gap", "features.4"),
        ("test_fc", None),
        ("test_fc", "head.0"),
    ],
)
def test_suite_gradcam_is_torchcams_gradcam(name, layer):
    net, x, classes = suite_net(name)
    ours = GradCAM(layer)(net, x, features_of(net, x), classes)
    theirs = []
    # features.4 (tiny_gap's second BatchNorm) is followed by an in-place ReLU, which
    # torchcam would see; the suite weighs the layer's own output
    plain_net = no_inplace(net)
    with tcm.GradCAM(plain_net, layer or "features") as extractor:
        scores = plain_net(x)
        for j in range(classes.shape[1]):
            out = extractor(
                class_idx=classes[:, j].tolist(), scores=scores, normalized=False, retain_graph=True
            )
            theirs.append(out[0])
    close_to(ours, torch.stack(theirs, 1))


def test_the_cost_benchmark_runs_and_scales_the_sampled_methods():
    from wsol.bench.maps_bench import run, table

    rows = run(model="tiny_gap", size=16, images=1, repeats=1, only=["cam", "scorecam", "sscam"])
    by = {r["localizer"]: r for r in rows}
    assert set(by) == {
        "forward pass (features + head)",
        "cam",
        "torchcam scorecam",
        "torchcam sscam",
    }
    assert by["torchcam sscam"]["scale"] == 35 and by["torchcam scorecam"]["scale"] == 1
    assert all(r["s_per_image"] > 0 and r["x_forward"] > 0 for r in rows)
    assert "(x35, scaled)" in table(rows)
