"""`data=synthetic`: the embedded default data set, generated in code.

Every image is a deterministic function of ``(seed, split, index)`` (nothing is stored
on disk) and holds one object of its class in a cluttered scene, built to have the
properties that make WSOL hard on real data such as CUB-200-2011:

- the object is an extended **body** (a textured ellipse) with a smaller
  **discriminative part** at one end (as a bird has a body and a head);
- the classes differ mainly in the part (its shape and colour) and only weakly in the
  body (with probability ``body_signal`` the body's stripe colour follows its class,
  otherwise it is random);
- objects vary in size, aspect ratio, orientation and position, and never fill the frame;
- the background is a smooth colour field with clutter (small shapes and lines) and
  **distractors**: bodies without a part, and loose parts of random classes away from
  any body, so neither "a body" nor "a part" alone tells where the object is.

The record gives the image, the label, the object's box (the bounding box of its mask,
in the suite's box convention) and its mask. ``difficulty`` scales clutter and
distractors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from wsol.errors import WSOLError

SPLITS = {"train": 0, "val": 1, "test": 2}

# Part shapes and part colours; class c has shape c % len(shapes) and a colour drawn
# from its own hue (so with 10 classes: 5 shapes x 2 hue families, every pair distinct).
_PART_SHAPES = ("disc", "square", "triangle", "cross", "ring", "diamond", "bar", "star")


#: the background is a smooth colour field: a g x g grid of colours, upsampled bicubically
_BACKGROUND_GRID = 4


def _bicubic(n: int, size: int) -> np.ndarray:
    """(size, n) float32 matrix ``U`` such that ``U @ x`` is torch's 1-D bicubic
    upsampling of ``x`` (``align_corners=False``, borders clamped): bicubic interpolation
    is separable, so a (n, n) grid upsamples to ``U @ grid @ U.T``."""
    eye = torch.eye(n, dtype=torch.float64)[:, None, :, None]  # n one-hot columns
    cols = torch.nn.functional.interpolate(
        eye.expand(n, 1, n, 1), size=(size, 1), mode="bicubic", align_corners=False
    )
    return cols[:, 0, :, 0].T.numpy().astype(np.float32)


@dataclass(frozen=True)
class _ClassStyle:
    part_shape: str
    part_hue: float
    body_hue: float


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6.0) % 6
    f = h * 6.0 - math.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array(
        [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i], dtype=np.float32
    )


def class_styles(num_classes: int) -> list[_ClassStyle]:
    """The class-defining parameters (fixed, independent of the seed)."""
    n_shapes = min(len(_PART_SHAPES), max(1, math.ceil(num_classes / 2)))
    n_hues = math.ceil(num_classes / n_shapes)
    styles = []
    for c in range(num_classes):
        shape = _PART_SHAPES[c % n_shapes]
        hue_slot = c // n_shapes
        part_hue = (0.02 + hue_slot / n_hues + 0.13 * (c % n_shapes) / n_shapes) % 1.0
        body_hue = (c / num_classes) % 1.0
        styles.append(_ClassStyle(shape, part_hue, body_hue))
    return styles


class SyntheticWSOL(Dataset):
    """Synthetic WSOL images (see the module docstring).

    Args:
        split: ``train``, ``val`` or ``test``.
        num_classes: number of classes (2..40).
        image_size: side of the square images, in pixels (of every split unless
            ``train_image_size`` is set).
        train_image_size: side of the training split's images (None: ``image_size``).
            The default job trains at 160 and evaluates at 224: the same scenes, rendered
            at each size (train at a lower resolution than test, Touvron et al. 2019).
        train_size, val_size, test_size: number of images in each split.
        seed: the data seed; images depend only on (seed, split, index).
        difficulty: 0 (clean) .. 1 (hard); scales clutter and distractors.
        object_scale: (min, max) of the body's half-length as a fraction of the image.
        body_signal: probability that a body's stripe colour follows its class (else it
            is random): the body alone tells the class only this weakly, the part always.
        part_visibility: probability that the part is visible (a hidden part, like a
            bird's head turned away, leaves the body as the whole object).
        part_scale: (min, max) of the part's radius as a fraction of the body's half-width.
        cache_splits: the splits whose rendered images are kept in memory after their first
            use (in the process that renders them: a persistent loader worker, or the main
            process), so that later epochs only pay for the transform. The pixels are the
            same as without the cache. Default none; the job's config caches train and val,
            which every epoch reads again.
        cache_limit_mb: the most memory the cache may take (about 0.6 MB per 224 px
            image); images beyond it are rendered each time.
        transform: callable(record) -> record applied last (normalisation, flips).
    """

    def __init__(
        self,
        split: str = "train",
        num_classes: int = 10,
        image_size: int = 224,
        train_image_size: int | None = None,
        train_size: int = 2000,
        val_size: int = 200,
        test_size: int = 1000,
        seed: int = 0,
        difficulty: float = 0.5,
        object_scale: tuple[float, float] = (0.28, 0.45),
        body_signal: float = 0.9,
        part_visibility: float = 0.7,
        part_scale: tuple[float, float] = (0.4, 0.55),
        cache_splits: tuple[str, ...] | None = None,
        cache_limit_mb: float = 4096,
        transform=None,
    ):
        if split not in SPLITS:
            raise WSOLError(
                f"unknown split {split!r} for data=synthetic; valid: {', '.join(SPLITS)}"
            )
        if not 2 <= int(num_classes) <= 40:
            raise WSOLError(
                f"data.num_classes must be between 2 and 40 for data=synthetic, got {num_classes}"
            )
        for key, side in (("image_size", image_size), ("train_image_size", train_image_size)):
            if side is not None and int(side) < 32:
                raise WSOLError(
                    f"data.dataset.{key} must be at least 32 for data=synthetic, got {side}"
                )
        if split == "train" and train_image_size is not None:
            image_size = train_image_size
        size = {"train": train_size, "val": val_size, "test": test_size}[split]
        if int(size) < 1:
            raise WSOLError(
                f"data=synthetic: the {split} split is empty ({split}_size={size}); set data.{split}_size to at least 1"
            )
        self.split = split
        self.num_classes = int(num_classes)
        self.image_size = int(image_size)
        self.size = int(size)
        self.seed = int(seed)
        self.difficulty = float(difficulty)
        self.object_scale = (float(object_scale[0]), float(object_scale[1]))
        self.body_signal = float(body_signal)
        self.part_visibility = float(part_visibility)
        self.part_scale = (float(part_scale[0]), float(part_scale[1]))
        unknown = sorted(set(cache_splits or ()) - set(SPLITS))
        if unknown:
            raise WSOLError(
                f"data.dataset.cache_splits: unknown split(s) {', '.join(map(repr, unknown))}; valid: {', '.join(SPLITS)}"
            )
        self.cache_limit_bytes = float(cache_limit_mb) * 2**20
        self._cache: dict[int, tuple] | None = {} if split in (cache_splits or ()) else None
        self._cache_bytes = 0
        self.transform = transform
        self.styles = class_styles(self.num_classes)
        s = self.image_size
        self._upsample = _bicubic(_BACKGROUND_GRID, s)
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
        self._xx, self._yy = xx + 0.5, yy + 0.5  # pixel centres

    @property
    def class_names(self) -> list[str]:
        return [f"{st.part_shape}-{i}" for i, st in enumerate(self.styles)]

    def __len__(self) -> int:
        return self.size

    def label_of(self, index: int) -> int:
        """Classes are balanced: image ``index`` shows class ``index % num_classes``."""
        return int(index) % self.num_classes

    def _rng(self, index: int, stream: int = 0) -> np.random.Generator:
        return np.random.default_rng(
            np.random.SeedSequence([self.seed, SPLITS[self.split], int(index), stream])
        )

    # ---- rendering ------------------------------------------------------------------
    def _window(self, cx: float, cy: float, reach: float) -> tuple[slice, slice]:
        """The rows and columns within ``reach`` pixels of (cx, cy): a shape's coverage is
        zero outside, so it is computed and painted there only (same pixels, less work)."""
        s = self.image_size
        x0, x1 = max(0, math.floor(cx - reach)), min(s, math.ceil(cx + reach) + 1)
        y0, y1 = max(0, math.floor(cy - reach)), min(s, math.ceil(cy + reach) + 1)
        return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))

    def _frame(
        self, cx: float, cy: float, angle: float, win: tuple[slice, slice]
    ) -> tuple[np.ndarray, np.ndarray]:
        c, s = math.cos(angle), math.sin(angle)
        dx, dy = self._xx[win] - cx, self._yy[win] - cy
        return c * dx + s * dy, -s * dx + c * dy

    def _shape(
        self, kind: str, cx: float, cy: float, r: float, angle: float
    ) -> tuple[np.ndarray, tuple[slice, slice]]:
        """Soft (anti-aliased) coverage in [0, 1] of a part shape of radius r, on its
        window (every shape lies within 1.3 r + 1 of its centre)."""
        win = self._window(cx, cy, 1.3 * r + 2.0)
        u, v = self._frame(cx, cy, angle, win)
        if kind == "disc":
            d = np.sqrt(u * u + v * v) - r
        elif kind == "square":
            d = np.maximum(np.abs(u), np.abs(v)) - 0.85 * r
        elif kind == "diamond":
            d = (np.abs(u) + np.abs(v)) / math.sqrt(2) - 0.75 * r
        elif kind == "triangle":
            d = (
                np.maximum.reduce(
                    [v - 0.55 * r, -0.866 * u - 0.5 * v - 0.55 * r, 0.866 * u - 0.5 * v - 0.55 * r]
                )
                * 1.4
            )
        elif kind == "cross":
            arm = 0.32 * r
            d = np.minimum(
                np.maximum(np.abs(u) - r, np.abs(v) - arm),
                np.maximum(np.abs(v) - r, np.abs(u) - arm),
            )
        elif kind == "ring":
            rad = np.sqrt(u * u + v * v)
            d = np.abs(rad - 0.72 * r) - 0.3 * r
        elif kind == "bar":
            d = np.maximum(np.abs(u) - 1.1 * r, np.abs(v) - 0.4 * r)
        elif kind == "star":
            ang = np.arctan2(v, u)
            rad = np.sqrt(u * u + v * v)
            d = rad - r * (0.62 + 0.38 * np.cos(5 * ang))
        else:  # pragma: no cover
            raise ValueError(kind)
        return np.clip(0.5 - d, 0.0, 1.0), win

    def _ellipse(
        self, cx: float, cy: float, a: float, b: float, angle: float
    ) -> tuple[np.ndarray, np.ndarray, tuple[slice, slice]]:
        # coverage > 0 needs q < 1 + 0.5 / min(a, b), i.e. within a + 0.5 a / b of the centre
        win = self._window(cx, cy, a * (1.0 + 0.5 / min(a, b)) + 2.0)
        u, v = self._frame(cx, cy, angle, win)
        q = np.sqrt((u / a) ** 2 + (v / b) ** 2)
        cov = np.clip((1.0 - q) * min(a, b) + 0.5, 0.0, 1.0)
        return cov, u, win

    @staticmethod
    def _paint(img: np.ndarray, cov: np.ndarray, color, win: tuple[slice, slice]) -> None:
        patch = img[win]
        patch *= 1.0 - cov[..., None]
        patch += cov[..., None] * color

    def _noise(self, rng: np.random.Generator, sigma: float) -> np.ndarray:
        """Gaussian pixel noise (H, W, 3), drawn in float32 (half the work of float64)."""
        s = self.image_size
        noise = rng.standard_normal((s, s, 3), dtype=np.float32)
        noise *= np.float32(sigma)
        return noise

    def _full(self, cov: np.ndarray, win: tuple[slice, slice]) -> np.ndarray:
        out = np.zeros((self.image_size, self.image_size), dtype=cov.dtype)
        out[win] = cov
        return out

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        g = _BACKGROUND_GRID
        base_hue = rng.random()
        grid = np.stack(
            [
                _hsv_to_rgb(
                    (base_hue + rng.normal(0, 0.08)) % 1,
                    rng.uniform(0.15, 0.45),
                    rng.uniform(0.35, 0.75),
                )
                for _ in range(g * g)
            ]
        ).reshape(g, g, 3)
        # bicubic upsampling of the grid, as two small matrix products (see _bicubic)
        up = self._upsample
        img = np.einsum("yi,ijc,xj->yxc", up, grid, up, optimize=True)
        img += self._noise(rng, 0.03)
        return img

    def _clutter(self, rng: np.random.Generator, img: np.ndarray) -> None:
        s = self.image_size
        n = round(rng.uniform(4, 10) * (0.3 + self.difficulty))
        for _ in range(n):
            color = _hsv_to_rgb(rng.random(), rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.9))
            cx, cy = rng.uniform(0, s, 2)
            if rng.random() < 0.5:  # a line segment
                cov, win = self._shape(
                    "bar", cx, cy, rng.uniform(0.05, 0.15) * s, rng.uniform(0, math.pi)
                )
                cov *= 0.5
            else:
                kind = ("disc", "square")[int(rng.integers(2))]
                cov, win = self._shape(
                    kind, cx, cy, rng.uniform(0.015, 0.04) * s, rng.uniform(0, math.pi)
                )
            self._paint(img, cov * rng.uniform(0.5, 1.0), color, win)

    def _body(self, rng, img, cx, cy, a, b, angle, hue) -> np.ndarray:
        cov, u, win = self._ellipse(cx, cy, a, b, angle)
        c1 = _hsv_to_rgb(hue % 1, rng.uniform(0.45, 0.8), rng.uniform(0.55, 0.9))
        c2 = _hsv_to_rgb((hue + 0.5) % 1, rng.uniform(0.2, 0.5), rng.uniform(0.15, 0.4))
        freq = rng.uniform(0.35, 0.6) / max(b, 1.0) * 2.5
        stripes = (np.sin(u * freq * math.pi + rng.uniform(0, 6.28)) > 0.2).astype(np.float32)[
            ..., None
        ]
        color = stripes * c1 + (1 - stripes) * c2
        self._paint(img, cov, color, win)
        return self._full(cov, win)

    def _object_geometry(self, rng):
        s = self.image_size
        lo, hi = self.object_scale
        a = rng.uniform(lo, hi) * s
        aspect = rng.uniform(1.4, 2.4)
        b = a / aspect
        angle = rng.uniform(0, math.pi)
        r = rng.uniform(*self.part_scale) * b + 0.02 * s
        side = 1.0 if rng.random() < 0.5 else -1.0
        # part centre at the end of the major axis, half overlapping the body
        ca, sa = math.cos(angle), math.sin(angle)
        off = side * (a + 0.45 * r)
        # extent of body+part around the body centre, to place the object inside the frame
        hx = max(math.sqrt((a * ca) ** 2 + (b * sa) ** 2), abs(off * ca) + r)
        hy = max(math.sqrt((a * sa) ** 2 + (b * ca) ** 2), abs(off * sa) + r)
        margin = 1.0
        cx = rng.uniform(hx + margin, max(hx + margin + 1e-3, s - hx - margin))
        cy = rng.uniform(hy + margin, max(hy + margin + 1e-3, s - hy - margin))
        return cx, cy, a, b, angle, r, (cx + off * ca, cy + off * sa)

    def render(self, index: int) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
        """(image HxWx3 float32 in [0,1], label, box (1,4) suite convention, mask HxW uint8)."""
        if not 0 <= index < self.size:
            raise IndexError(index)
        rng = self._rng(index)
        label = self.label_of(index)
        style = self.styles[label]
        d = self.difficulty
        img = self._background(rng)
        self._clutter(rng, img)
        # distractor bodies (no part) and loose parts of random classes, drawn first so
        # that the object lies on top
        s = self.image_size
        for _ in range(int(rng.binomial(2, 0.25 + 0.5 * d))):
            a = rng.uniform(0.08, 0.16) * s
            self._body(
                rng,
                img,
                *rng.uniform(0.1 * s, 0.9 * s, 2),
                a,
                a / rng.uniform(1.3, 2.2),
                rng.uniform(0, math.pi),
                rng.random(),
            )
        for _ in range(int(rng.binomial(1, 0.5 * d))):
            other = self.styles[int(rng.integers(self.num_classes))]
            color = _hsv_to_rgb(other.part_hue, rng.uniform(0.7, 1.0), rng.uniform(0.75, 1.0))
            cov, win = self._shape(
                other.part_shape,
                *rng.uniform(0.08 * s, 0.92 * s, 2),
                rng.uniform(0.035, 0.06) * s,
                rng.uniform(0, 2 * math.pi),
            )
            self._paint(img, cov, color, win)
        cx, cy, a, b, angle, r, (px, py) = self._object_geometry(rng)
        body_hue = (
            style.body_hue if rng.random() < self.body_signal else rng.random()
        ) + rng.normal(0, 0.03)
        body_cov = self._body(rng, img, cx, cy, a, b, angle, body_hue)
        part_color = _hsv_to_rgb(
            (style.part_hue + rng.normal(0, 0.02)) % 1,
            rng.uniform(0.75, 1.0),
            rng.uniform(0.8, 1.0),
        )
        part_cov, win = self._shape(style.part_shape, px, py, r, angle + rng.normal(0, 0.3))
        if rng.random() < self.part_visibility:
            self._paint(img, part_cov, part_color, win)
            part_cov = self._full(part_cov, win)
        else:
            part_cov = np.zeros((s, s), dtype=np.float32)
        img += self._noise(rng, 0.02)
        np.clip(img, 0.0, 1.0, out=img)
        mask = ((body_cov >= 0.5) | (part_cov >= 0.5)).astype(np.uint8)
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        box = np.array([[cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]], dtype=np.float64)
        return img, label, box, mask

    def _rendered(self, index: int) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
        """`render`, through the cache when this split has one (callers must not modify the
        arrays: ``__getitem__`` copies them into the record)."""
        if self._cache is None:
            return self.render(index)
        hit = self._cache.get(index)
        if hit is None:
            hit = self.render(index)
            size = sum(a.nbytes for a in (hit[0], hit[2], hit[3]))
            if self._cache_bytes + size <= self.cache_limit_bytes:
                self._cache[index] = hit
                self._cache_bytes += size
        return hit

    def __getitem__(self, index: int) -> dict:
        img, label, box, mask = self._rendered(int(index))
        s = self.image_size
        record = {
            # copies: the transform may work in place, and a cached render must stay as it is
            "image": torch.from_numpy(img)
            .permute(2, 0, 1)
            .clone(memory_format=torch.contiguous_format),
            "label": label,
            "boxes": torch.from_numpy(box.copy()),
            "size": (s, s),
            "mask": mask.copy(),
            "id": f"synthetic/{self.split}/{int(index):06d}",
            "index": int(index),
        }
        return self.transform(record) if self.transform is not None else record
