"""The GAP-vs-GMP box statistics behind the study's box sentence: hand-computed boxes,
and the verdict only counts differences beyond the spread over seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from wsol.study.boxes import box_sentence, box_size_verdicts, box_stats


def test_box_stats_iou_and_area_ratio_by_hand():
    predictions = pd.DataFrame(
        {
            # a 20x10 box against a 10x10 one it half-covers: ratio 2.0
            "cam2016_gt_known_box": ["0 0 20 10", "0 0 5 5"],
            "cam2016_iou": [0.5, 0.25],
            # second image: two boxes; the 5x5 box overlaps only the first (10x10)
            "gt_boxes": ["0 0 10 10", "0 0 10 10;50 50 90 90"],
        }
    )
    stats = box_stats(predictions)
    assert stats["iou"].tolist() == [0.5, 0.25]
    assert stats["area_ratio"].tolist() == pytest.approx([2.0, 0.25])


def _summary(ratios: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    rows = []
    for (network, pool), values in ratios.items():
        for seed, r in enumerate(values):
            rows.append(
                {
                    "network": network,
                    "pool": pool,
                    "seed": seed,
                    "images": 10,
                    "mean_iou": 0.4,
                    "median_iou": 0.4,
                    "median_area_ratio": r,
                    "share_smaller": 0.1,
                }
            )
    return pd.DataFrame(rows)


def test_gmp_clearly_smaller_is_consistent_with_the_paper():
    s = _summary(
        {("googlenet_gap", "avg"): [2.6, 2.7, 2.65], ("googlenet_gap", "max"): [1.2, 1.3, 1.25]}
    )
    v = box_size_verdicts(s)
    assert v["verdict"].tolist() == ["smaller"]
    assert v["difference"].iloc[0] == pytest.approx(1.4)
    text = box_sentence(s)
    assert "smaller than GAP's for 1 of 1" in text and "consistent with the paper" in text
    assert "2.65 ± 0.05 vs 1.25 ± 0.05" in text


def test_a_difference_inside_the_seed_spread_settles_nothing():
    # GMP 3% smaller on average, but the seeds scatter by 0.3
    s = _summary(
        {("googlenet_gap", "avg"): [2.3, 2.9, 2.7], ("googlenet_gap", "max"): [2.9, 2.3, 2.6]}
    )
    assert box_size_verdicts(s)["verdict"].tolist() == ["unclear"]
    text = box_sentence(s)
    assert "within the seeds' spread or that margin for 1" in text
    assert "neither confirm nor refute" in text and "consistent with" not in text


def test_a_steady_but_tiny_difference_settles_nothing():
    # GMP 1% smaller on every seed: far beyond 2 standard errors, far below 5% of the box
    s = _summary({("nin", "avg"): [2.710, 2.711, 2.709], ("nin", "max"): [2.683, 2.684, 2.682]})
    v = box_size_verdicts(s)
    assert v["difference"].iloc[0] > 20 * v["se"].iloc[0]
    assert v["verdict"].tolist() == ["unclear"]
    # the same difference counts once the margin is below it
    assert box_size_verdicts(s, min_relative=0.005)["verdict"].tolist() == ["smaller"]
    assert "than 5% of GAP's ratio" in box_sentence(s)


def test_one_seed_has_no_spread_and_is_never_a_verdict():
    s = _summary({("googlenet_gap", "avg"): [2.64], ("googlenet_gap", "max"): [2.0]})
    assert box_size_verdicts(s)["verdict"].tolist() == ["unclear"]
    assert np.isnan(box_size_verdicts(s)["se"].iloc[0])
    assert "no spread to judge by" in box_sentence(s)


def test_gmp_clearly_larger_contradicts_the_paper():
    s = _summary(
        {
            ("nin", "avg"): [1.0, 1.1, 1.05],
            ("nin", "max"): [2.0, 2.1, 2.05],
            ("vgg16_gap", "avg"): [1.0, 1.1, 1.05],
            ("vgg16_gap", "max"): [2.0, 2.2, 2.1],
        }
    )
    text = box_sentence(s)
    assert "larger for 2" in text and "does not hold here" in text


def test_one_pool_only_is_said_plainly():
    s = _summary({("nin", "avg"): [1.0, 1.1]})
    assert "only one pool" in box_sentence(s)
