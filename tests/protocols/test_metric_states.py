"""Classification by hand, and the property DDP relies on: a metric's states summed
from two halves of the data equal one pass over all of it (and so do the results)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsol.protocols import (
    Cam2016Metric,
    Cam2016OfficialMetric,
    ClassificationMetric,
    WSOLEvaluationMetric,
)

from .helpers import make_batch


def test_classification_by_hand():
    classes = torch.tensor([[1, 1, 0, 4, 5, 6], [2, 0, 2, 4, 5, 6], [3, 5, 6, 7, 8, 9]])
    batch = make_batch([1, 2, 3], [[[0, 0, 1, 1]]] * 3, [[4, 4]] * 3)
    metric = ClassificationMetric()
    r = metric.score(None, classes, batch)
    assert r["top1"].tolist() == [True, False, False]
    assert r["top5"].tolist() == [True, True, False]
    metric.update(r)
    out = metric.compute()
    assert out == {"cls_top1_err": pytest.approx(200 / 3), "cls_top5_err": pytest.approx(100 / 3)}
    assert metric.rows(r)[1]["cls_top5"] == "0 2 4 5 6"


def test_classification_from_logits():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.5, 0.2, 0.3]])
    batch = make_batch([1, 2], [[[0, 0, 1, 1]]] * 2, [[4, 4]] * 2)
    metric = ClassificationMetric()
    r = metric.score(None, logits, batch)
    assert metric.score(logits, torch.tensor([1, 2]))["top1"].tolist() == [True, False]
    assert r["pred"].tolist() == [[1, 0, 2], [0, 2, 1]]
    assert r["top1"].tolist() == [True, False]
    assert r["top5"].tolist() == [True, True]


def _batches(seed=0, n_batches=4, bsz=3):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n_batches):
        h, w = int(rng.integers(30, 60)), int(rng.integers(30, 60))
        maps = torch.as_tensor(rng.standard_normal((bsz, 6, 7, 7)).astype(np.float32)).exp()
        labels = rng.integers(0, 4, bsz)
        classes = np.concatenate([labels[:, None], rng.integers(0, 4, (bsz, 5))], axis=1)
        boxes = []
        for _ in range(bsz):
            x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
            boxes.append([[x0, y0, rng.integers(x0 + 1, w + 1), rng.integers(y0 + 1, h + 1)]])
        masks = [
            rng.choice(np.array([0, 1, 255], dtype=np.uint8), (h, w))
            if rng.random() < 0.7
            else None
            for _ in range(bsz)
        ]
        batch = make_batch(labels, boxes, [[h, w]] * bsz, masks=masks, start=k * bsz)
        out.append((maps, torch.as_tensor(classes), batch))
    return out


@pytest.mark.parametrize(
    "factory",
    [
        ClassificationMetric,
        Cam2016Metric,
        Cam2016OfficialMetric,
        lambda: WSOLEvaluationMetric(cam_curve_interval=0.01),
    ],
)
def test_states_summed_from_two_halves_equal_one_pass(factory):
    data = _batches()
    full, first, second = factory(), factory(), factory()
    results = [full.score(*d) for d in data]
    for r in results:
        full.update(r)
    for r in results[:2]:
        first.update(r)
    for r in reversed(results[2:]):
        second.update(r)
    merged = factory()
    for name, value in full.metric_state.items():
        assert value.dtype == torch.long, name
        total = first.metric_state[name] + second.metric_state[name]
        assert torch.equal(total, value), name
        setattr(merged, name, total)
    merged._update_count = 1
    assert merged.compute() == full.compute()
    assert full.compute()  # not empty
