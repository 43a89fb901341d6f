"""``localizer=backprop``: gradient saliency (Simonyan, Vedaldi & Zisserman, ICLR 2014
workshop, "Deep Inside Convolutional Networks", section 3).

The map of class ``c`` for image ``x`` is ``M_c(i, j) = max over colour channels k of
|d S_c / d x(k, i, j)|``, where ``S_c`` is the class score *before* the softmax (the
logit), at the input's resolution. It needs only ``net(x) -> logits``, so it works for
every network, fully connected heads included.

Backward passes. The gradients of the J requested classes of B images are the
gradients of one scalar: every distinct (image, class) pair of ``classes`` gets its own
copy of its image along the batch dimension (a class repeated in a row -- the ground
truth is usually also the top-1 prediction -- is computed once), the network scores the
copies, the logit of each copy's own class is picked and the picks are summed. In eval
mode the copies do not interact (no batch statistics, no dropout), so the gradient of
the sum with respect to copy ``n`` is exactly ``d S_{c_n}(x_{b_n}) / d x_{b_n}``: one
forward and one backward pass per chunk of at most ``max_batch`` copies. ``max_batch``
bounds the memory (the activations of ``max_batch`` images); the default, 64, suits a
224x224 VGG16 on a 16 GB GPU; raise it on bigger devices, lower it on small ones.
"""

from __future__ import annotations

import torch

from wsol.errors import WSOLError
from wsol.localize.base import Localizer
from wsol.localize.hooks import plain, unique_pairs


class Backprop(Localizer):
    """Gradient saliency maps (B, J, H, W) at the input's resolution."""

    name = "backprop"
    needs_grad = True
    needs_images = True

    def __init__(self, max_batch: int = 64):
        if int(max_batch) < 1:
            raise WSOLError(f"localizer.max_batch must be a positive integer, got {max_batch!r}")
        self.max_batch = int(max_batch)

    def maps(self, net, images, features, classes) -> torch.Tensor:
        b, j = classes.shape
        h, w = images.shape[2:]
        rows, cols, inverse = unique_pairs(plain(classes))
        out = torch.empty((rows.numel(), h, w), dtype=torch.float32, device=images.device)
        x_all = plain(images)
        for start in range(0, rows.numel(), self.max_batch):
            r, c = rows[start : start + self.max_batch], cols[start : start + self.max_batch]
            x = x_all.index_select(0, r).requires_grad_(True)
            logits = net(x)
            score = logits.gather(1, c[:, None]).sum()
            (grad,) = torch.autograd.grad(score, x)
            out[start : start + r.numel()] = grad.abs().amax(dim=1).float()
            del x, logits, score, grad
        return out[inverse.reshape(-1)].reshape(b, j, h, w)
