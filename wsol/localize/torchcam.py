"""``localizer=torchcam localizer.method=NAME``: the post-hoc CAM methods of torchcam
(frgfm/torch-cam, PyPI ``torchcam`` 0.5), computed by torchcam itself, behind the suite's
localizer interface.

Methods (``localizer.method``; torchcam's class names, lower-cased, are the values):

- gradient methods, one forward pass and one backward pass per class column:
  ``gradcampp`` (Grad-CAM++), ``xgradcam`` (XGrad-CAM), ``layercam`` (Layer-CAM),
  ``finercam`` (Finer-CAM: the target is ``y_c - 0.6 * mean(y_d)`` over the 3 classes
  whose scores are closest to ``y_c``, on Grad-CAM: torchcam's defaults);
- ``smoothgradcampp`` (Smooth Grad-CAM++): ``num_samples`` (torchcam: 4) noisy copies of
  the image (Gaussian, ``std`` 0.3 in normalised-input units), a forward and a backward
  pass each, per class column;
- Score-CAM family, no gradient: ``scorecam`` (Score-CAM), ``sscam`` (SS-CAM,
  ``num_samples`` 35 noisy mask sets, ``std`` 2.0 on masks in [0, 1]), ``iscam`` (IS-CAM,
  ``num_samples`` 10 integration steps). Each runs the network once per channel of the
  layer per sample: K = 1024 forward passes per image for GoogLeNet-GAP's layer, times
  ``num_samples``. ``score_batch`` is torchcam's ``batch_size``: masked images per
  forward pass (memory, not results).

Not offered: ``refinecam`` needs two or more layers and min-max normalises each layer's
map before multiplying them (no single-layer map at the layer's resolution); ``legrad``
is for vision transformers; ``cam`` and ``gradcam`` are the suite's own
(``localizer=cam``, ``localizer=gradcam``; tests hold them to torchcam's ``CAM`` and
``GradCAM``).

What torchcam does to the maps. Every method here ends with a ReLU of the weighted sum
of activations (torchcam's ``_relu``, set for all of them, Grad-CAM++'s included whatever
its docstring's formula shows), so the maps are >= 0. ``normalized=False`` is passed on
every call, so torchcam's min-max normalisation of the output is skipped: the maps are
on the activations' scale, unnormalised, as the protocols expect. What stays inside a
method: the Score-CAM family min-max normalises each channel to build its masks and
softmaxes its channel weights. Two properties of torchcam 0.5.0's code, kept as they are
(the maps are torchcam's): in Grad-CAM++ the division by the alpha denominator acts on
a copy (``alpha[idx][mask].div_``), so its channel weights are
``sum_ij (dY/dA)^2 ReLU(dY/dA)``; Smooth Grad-CAM++ weighs the activations of its last
noisy copy, not the clean image's.

How the suite drives torchcam (all inside `Localizer.__call__`'s guards: eval mode,
frozen parameters, autograd on for the gradient methods, everything restored after an
error too):

- The layer: ``layer`` (a dotted module name) or ``net.gradcam_layer`` (the output of
  ``forward_features``). A hook of the suite's on the layer checks that it outputs
  (B, K, h, w) maps once per forward pass and passes a copy on, so that an in-place op
  after it (``ReLU(inplace=True)``) cannot change what torchcam weighs: the maps are of
  the layer's own output, as ``localizer=gradcam``'s. For the gradient methods the hook
  also makes that output a leaf that requires grad: torchcam differentiates the score
  with respect to the layer's output, which with frozen parameters and images that do
  not require grad would be connected to nothing; and nothing before the layer is
  recorded by autograd.
- Reused forward passes. torchcam computes one class per image per call, so the J
  columns of ``classes`` take one call each (a class repeated in a row, such as the
  ground truth that is also the top-1 prediction, is computed once: the calls are the
  rounds of each row's distinct classes). Gradient methods: one forward pass per chunk
  of images, its graph (only the part after the layer) kept for the J backward passes.
  At the default layer, or one in the head, with the evaluation's ``features`` given,
  only the head runs. Score-CAM family: the first call's forward passes are recorded
  (the logits at the chunk's classes) and replayed to the later calls, which make the
  same masked images (the masks depend on the activations only); each replayed input is
  checked against the recorded one (shape and per-image sums of values and squares) and
  run for real if it differs. Smooth Grad-CAM++ interleaves its forward and backward
  passes inside torchcam, so each column pays its own.
- ``max_batch``: images per torchcam call (memory: SS-CAM and IS-CAM hold the
  activations upsampled to the input, B x K x H x W, about 0.2 GB per image for
  GoogLeNet-GAP at 224 px, and the replay holds ``max_batch * J`` logits per masked image).
- ``seed``: the noise of ``smoothgradcampp`` and ``sscam`` is drawn from torch's CPU
  generator seeded with ``seed`` before every torchcam call (the caller's generator state
  is put back), so a map depends on its image and its place in the chunk, not on the
  caller's random state or on the other classes asked.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from wsol.errors import WSOLError
from wsol.localize.base import Localizer, resolve_layer
from wsol.localize.hooks import frozen_for_grad, plain

__all__ = ["METHODS", "TorchCAM"]


@dataclass(frozen=True)
class _Method:
    cls: str  # the torchcam.methods class
    family: str  # "gradient" | "smooth" | "score"
    settings: tuple[str, ...] = ()  # which of num_samples / std it takes
    stochastic: bool = False


METHODS = {
    "gradcampp": _Method("GradCAMpp", "gradient"),
    "xgradcam": _Method("XGradCAM", "gradient"),
    "layercam": _Method("LayerCAM", "gradient"),
    "finercam": _Method("FinerCAM", "gradient"),
    "smoothgradcampp": _Method("SmoothGradCAMpp", "smooth", ("num_samples", "std"), True),
    "scorecam": _Method("ScoreCAM", "score"),
    "sscam": _Method("SSCAM", "score", ("num_samples", "std"), True),
    "iscam": _Method("ISCAM", "score", ("num_samples",)),
}

#: the hook dictionaries of an nn.Module (forward, pre-forward, backward, their variants)
_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
)


@contextlib.contextmanager
def _hooks_restored(net: nn.Module) -> Iterator[None]:
    """Every hook added to a module of ``net`` inside the block is removed on exit.

    torchcam removes its own hooks in ``__exit__``; this also covers a constructor that
    fails after registering some, whatever torchcam's version does."""
    before = [
        (d, set(d))
        for m in net.modules()
        for name in _HOOK_DICTS
        if (d := getattr(m, name, None)) is not None
    ]
    try:
        yield
    finally:
        for d, keys in before:
            for k in [k for k in d if k not in keys]:
                del d[k]


class _Model(nn.Module):
    """The model torchcam hooks and calls: logits from the images (``net``), or from the
    features (``net.forward_head``) when the layer is the network's features or in its
    head. ``source`` is an identity on the input, the layer torchcam weighs when that
    layer is the features themselves. ``replay`` (Score-CAM family) answers repeated
    forward passes from a record."""

    def __init__(self, net: nn.Module, from_features: bool):
        super().__init__()
        self.source = nn.Identity()
        self.net = net
        self.from_features = from_features
        self.replay: _Replay | None = None

    def run(self, x: torch.Tensor) -> torch.Tensor:
        x = self.source(x)
        return self.net.forward_head(x) if self.from_features else self.net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.replay(x, self.run) if self.replay is not None else self.run(x)


def _fingerprint(x: torch.Tensor) -> tuple:
    """A forward pass's input as plain Python values: shape, dtype, per-image sums of
    values and of squares (float64). The replay keeps one per pass for a whole call, so
    nothing in it is a tensor: thousands of small tensors kept between the large,
    short-lived masked batches pin glibc's heap, and the process grew by about one batch
    (10 MB) per recorded pass (13 GB for SS-CAM at torchcam's defaults on 8 tiny_gap
    images at 160 px; a fixed ``MALLOC_MMAP_THRESHOLD_`` kept it at 0.9 GB)."""
    flat = x.detach().flatten(1)
    return (
        tuple(x.shape),
        x.dtype,
        flat.sum(1, dtype=torch.float64).tolist(),
        flat.square().sum(1, dtype=torch.float64).tolist(),
    )


class _Replay:
    """The forward passes of a Score-CAM call, recorded, for the later calls of the same
    images with other classes: torchcam makes the same masked inputs in the same order
    (masks from the activations; seeded noise), so the i-th forward pass of a later call
    is answered with the i-th record when its input has the same fingerprint, and run for
    real otherwise. Only the logits at the chunk's classes (``union``) are kept; the
    other columns are NaN, so a method that read them would show it. Records are Python
    values (`_fingerprint`), not tensors, so they pin no memory between passes."""

    def __init__(self, union: torch.Tensor, num_classes: int):
        self.union = union
        self.num_classes = num_classes
        self.records: list[tuple[tuple, list]] = []
        self.cursor = 0
        self.recording = True
        self.dtype = torch.float32  # the recorded logits' (set by the first record)
        self.replayed = 0
        self.ran = 0

    def rewind(self, recording: bool) -> None:
        self.cursor = 0
        self.recording = recording

    def __call__(self, x: torch.Tensor, run) -> torch.Tensor:
        key = _fingerprint(x)
        i, self.cursor = self.cursor, self.cursor + 1
        if not self.recording and i < len(self.records) and self.records[i][0] == key:
            kept = self.records[i][1]
            out = x.new_full((len(kept), self.num_classes), float("nan"), dtype=self.dtype)
            out[:, self.union] = torch.tensor(kept, dtype=self.dtype, device=x.device)
            self.replayed += 1
            return out
        logits = run(x)
        self.ran += 1
        if self.recording:
            self.dtype = logits.dtype
            self.records.append((key, logits.index_select(1, self.union).tolist()))
        return logits


class _Tap:
    """The suite's hooks on the layer, around torchcam's: ``before`` (first) checks the
    output and, for gradient methods under autograd, turns it into a detached leaf that
    requires grad; ``after`` (last) passes a copy on. ``reset`` (a pre-hook on the
    model) starts each forward pass's count."""

    def __init__(self, label: str, leaf: bool):
        self.label = label
        self.leaf = leaf
        self.calls = 0

    def reset(self, _module, _inputs) -> None:
        self.calls = 0

    def before(self, _module, _inputs, output):
        self.calls += 1
        if self.calls > 1:
            raise WSOLError(
                f"localizer.layer={self.label} runs more than once in a forward pass; "
                "name a module that runs once"
            )
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            what = (
                tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            )
            raise WSOLError(
                f"localizer.layer={self.label} must output (B, K, h, w) maps, got {what}"
            )
        if self.leaf and torch.is_grad_enabled():
            return plain(output).requires_grad_(True)
        return None

    def after(self, _module, _inputs, output):
        return output.clone()


def _rounds(classes: torch.Tensor) -> tuple[list[list[int]], torch.Tensor]:
    """The torchcam calls for ``classes`` (b, J): call ``r`` asks each image for its
    ``r``-th distinct class (its first one where it has fewer), and ``where`` (b, J)
    says which call made the map of ``(row, column)``."""
    rows = classes.tolist()
    where = torch.empty(classes.shape, dtype=torch.long)
    distinct: list[list[int]] = []
    for b, row in enumerate(rows):
        seen: dict[int, int] = {}
        for j, c in enumerate(row):
            where[b, j] = seen.setdefault(int(c), len(seen))
        distinct.append(list(seen))
    n = max(len(d) for d in distinct)
    return [[d[r] if r < len(d) else d[0] for d in distinct] for r in range(n)], where


def _integer(key: str, value, low: int | None = None) -> int:
    """``value`` as an int (an integral float too), else a one-line WSOLError."""
    try:
        ok = not isinstance(value, bool) and int(value) == value
    except (TypeError, ValueError):
        ok = False
    if not ok or (low is not None and int(value) < low):
        what = "a positive integer" if low == 1 else "an integer"
        raise WSOLError(f"localizer.{key} must be {what}, got {value!r}")
    return int(value)


class TorchCAM(Localizer):
    """torchcam's ``method`` maps (B, J, h, w) at ``layer`` (default:
    ``net.gradcam_layer``), for GAP and fully connected networks alike."""

    name = "torchcam"

    def __init__(
        self,
        method: str = "gradcampp",
        layer: str | None = None,
        max_batch: int = 8,
        score_batch: int = 32,
        num_samples: int | None = None,
        std: float | None = None,
        seed: int = 0,
    ):
        key = str(method).lower()
        if key not in METHODS:
            own = f" (the suite's own: localizer={key})" if key in ("cam", "gradcam") else ""
            raise WSOLError(
                f"localizer.method={method!r} is not a torchcam method here{own}; "
                f"valid: {', '.join(sorted(METHODS))}"
            )
        self.method = key
        self.spec = METHODS[key]
        self.name = f"torchcam-{key}"
        self.layer = layer or None
        self.max_batch = _integer("max_batch", max_batch, 1)
        self.score_batch = _integer("score_batch", score_batch, 1)
        for setting, value in (("num_samples", num_samples), ("std", std)):
            if value is not None and setting not in self.spec.settings:
                takers = [n for n, m in sorted(METHODS.items()) if setting in m.settings]
                raise WSOLError(
                    f"localizer.{setting}={value!r} does not apply to method={key} "
                    f"(only {', '.join(takers)}); set it to null"
                )
        self.num_samples = None if num_samples is None else _integer("num_samples", num_samples, 1)
        if std is not None and not (
            isinstance(std, int | float)
            and not isinstance(std, bool)
            and math.isfinite(std)
            and std > 0
        ):
            raise WSOLError(f"localizer.std must be a positive number, got {std!r}")
        self.std = None if std is None else float(std)
        self.seed = _integer("seed", seed)
        family = self.spec.family
        #: the Score-CAM family needs no backward pass; it still runs in eval mode
        self.needs_grad = family != "score"
        #: only gradient methods can start from the features (noise and masks act on images)
        self.needs_images = family != "gradient"
        #: the last call's replay counts (Score-CAM family), for tests and the benchmark
        self.replay_counts = {"replayed": 0, "ran": 0}

    # ---- which layer ----------------------------------------------------------------------
    def resolve(self, net: nn.Module) -> tuple[nn.Module, str]:
        """The layer's module (`resolve_layer`) and its dotted name in ``net``."""
        module = resolve_layer(net, self.layer)
        if self.layer is not None:
            return module, self.layer
        name = next((n for n, m in net.named_modules() if m is module and n), None)
        if name is None:
            what = getattr(net, "name", type(net).__name__)
            raise WSOLError(
                f"model {what}: its gradcam_layer is no submodule; set localizer.layer=NAME"
            )
        return module, name

    # ---- the maps -------------------------------------------------------------------------
    def maps(self, net, images, features, classes) -> torch.Tensor:
        module, name = self.resolve(net)
        default = module is getattr(net, "gradcam_layer", None)
        in_head = any(module is m for m in getattr(net, "head", nn.Identity()).modules())
        from_features = (
            self.spec.family == "gradient" and features is not None and (default or in_head)
        )
        if not from_features and images is None:
            raise WSOLError(
                f"localizer={self.name} with layer={self.layer or name!r} needs the images"
            )
        target = "source" if from_features and default else f"net.{name}"
        label = repr(self.layer) if self.layer else f"null ({name}, the gradcam_layer)"
        source = plain(features if from_features else images)
        classes = plain(classes)
        self.replay_counts = {"replayed": 0, "ran": 0}
        guard = contextlib.nullcontext() if self.needs_grad else frozen_for_grad(net)
        with guard:
            parts = [
                self._chunk(
                    net,
                    from_features,
                    target,
                    label,
                    source[s : s + self.max_batch],
                    classes[s : s + self.max_batch],
                )
                for s in range(0, classes.shape[0], self.max_batch)
            ]
        return torch.cat(parts)

    def _extractor(self, model: nn.Module, target: str):
        import torchcam.methods

        kw = {}
        if self.spec.family == "score":
            kw["batch_size"] = self.score_batch
        if self.num_samples is not None:
            kw["num_samples"] = self.num_samples
        if self.std is not None:
            kw["std"] = self.std
        return getattr(torchcam.methods, self.spec.cls)(model, target_layer=target, **kw)

    def _seeded(self):
        """torch's CPU generator seeded for one torchcam call and put back afterwards
        (torchcam draws its noise on the CPU, then moves it)."""
        if not self.spec.stochastic:
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        stack.enter_context(torch.random.fork_rng(devices=[]))
        torch.default_generator.manual_seed(self.seed)
        return stack

    def _chunk(
        self,
        net: nn.Module,
        from_features: bool,
        target: str,
        label: str,
        x: torch.Tensor,
        classes: torch.Tensor,
    ) -> torch.Tensor:
        """Maps (b, J, h, w) of one chunk of images: one torchcam extractor, one call per
        round of distinct classes."""
        rounds, where = _rounds(classes)
        model = _Model(net, from_features)
        tap = _Tap(label, leaf=self.spec.family != "score")
        family = self.spec.family
        with contextlib.ExitStack() as stack:
            stack.enter_context(_hooks_restored(net))
            extractor = stack.enter_context(self._extractor(model, target))
            layer = model.get_submodule(target)
            for handle in (
                model.register_forward_pre_hook(tap.reset),
                layer.register_forward_hook(tap.before, prepend=True),
                layer.register_forward_hook(tap.after),
            ):
                stack.callback(handle.remove)

            def forward() -> torch.Tensor:
                logits = model(x)
                if tap.calls != 1:
                    raise WSOLError(
                        f"localizer.layer={label} is not used in the network's forward pass"
                    )
                return logits

            cams = []
            if family == "gradient":
                logits = forward()
                for r, cls in enumerate(rounds):
                    out = extractor(
                        class_idx=cls,
                        scores=logits,
                        normalized=False,
                        retain_graph=r < len(rounds) - 1,
                    )
                    cams.append(out[0])
            elif family == "smooth":
                for cls in rounds:
                    # the clean pass sets torchcam's input and activations for this call
                    # (its noisy passes overwrite the activations)
                    with torch.no_grad():
                        forward()
                    with self._seeded():
                        cams.append(extractor(class_idx=cls, normalized=False)[0])
            else:
                with torch.no_grad():
                    logits = forward()
                    if len(rounds) > 1:
                        union = torch.unique(classes).to(logits.device)
                        model.replay = _Replay(union, logits.shape[1])
                    for r, cls in enumerate(rounds):
                        if model.replay is not None:
                            model.replay.rewind(recording=r == 0)
                        with self._seeded():
                            cams.append(extractor(class_idx=cls, normalized=False)[0])
                    if model.replay is not None:
                        self.replay_counts["replayed"] += model.replay.replayed
                        self.replay_counts["ran"] += model.replay.ran
        stacked = torch.stack([c.detach() for c in cams])  # (rounds, b, h, w)
        if stacked.ndim != 4:
            raise RuntimeError(
                f"torchcam {self.spec.cls} made maps of shape {tuple(stacked.shape[1:])}; "
                "expected (b, h, w)"
            )
        b = classes.shape[0]
        rows = torch.arange(b, device=stacked.device)[:, None]
        return stacked[where.to(stacked.device), rows].float()
