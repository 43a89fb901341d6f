"""What a localizer is: ``localizer(net, images, features, classes) -> maps``.

- ``classes``: (B, J) integers; column 0 is the ground-truth class, columns 1..k the
  top-k predicted classes in descending score.
- ``features``: the output of ``net.forward_features(images)`` when the caller already
  has it (map makers that can reuse the forward pass do), else None.
- returns float32 (B, J, h, w): unnormalised, larger means "more object", at the
  localizer's native resolution (the conv map for CAM and Grad-CAM, the input for
  Backprop, a fixed grid for the baselines). Protocols resize and normalise as they
  define.

`Localizer.__call__` is the one entry point (as torch-cam's ``_CAM``): it checks the
inputs once for every map maker (the network and the images or features it needs,
4-D tensors, ``classes`` as (B, J) with B matching the batch, moved to the batch's
device as int64), puts a network that needs gradients in eval mode with frozen
parameters and autograd on (`wsol.localize.hooks`: flags, ``.grad`` and hooks restored
in ``finally``, also after an error), calls the subclass's `maps`, and checks the maps'
shape. A subclass writes only `maps` and declares what it needs:

- ``needs_network``: False for the trivial baselines (``net`` and ``images`` may be None);
- ``needs_images``: the maps need the images themselves (Backprop), not only features;
- ``needs_grad``: the maps need a backward pass;
- ``needs_cam``: the maps are the network's own class activation maps, so the network
  must have a CAM head (``net.has_cam``); `can_localize` tells a caller beforehand.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from wsol.errors import WSOLError


class Localizer:
    name = "base"
    #: True when the maps need a backward pass (the evaluation loop must allow autograd)
    needs_grad = False
    #: True when the maps need a network (False: trivial baselines)
    needs_network = True
    #: True when the maps need the images, not only ``net.forward_features(images)``
    needs_images = False
    #: True when the maps are the network's CAM (a global pool and one linear layer)
    needs_cam = False

    def can_localize(self, net: nn.Module | None) -> bool:
        """Whether this localizer makes maps for ``net`` (False: a CAM localizer and a
        network without a CAM head)."""
        return not self.needs_cam or bool(getattr(net, "has_cam", False))

    def __call__(
        self,
        net: nn.Module | None,
        images: torch.Tensor | None,
        features: torch.Tensor | None,
        classes: torch.Tensor,
    ) -> torch.Tensor:
        classes = self._checked(net, images, features, classes)
        guard = contextlib.nullcontext()
        if self.needs_grad:
            from wsol.localize.hooks import autograd_on, frozen_for_grad

            guard = contextlib.ExitStack()
            guard.enter_context(frozen_for_grad(net))
            guard.enter_context(autograd_on())
        with guard:
            maps = self.maps(net, images, features, classes)
        if maps.ndim != 4 or tuple(maps.shape[:2]) != tuple(classes.shape):
            raise RuntimeError(
                f"localizer={self.name} made maps of shape {tuple(maps.shape)} for classes "
                f"of shape {tuple(classes.shape)}; expected (B, J, h, w)"
            )
        return maps

    def maps(
        self,
        net: nn.Module | None,
        images: torch.Tensor | None,
        features: torch.Tensor | None,
        classes: torch.Tensor,
    ) -> torch.Tensor:
        """The subclass's map maker, called with checked inputs (``classes`` int64 on
        the batch's device)."""
        raise NotImplementedError

    # ---- the checks every map maker shares ------------------------------------------------
    def _checked(self, net, images, features, classes) -> torch.Tensor:
        what = f"localizer={self.name}"
        if self.needs_network and net is None:
            raise WSOLError(f"{what} needs the network")
        if self.needs_cam and not getattr(net, "has_cam", False):
            raise WSOLError(
                f"model {getattr(net, 'name', type(net).__name__)} has no class activation map "
                "(its head is not a global pool and one linear layer); use localizer=gradcam or localizer=backprop"
            )
        if self.needs_images and images is None:
            raise WSOLError(f"{what} needs the images")
        if self.needs_network and images is None and features is None:
            raise WSOLError(f"{what} needs the images or their features")
        for label, t in (("images", images), ("features", features)):
            if t is not None and (not isinstance(t, torch.Tensor) or t.ndim != 4):
                shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise WSOLError(f"{what} needs (B, C, h, w) {label}, got {shape}")
        if not isinstance(classes, torch.Tensor) or classes.ndim != 2 or classes.numel() == 0:
            shape = tuple(classes.shape) if isinstance(classes, torch.Tensor) else classes
            raise ValueError(f"classes must be a non-empty (B, J) tensor, got {shape}")
        if classes.is_floating_point() or classes.is_complex():
            raise ValueError(f"classes must be integers, got {classes.dtype}")
        batch = images if images is not None else features
        if batch is not None and batch.shape[0] != classes.shape[0]:
            raise ValueError(
                f"classes {tuple(classes.shape)} do not match the batch of {batch.shape[0]} images"
            )
        device = batch.device if batch is not None else classes.device
        return classes.to(device=device, dtype=torch.long)


def resolve_layer(net: nn.Module, layer: str | None) -> nn.Module:
    """The module named ``layer`` (dotted) in ``net``, or ``net.gradcam_layer`` when
    ``layer`` is None: the one lookup of ``localizer.layer`` for every map maker that
    reads a layer (Grad-CAM, torchcam's methods); one-line errors naming the value."""
    what = getattr(net, "name", type(net).__name__)
    if layer is None:
        module = getattr(net, "gradcam_layer", None)
        if module is None:
            raise WSOLError(
                f"model {what} names no Grad-CAM layer; "
                "set localizer.layer=NAME (a dotted module name such as features.28)"
            )
        return module
    try:
        return net.get_submodule(layer)
    except AttributeError:
        names = [n for n, _ in net.named_modules() if n]
        raise WSOLError(
            f"localizer.layer={layer!r} is no module of model {what} "
            f"(its last modules: {', '.join(names[-8:])})"
        ) from None
