"""``localizer=gradcam``: Grad-CAM (Selvaraju et al., ICCV 2017).

For a layer whose output is ``A`` (B, K, h, w) and the class score ``y_c`` (the logit,
before the softmax): ``alpha_k^c = mean over (i, j) of d y_c / d A_k(i, j)`` and
``M_c = ReLU(sum_k alpha_k^c A_k)``, at the layer's resolution. Only ``net`` mapping
images to logits is needed, so fully connected heads work too.

For a global-average-pool network with one linear layer (``has_cam``),
``d y_c / d A_k(i, j) = w_k^c / (h w)``, hence ``M_c = ReLU(CAM_c) / (h w)``: Grad-CAM
is the CAM up to a positive factor and the ReLU.

The layer (``layer=None``, the default, or a dotted module name relative to the
network, e.g. ``features.28``):

- **default** (``net.gradcam_layer``, whose output is the output of
  ``forward_features``): the evaluation loop's ``features`` are reused (or computed once
  under ``torch.no_grad()``) and only the head runs under autograd. Every distinct
  (image, class) pair of ``classes`` gets its own copy of its image's features (a class
  repeated in a row is computed once), the head scores the copies, each copy's own
  logit is picked and the picks are summed: one backward pass through the head per
  chunk of at most ``max_batch`` copies (the head's inputs are independent in eval mode,
  so the gradient for copy ``n`` is exactly that of its own class).
- **another layer**: a forward hook on the layer replicates its output ``A`` to one row
  per distinct (image, class) pair, as a detached leaf that requires grad (nothing
  before the layer is recorded by autograd, and the distinct images run up to the layer
  once), and passes a copy of it on (so that an in-place op after the layer, such as
  ``ReLU(inplace=True)``, cannot change the leaf); the rest of the network scores the
  rows and one backward pass gives every row's gradient. That is exact only where the
  rest of the network sees the layer's output alone, which is decided from the layer's
  place (`chains_to`): a module reached from ``features`` or ``head`` through
  ``nn.Sequential`` containers only. A layer inside a multi-branch block (a residual
  sum, an inception concat, a custom head) would meet a tensor of the un-replicated
  batch after it, so there the *input* (the images, or the features for a layer of the
  head) is replicated instead: one row per pair through the whole network, exact and
  costlier.
  The hook raises an error when the layer does not output (B, K, h, w) maps or runs
  more than once in a forward pass (e.g. a ReLU module shared within a ResNet block).
  When the layer is part of ``net.head`` and ``features`` is given, only the head runs.

  Measured alternative, not used: one forward of B rows and
  ``torch.autograd.grad(..., is_grads_batched=True)`` over the J one-hot gradients (vmap
  over the backward). On CPU (ResNet-50, 4 images of 112x112, 6 classes, a layer3
  block) it took 10 s against 4.4 s for replicating even the input, and it was slower
  than J separate backward passes: the batched backward of convolutions is no faster
  than a loop, while one backward pass of J*B rows uses the batch dimension well.

Memory bound: at most ``max_batch`` rows (pairs) per backward pass through the head
(default 256: the rows are the last conv maps, the graph is the head's), and at most
``layer_max_batch`` rows per forward/backward pass for another layer (default 64: the
graph is the network's part after the layer, or all of it when the input is
replicated). Chunks beyond the first repeat the part before the layer for their images.
"""

from __future__ import annotations

import torch
from torch import nn

from wsol.errors import WSOLError
from wsol.localize.base import Localizer, resolve_layer
from wsol.localize.hooks import forward_hook, plain, unique_pairs


def _weighted(grads: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
    """``ReLU(sum_k mean_ij(grads_k) acts_k)`` over the channel dimension (-3)."""
    alpha = grads.mean(dim=(-2, -1), keepdim=True)
    return torch.relu((alpha * acts).sum(dim=-3))


def chains_to(net: nn.Module, name: str) -> bool:
    """Whether the output of module ``name`` reaches the logits only through the modules
    after it in a chain: ``name`` is ``features...`` or ``head...`` of a network that
    runs ``head(features(x))`` (the `WSOLNet` forward), and every container between is
    an ``nn.Sequential`` running its children in order. A module inside a multi-branch
    block (a residual sum, an inception concat) does not: the block also uses its input."""
    from wsol.models.base import WSOLNet

    if not isinstance(net, WSOLNet) or any(
        getattr(type(net), f) is not getattr(WSOLNet, f)
        for f in ("forward", "forward_features", "forward_head")
    ):
        return False
    first, *rest = name.split(".")
    node = getattr(net, first, None) if first in ("features", "head") else None
    for part in rest:
        if not isinstance(node, nn.Sequential) or type(node).forward is not nn.Sequential.forward:
            return False
        node = node._modules.get(part)
    return node is not None


class GradCAM(Localizer):
    """Grad-CAM maps (B, J, h, w) of ``layer`` (default: ``net.gradcam_layer``)."""

    name = "gradcam"
    needs_grad = True

    def __init__(self, layer: str | None = None, max_batch: int = 256, layer_max_batch: int = 64):
        for key, value in (("max_batch", max_batch), ("layer_max_batch", layer_max_batch)):
            if int(value) < 1:
                raise WSOLError(f"localizer.{key} must be a positive integer, got {value!r}")
        self.layer = layer or None
        self.max_batch = int(max_batch)
        self.layer_max_batch = int(layer_max_batch)

    # ---- which layer ----------------------------------------------------------------------
    def resolve(self, net: nn.Module) -> nn.Module:
        """The module named ``layer`` in ``net`` (or ``net.gradcam_layer``)."""
        return resolve_layer(net, self.layer)

    def maps(self, net, images, features, classes) -> torch.Tensor:
        module = self.resolve(net)
        classes = plain(classes)
        if module is getattr(net, "gradcam_layer", None):
            if features is None:
                with torch.no_grad():
                    features = net.forward_features(plain(images))
            return self._from_features(net, plain(features), classes)
        return self._from_layer(net, module, images, features, classes)

    # ---- the default layer: backward through the head only ---------------------------------
    def _from_features(
        self, net: nn.Module, features: torch.Tensor, classes: torch.Tensor
    ) -> torch.Tensor:
        if features.ndim != 4:
            raise WSOLError(
                f"Grad-CAM needs (B, K, h, w) conv maps, got features of shape {tuple(features.shape)}"
            )

        def chunk(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            a = features.index_select(0, r).requires_grad_(True)
            score = net.forward_head(a).gather(1, c[:, None]).sum()
            (grad,) = torch.autograd.grad(score, a)
            return _weighted(grad, a.detach()).float()

        return self._by_pairs(classes, chunk, self.max_batch)

    # ---- any other layer: a hook that replicates at the layer ------------------------------
    def _from_layer(
        self,
        net: nn.Module,
        module: nn.Module,
        images: torch.Tensor | None,
        features: torch.Tensor | None,
        classes: torch.Tensor,
    ) -> torch.Tensor:
        in_head = features is not None and any(
            module is m for m in getattr(net, "head", nn.Identity()).modules()
        )
        if in_head:
            run, source = net.forward_head, plain(features)
        elif images is None:
            raise WSOLError(f"localizer=gradcam with layer={self.layer!r} needs the images")
        else:
            run, source = net, plain(images)
        # replicate at the layer only where nothing after it sees the un-replicated batch
        at_layer = chains_to(net, self.layer)

        def chunk(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            return self._layer_chunk(run, module, source, r, c, at_layer=at_layer)

        return self._by_pairs(classes, chunk, self.layer_max_batch)

    def _layer_chunk(
        self,
        run,
        module: nn.Module,
        source: torch.Tensor,
        r: torch.Tensor,
        c: torch.Tensor,
        at_layer: bool,
    ) -> torch.Tensor:
        """Maps of the pairs (image ``r[n]``, class ``c[n]``): one forward pass with a hook
        on ``module``, one backward pass. ``at_layer``: the distinct images of ``r`` run up
        to the layer once and the hook replicates the layer's output to one row per pair;
        else the input is replicated to one row per pair."""
        images, index = torch.unique(r, return_inverse=True)
        captured: list[torch.Tensor] = []

        def capture(_module, _inputs, output):
            if captured:
                raise WSOLError(
                    f"localizer.layer={self.layer!r} runs more than once in a forward pass; "
                    "name a module that runs once"
                )
            if not isinstance(output, torch.Tensor) or output.ndim != 4:
                what = (
                    tuple(output.shape)
                    if isinstance(output, torch.Tensor)
                    else type(output).__name__
                )
                raise WSOLError(
                    f"localizer.layer={self.layer!r} must output (B, K, h, w) maps, got {what}"
                )
            out = plain(output)
            leaf = (out.index_select(0, index) if at_layer else out).requires_grad_(True)
            captured.append(leaf)
            # a copy goes on, so that an in-place op after the layer cannot change the leaf
            return leaf.clone()

        with forward_hook(module, capture):
            logits = run(source.index_select(0, images if at_layer else r))
        if not captured:
            raise WSOLError(
                f"localizer.layer={self.layer!r} is not used in the network's forward pass"
            )
        acts = captured[0]
        if acts.shape[0] != r.numel() or logits.shape[0] != r.numel():
            raise WSOLError(
                f"localizer.layer={self.layer!r}: its output has {acts.shape[0]} rows for {r.numel()} inputs"
            )
        score = logits.gather(1, c[:, None]).sum()
        (grad,) = torch.autograd.grad(score, acts)
        return _weighted(grad, acts.detach()).float()

    # ---- batching ---------------------------------------------------------------------------
    @staticmethod
    def _by_pairs(classes: torch.Tensor, chunk, max_batch: int) -> torch.Tensor:
        """``chunk(rows, cols) -> (n, h, w)`` over the distinct (image, class) pairs of
        ``classes``, at most ``max_batch`` at a time, scattered back to (B, J, h, w)."""
        b, j = classes.shape
        if b * j == 0:
            raise ValueError(f"no classes to localize: classes of shape {tuple(classes.shape)}")
        rows, cols, inverse = unique_pairs(classes)
        parts = [
            chunk(rows[s : s + max_batch], cols[s : s + max_batch])
            for s in range(0, rows.numel(), max_batch)
        ]
        out = torch.cat(parts)
        return out[inverse.reshape(-1)].reshape(b, j, *out.shape[1:])
