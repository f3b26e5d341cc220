"""Clustering metrics on hand-made labels, the grouping's constraints and the baselines, on small
synthetic vectors (fast)."""

from __future__ import annotations

import numpy as np
import pytest

from facevault.eval.cluster import (
    chinese_whispers,
    cluster_metrics,
    dbscan_immich,
    evaluate,
    incremental_grouping,
)
from facevault.eval.grouping import agglomerate


def test_perfect_and_all_in_one() -> None:
    truth = [0, 0, 0, 1, 1, 2]
    m = cluster_metrics([5, 5, 5, 7, 7, 9], truth)
    assert m["pairwise_precision"] == m["pairwise_recall"] == m["bcubed_f"] == 1.0
    assert m["people_found"] == m["identities"] == 3 and m["singletons_found"] == 1
    one = cluster_metrics([0] * 6, truth)
    # pairs: 15 predicted, 3 + 1 true -> precision 4/15; every true pair is found
    assert one["pairwise_precision"] == round(4 / 15, 4) and one["pairwise_recall"] == 1.0
    # BCubed precision: mean over faces of |own identity| / 6 = (3*3 + 2*2 + 1) / 36
    assert one["bcubed_precision"] == round(14 / 36, 4) and one["bcubed_recall"] == 1.0


def test_all_singletons_and_a_hand_computed_case() -> None:
    truth = [0, 0, 0, 1, 1, 2]
    alone = cluster_metrics(range(6), truth)
    assert alone["pairwise_precision"] == 1.0 and alone["pairwise_recall"] == 0.0
    assert alone["bcubed_precision"] == 1.0 and alone["bcubed_recall"] == round(
        (3 * (1 / 3) + 2 * 0.5 + 1) / 6, 4
    )
    # groups {0,1} {2,3} {4,5}: true pairs found 1 of 4; predicted pairs 3, one right
    m = cluster_metrics([0, 0, 1, 1, 2, 2], truth)
    assert m["pairwise_precision"] == round(1 / 3, 4) and m["pairwise_recall"] == 0.25
    bp = (1 + 1 + 0.5 + 0.5 + 0.5 + 0.5) / 6
    br = (2 / 3 + 2 / 3 + 1 / 3 + 0.5 + 0.5 + 1) / 6
    assert m["bcubed_precision"] == round(bp, 4) and m["bcubed_recall"] == round(br, 4)
    assert m["bcubed_f"] == round(2 * bp * br / (bp + br), 4)
    with pytest.raises(ValueError):
        cluster_metrics([0, 1], [0])


def _blobs(people: int, each: int, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((people, 64))
    x = np.repeat(centres, each, axis=0) + noise * rng.standard_normal((people * each, 64))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), np.repeat(np.arange(people), each)


def test_grouping_constraints_and_incremental() -> None:
    x, truth = _blobs(30, 8, 0.35)
    batch = agglomerate(x, 0.5)
    assert cluster_metrics(batch, truth)["bcubed_f"] == 1.0
    inc = incremental_grouping(x, 0.5, batch=50)
    assert cluster_metrics(inc, truth)["bcubed_f"] >= 0.99
    # Seeds of different people never merge, even for the same identity; "not this person" holds.
    seeds = np.full(len(x), -1)
    seeds[0], seeds[1] = 100, 200
    labels = agglomerate(x, 0.5, seeds=seeds, forbid={2: {100}})
    assert labels[0] == 100 and labels[1] == 200 and labels[2] != 100
    # Soft seeds (automatic people) may be joined by new evidence.
    soft = agglomerate(x, 0.5, seeds=seeds, soft={100, 200})
    assert soft[0] == soft[1]


def test_baselines_run_and_evaluate_reports_them() -> None:
    x, truth = _blobs(12, 5, 0.3, seed=1)
    for fn in (chinese_whispers, dbscan_immich):
        assert cluster_metrics(fn(x, 0.5), truth)["pairwise_precision"] == 1.0
    lone = dbscan_immich(x[:2], 0.999)  # no core face: every face alone
    assert len(set(lone.tolist())) == 2
    rep = evaluate(x, truth, model_id="dlib-resnet-v1", sweep=(1e-3,), incremental_batch=20)
    assert set(rep["baselines"]) == {"chinese_whispers", "dbscan_immich"}
    assert rep["facevault"]["faces"] == 60 and "bcubed_f_gap" in rep["incremental"]
