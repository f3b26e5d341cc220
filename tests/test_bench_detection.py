"""bench.detection: the matching rule and the pooled ROC on hand-made boxes, then a few real FDDB images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.detection_detectors import Choice, Unavailable, threshold_of, with_threshold
from bench.detection_match import (
    ImageDetections,
    at_threshold,
    match,
    pooled_roc,
    prefix_counts,
    rate_at_false,
)

from .conftest import data_path

T0 = (0.0, 0.0, 10.0, 10.0)
T1 = (6.0, 0.0, 16.0, 10.0)
D_A = (2.0, 0.0, 12.0, 10.0)  # IoU 0.667 with T0, 0.429 with T1
D_B = (0.0, 0.0, 10.0, 10.0)  # IoU 1.0 with T0, 0.25 with T1
FAR = (100.0, 100.0, 110.0, 110.0)


def test_matching_is_greedy_by_iou_not_by_score() -> None:
    # D_A scores higher; score-ordered matching would give it T0 and leave D_B false (0.25 < 0.3 with T1)
    assert match([T0, T1], [D_A, D_B], 0.3)[:2] == (2, 0)
    assert prefix_counts([T0, T1], [D_A, D_B], 0.3) == [(0, 0), (1, 0), (2, 0)]
    img = ImageDetections([T0, T1], [D_B, D_A], [0.5, 0.9])
    assert at_threshold([img], 0.0, 0.3)["found"] == 2
    counts = at_threshold([img], 0.0, 0.5)  # T1 only reaches 0.429 with D_A
    assert (counts["found"], counts["false"], counts["detections"]) == (1, 1, 2)
    # only D_A passes 0.6: it takes T0
    assert at_threshold([img], 0.6, 0.3)["found"] == 1


def test_a_second_detection_of_one_face_is_false() -> None:
    found, false, ious = match([T0], [D_B, D_A], 0.3)
    assert (found, false) == (1, 1)
    assert ious == [1.0]


def test_pooled_roc_and_rate_at_false() -> None:
    images = [
        ImageDetections([T0], [T0, FAR], [0.9, 0.8]),
        ImageDetections([T0], [FAR, T0], [0.95, 0.5]),
    ]
    points = [(p.threshold, p.found, p.false) for p in pooled_roc(images, 0.5)]
    assert points == [(float("inf"), 0, 0), (0.95, 0, 1), (0.9, 1, 1), (0.8, 1, 2), (0.5, 2, 2)]
    roc = pooled_roc(images, 0.5)
    assert rate_at_false(roc, 2, 0) == {
        "tpr": 0.0,
        "found": 0,
        "false": 0,
        "threshold": float("inf"),
        "reached": True,
    }
    one = rate_at_false(roc, 2, 1)
    assert (one["tpr"], one["threshold"], one["reached"]) == (0.5, 0.9, True)
    assert rate_at_false(roc, 2, 2)["tpr"] == 1.0
    assert rate_at_false(roc, 2, 5)["reached"] is False  # the curve ends at 2 false: a lower bound
    # every point is the operating-point matching at its threshold
    for thr, found, false in points[1:]:
        c = at_threshold(images, thr, 0.5)
        assert (c["found"], c["false"]) == (found, false)


def test_tied_scores_make_one_point_and_small_faces_count_apart() -> None:
    big, small = (0.0, 0.0, 60.0, 60.0), (70.0, 50.0, 100.0, 90.0)  # 60 and 30 px wide
    images = [ImageDetections([big, small], [big], [0.7]), ImageDetections([big], [FAR], [0.7])]
    assert [(p.found, p.false) for p in pooled_roc(images, 0.5)] == [(0, 0), (1, 1)]
    c = at_threshold(images, 0.0, 0.3, small_width=40.0)
    assert (c["faces"], c["small_faces"], c["small_found"], c["found"]) == (3, 1, 0, 1)


def test_thresholds_of_pack_detectors_and_missing_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from facevault.models.dlib.models import DlibHogDetector
    from facevault.models.packs.manifest import DetectorSpec
    from facevault.models.packs.yunet import YunetDetector

    yunet = YunetDetector(
        tmp_path / "none.onnx", DetectorSpec(kind="yunet", file="none.onnx", score_threshold=0.6)
    )
    lower = with_threshold(yunet, 0.3)
    assert (threshold_of(yunet), threshold_of(lower)) == (0.6, 0.3)
    assert threshold_of(with_threshold(DlibHogDetector(), -0.5)) == -0.5
    monkeypatch.setenv("FACEVAULT_TEST_MODELS", str(tmp_path))
    with pytest.raises(Unavailable, match="not found"):
        Choice("yunet").build()
    with pytest.raises(Unavailable, match="unknown detector"):
        Choice("nope").build()


def _fddb(n: int) -> list[tuple[str, list[tuple[float, float, float, float]]]]:
    from bench.detection_fddb import read_fddb

    return read_fddb(data_path("fddb"), n)


@pytest.mark.data
def test_five_fddb_images_with_hog() -> None:
    """On real photos: the detections above the operating threshold from a run at the ROC floor are
    exactly a run at the operating threshold (what lets one pass give both), and the ROC point at the
    operating threshold is the operating figure."""
    from bench.detection_detectors import FixedUpsampleHog, detect_boxes

    from facevault import imaging

    items = _fddb(5)
    assert len(items) == 5 and sum(len(t) for _, t in items) >= 5
    floor, operating = FixedUpsampleHog(1, -1.0), FixedUpsampleHog(1, 0.0)
    images = []
    for path, truth in items:
        pixels = imaging.load_image(path).pixels
        boxes, scores = detect_boxes(floor, pixels)
        op_boxes, _ = detect_boxes(operating, pixels)
        assert sorted(b for b, s in zip(boxes, scores, strict=True) if s >= 0.0) == sorted(op_boxes)
        images.append(ImageDetections(truth, boxes, scores))  # type: ignore[arg-type]
    c3, c5 = at_threshold(images, 0.0, 0.3), at_threshold(images, 0.0, 0.5)
    assert 0 < c5["found"] <= c3["found"] <= c3["faces"]
    at_op = [p for p in pooled_roc(images, 0.3) if p.threshold >= 0.0][-1]
    assert (at_op.found, at_op.false) == (c3["found"], c3["false"])


@pytest.mark.data
@pytest.mark.slow
def test_bench_cli_on_three_fddb_images(tmp_path: Path) -> None:
    from bench.detection import main

    _fddb(3)
    out = tmp_path / "det.json"
    out.write_text(json.dumps({"results": {"kept": {"from": "an earlier run"}}}), encoding="utf-8")
    data = str(data_path("fddb").parent)
    main(["--detectors", "hog,nope", "--limit", "3", "--skip-lfw", "--data", data, "--out", str(out)])
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert set(doc["results"]) == {"kept", "hog"}  # merged; the unknown name was skipped
    hog = doc["results"]["hog"]
    assert (
        hog["fddb"]["images"] == 3
        and hog["roc_floor"] == -1.0
        and hog["fddb"]["images_where_floor_run_differs"] == 0
        and hog["operating_threshold"] == 0.0
    )
    assert set(hog["timing"]) == {"1", "2"} and hog["timing"]["2"]["mode"] == "2 worker process(es)"
    assert hog["testing_xml"]["boxes"] == 25
