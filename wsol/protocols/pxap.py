"""PxAP (pixel average precision) from score histograms, as wsolevaluation computes it.

**What it computes.** wsolevaluation's ``MaskEvaluator`` bins the score-map values at
the object pixels (mask == 1) and at the background pixels (mask == 0) with
``np.histogram(values, bins=edges)``, edges = the thresholds then 1.0, 2.0, 3.0
(`pxap_edges`); ignore pixels (255) are left out. `pxap_histograms` gives exactly those
histograms (int64) in one compiled pass, and `pxap_from_histograms` is their
``compute()``: reversed cumulative sums ``tp``, ``fp``, ``precision = tp / (tp + fp)``,
``recall = tp / num_true`` and ``PxAP = 100 * sum(precision[1:] * diff(recall))`` over
the points with a positive prediction. The tests compare both with the plain versions
in `wsol.protocols.reference` (``reference_pxap_histograms``, ``reference_pxap``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["pxap_edges", "pxap_from_histograms", "pxap_histograms"]


def pxap_edges(thresholds: np.ndarray) -> np.ndarray:
    """wsolevaluation's histogram edges: the thresholds, then 1.0, 2.0, 3.0 (bins
    ``[t_i, t_i+1)``, ..., ``[1, 2)``, ``[2, 3]``)."""
    return np.append(np.asarray(thresholds, dtype=np.float64), [1.0, 2.0, 3.0])


@njit(cache=True)
def _hist(values, labels, edges, inv_step, hist_true, hist_false):
    n_edges = edges.shape[0]
    last = n_edges - 2  # the last bin, closed on the right
    lo_edge = edges[0]
    hi_edge = edges[n_edges - 1]
    for i in range(values.shape[0]):
        lab = labels[i]
        if lab != 0 and lab != 1:
            continue
        v = values[i]
        if not (v >= lo_edge and v <= hi_edge):
            continue
        # bin b with edges[b] <= v < edges[b + 1]: a guess from the (nearly uniform)
        # threshold spacing, then exact comparisons with the edges themselves
        g = (v - lo_edge) * inv_step
        b = int(g) if g < last else last
        while b > 0 and edges[b] > v:
            b -= 1
        while b < last and edges[b + 1] <= v:
            b += 1
        if lab == 1:
            hist_true[b] += 1
        else:
            hist_false[b] += 1


def pxap_histograms(
    scoremap: np.ndarray, mask: np.ndarray, edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Histograms (int64, ``len(edges) - 1`` bins) of the score-map values at mask == 1
    and at mask == 0 (other values, e.g. 255 = ignore, are left out), binned exactly as
    ``np.histogram(values, bins=edges)``."""
    values = np.ascontiguousarray(np.asarray(scoremap, dtype=np.float64).ravel())
    labels = np.ascontiguousarray(np.asarray(mask, dtype=np.uint8).ravel())
    if values.shape != labels.shape:
        raise ValueError(f"score map {np.shape(scoremap)} and mask {np.shape(mask)} differ in size")
    e = np.ascontiguousarray(edges, dtype=np.float64)
    ht = np.zeros(e.size - 1, dtype=np.int64)
    hf = np.zeros(e.size - 1, dtype=np.int64)
    n_thr = max(e.size - 3, 1)  # edges below 1.0
    span = e[n_thr] - e[0] if e.size > 3 else 1.0
    inv_step = n_thr / span if span > 0 else 0.0
    _hist(values, labels, e, inv_step, ht, hf)
    return ht, hf


def pxap_from_histograms(
    hist_true: np.ndarray, hist_false: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """wsolevaluation's MaskEvaluator.compute: (PxAP in percent, precision, recall), with
    precision/recall ordered from the highest bin down (index 0: scores >= 2.0)."""
    ht = np.asarray(hist_true, dtype=np.float64)
    hf = np.asarray(hist_false, dtype=np.float64)
    num_true = ht.sum()
    tp = ht[::-1].cumsum()
    fp = hf[::-1].cumsum()
    fn = num_true - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = tp / (tp + fp)
        recall = tp / (tp + fn)
    if num_true <= 0 or not ((tp + fp) > 0).any():
        return float("nan"), precision, recall
    non_zero = (tp + fp) != 0
    auc = (precision[1:] * np.diff(recall))[non_zero[1:]].sum() * 100
    return float(auc), precision, recall
