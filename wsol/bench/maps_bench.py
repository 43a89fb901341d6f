"""Cost of every map maker per image: the suite's localizers and torchcam's methods.

``python -m wsol.bench.maps_bench [--model googlenet_gap] [--size 224] [--images 8]
[--columns 1] [--repeats 3] [--score-images 1] [--score-samples 1] [--score-repeats 1]
[--only NAME ...] [--threads N]`` prints one markdown table: seconds per image of one
localizer call (``localizer(net, images, features, classes)``, as the evaluation loop
makes it, after its forward pass: ``features`` given), best of ``repeats`` calls after
one untimed call, with the CPU's kind and the load average. The last column is the cost in forward passes of
the network (``images`` at a time, under ``no_grad``) timed just before and after the
row: other jobs on the machine slow both alike, so it is the steadier figure.

- The network: ``model`` built untrained, in eval mode, fp32 (the cost does not depend on
  the weights, only on the shapes); ``images`` random (B, 3, size, size); ``columns``
  random classes per image (J; the evaluation asks for 6: the ground truth and the
  top-5). The forward pass itself is the first row, for scale.
- The Score-CAM family (``scorecam``, ``sscam``, ``iscam``) runs the network once per
  channel of the layer per image (1024 channels for GoogLeNet-GAP) and, for SS-CAM and
  IS-CAM, ``num_samples`` times that (35 and 10 by default): minutes to hours per image
  on a CPU. They are timed on ``score_images`` images, ``score_repeats`` calls, at
  ``num_samples=score_samples``; the table also gives the cost at torchcam's default
  ``num_samples``, scaled linearly (torchcam's loop repeats the same masked forward
  passes ``num_samples`` times; the one un-repeated forward pass, the baseline, is
  1/1024 of a sample's cost).
- Smooth Grad-CAM++ runs at torchcam's defaults (4 noisy copies).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from wsol.bench.common import say

__all__ = ["run"]

SUITE = ("cam", "gradcam", "backprop", "center", "full")
#: torchcam's default num_samples of the methods that take it
DEFAULT_SAMPLES = {"sscam": 35, "iscam": 10}


def _localizers(images: int, score_images: int, score_samples: int) -> dict[str, tuple]:
    """name -> (localizer, images timed, setting, scale to torchcam's defaults, heavy:
    timed with the ``score_*`` settings)."""
    from wsol.localize import CAM, Backprop, CenterGaussian, FullImage, GradCAM, TorchCAM
    from wsol.localize.torchcam import METHODS

    out: dict[str, tuple] = {
        "cam": (CAM(), images, "-", 1.0, False),
        "gradcam": (GradCAM(), images, "max_batch=256", 1.0, False),
        "backprop": (Backprop(), images, "max_batch=64", 1.0, False),
        "center": (CenterGaussian(), images, "size=224", 1.0, False),
        "full": (FullImage(), images, "size=224", 1.0, False),
    }
    for name, spec in sorted(METHODS.items(), key=lambda kv: (kv[1].family, kv[0])):
        if spec.family != "score":
            out[f"torchcam {name}"] = (
                TorchCAM(name, max_batch=images),
                images,
                "defaults",
                1.0,
                False,
            )
            continue
        samples = score_samples if name in DEFAULT_SAMPLES else None
        scale = DEFAULT_SAMPLES[name] / samples if samples else 1.0
        setting = "score_batch=32" + (f", num_samples={samples}" if samples else "")
        out[f"torchcam {name}"] = (
            TorchCAM(name, max_batch=score_images, num_samples=samples),
            score_images,
            setting,
            scale,
            True,
        )
    return out


def run(
    model: str = "googlenet_gap",
    size: int = 224,
    images: int = 8,
    columns: int = 1,
    repeats: int = 3,
    score_images: int = 1,
    score_samples: int = 1,
    score_repeats: int = 1,
    only: list[str] | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per localizer: images timed, best seconds per call and per image, and the
    per-image cost at torchcam's default ``num_samples`` where the timing ran fewer."""
    import torch

    from wsol.models import build_model

    torch.manual_seed(seed)
    net = build_model(model, num_classes=200, input_size=size).eval()
    x_all = torch.randn(max(images, score_images), 3, size, size)
    classes_all = torch.stack(
        [torch.randperm(200)[:columns] for _ in range(x_all.shape[0])]
    )  # distinct per row
    rows = []

    def timed(fn, n_repeats: int, warm: bool = True) -> float:
        if warm:  # one untimed call: allocator, oneDNN primitives, lazy imports
            fn()
        best = float("inf")
        for _ in range(n_repeats):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        return best

    x_fwd = x_all[:images]

    def forward_per_image() -> float:
        with torch.no_grad():
            return timed(lambda: net(x_fwd), repeats) / images

    forward = forward_per_image()
    rows.append(_row("forward pass (features + head)", "-", images, repeats, forward * images, 1.0))
    rows[-1]["x_forward"] = 1.0
    say(table(rows[-1:], head=False))
    made = _localizers(images, score_images, score_samples)
    for name, (loc, n, setting, scale, heavy) in made.items():
        if only and name.removeprefix("torchcam ") not in only:
            continue
        x, classes = x_all[:n], classes_all[:n]
        with torch.no_grad():
            features = net.forward_features(x)
        n_rep = score_repeats if heavy else repeats

        # as the evaluation loop calls it: autograd off unless the localizer needs it
        def call(loc=loc, x=x, features=features, classes=classes):
            with torch.set_grad_enabled(loc.needs_grad):
                loc(net, x, features, classes)

        before = forward_per_image()
        r = _row(name, setting, n, n_rep, timed(call, n_rep, warm=not heavy), scale)
        # the forward pass timed just before and after the row: the same load on the machine
        r["x_forward"] = r["default_s_per_image"] / ((before + forward_per_image()) / 2)
        rows.append(r)
        say(table(rows[-1:], head=False))
    return rows


def _row(name: str, setting: str, n: int, repeats: int, best: float, scale: float) -> dict:
    return {
        "localizer": name,
        "setting": setting,
        "images": n,
        "repeats": repeats,
        "best_s": best,
        "s_per_image": best / n,
        "default_s_per_image": best / n * scale,
        "scale": scale,
    }


def _seconds(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    if s >= 1:
        return f"{s:.1f} s"
    return f"{s * 1000:.1f} ms"


def table(rows: list[dict], head: bool = True) -> str:
    """The markdown table (``head``: with its header lines)."""
    lines = (
        [
            "| localizer | setting timed | images x calls | per image (timed) "
            "| per image (torchcam defaults) | x forward pass |",
            "|---|---|---|---|---|---|",
        ]
        if head
        else []
    )
    for r in rows:
        scaled = (
            f"{_seconds(r['default_s_per_image'])} (x{r['scale']:g}, scaled)"
            if r["scale"] != 1.0
            else _seconds(r["s_per_image"])
        )
        lines.append(
            f"| {r['localizer']} | {r['setting']} | {r['images']} x {r['repeats']} | "
            f"{_seconds(r['s_per_image'])} | {scaled} | {r['x_forward']:.3g} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="googlenet_gap")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--columns", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--score-images", type=int, default=1)
    parser.add_argument("--score-samples", type=int, default=1)
    parser.add_argument("--score-repeats", type=int, default=1)
    parser.add_argument("--only", nargs="*", help="localizer or torchcam method names")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    a = parser.parse_args(argv)
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    from wsol.hardware import cpu_info

    load = os.getloadavg()
    rows = run(
        model=a.model,
        size=a.size,
        images=a.images,
        columns=a.columns,
        repeats=a.repeats,
        score_images=a.score_images,
        score_samples=a.score_samples,
        score_repeats=a.score_repeats,
        only=a.only,
    )
    info = cpu_info()
    print(
        f"{a.model}, {a.size} px, J={a.columns} column(s), fp32, CPU: {info.model or '?'} "
        f"({info.describe()}), {os.cpu_count()} logical CPUs, {torch.get_num_threads()} "
        f"torch threads; load average {load[0]:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end\n"
    )
    print(table(rows))


if __name__ == "__main__":
    main()
