"""Autograd plumbing shared by the gradient localizers (`gradcam`, `backprop`).

Everything that changes a network's state does so inside a context manager and undoes
it in ``finally``, so that it is undone after an exception too:

- `forward_hook`: a forward hook on one module, removed on exit;
- `frozen_for_grad`: the network in eval mode with every parameter's ``requires_grad``
  False (inputs of the backward pass are the images or an activation, never the
  weights, so no parameter gradient is computed or stored); on exit each module's own
  train/eval flag and each parameter's ``requires_grad`` flag and ``.grad`` are put back;
- `autograd_on`: autograd enabled even when the caller is under ``torch.no_grad()`` or
  ``torch.inference_mode()``.

`unique_pairs` and `plain` are small helpers for the batching the localizers share.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["autograd_on", "forward_hook", "frozen_for_grad", "plain", "unique_pairs"]


@contextmanager
def forward_hook(module: nn.Module, hook: Callable) -> Iterator[None]:
    """``module.register_forward_hook(hook)`` for the duration of the block."""
    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def frozen_for_grad(net: nn.Module | None) -> Iterator[None]:
    """Eval mode and ``requires_grad=False`` on every parameter inside the block; the
    previous flags (per module, per parameter) and ``.grad`` references afterwards.

    Eval mode matters beyond determinism: the localizers replicate images (or
    activations) along the batch dimension, which is only exact when no layer couples
    the samples of a batch (BatchNorm with batch statistics, dropout)."""
    if net is None:
        yield
        return
    modes = [(m, m.training) for m in net.modules()]
    params = [(p, p.requires_grad, p.grad) for p in net.parameters()]
    try:
        net.eval()
        for p, _, _ in params:
            p.requires_grad_(False)
        yield
    finally:
        for m, training in modes:
            m.training = training
        for p, requires_grad, grad in params:
            p.requires_grad_(requires_grad)
            if p.grad is not grad:
                p.grad = grad


@contextmanager
def autograd_on() -> Iterator[None]:
    """Autograd enabled, inference mode off, whatever the caller's mode."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def plain(t: torch.Tensor) -> torch.Tensor:
    """``t`` detached, and copied when it is an inference tensor (those cannot take part
    in autograd outside inference mode)."""
    t = t.detach()
    return t.clone() if t.is_inference() else t


def unique_pairs(classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The distinct (row, class) pairs of ``classes`` (B, J).

    Returns ``rows`` (N,), ``cols`` (N,) -- the image index and the class of each distinct
    pair -- and ``inverse`` (B, J) such that the map of ``(b, classes[b, j])`` is the map
    of pair ``inverse[b, j]``. A class repeated in a row (the ground truth is usually also
    the top-1 prediction) is computed once."""
    b, _ = classes.shape
    classes = classes.long()
    span = int(classes.max().item()) + 1 if classes.numel() else 1
    rows = torch.arange(b, device=classes.device)[:, None].expand_as(classes)
    keys, inverse = torch.unique(rows * span + classes, return_inverse=True)
    return keys // span, keys % span, inverse
