"""Small faces in large photos (issue 12): the detector over full-resolution tiles (``detect_tiles``).

The real-photo test lays FDDB news photos side by side at their own resolution on one large canvas (as
``bench.large_group`` does), so the faces are small in a large photo: the whole-photo pass, which sees
the photo shrunk, misses them; the tiled pass finds them, with no more false detections than a few."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest
from bench.detection_match import iou_matrix, match_pairs
from bench.large_group import mosaic

from facevault.config import load_settings
from facevault.errors import ConfigError
from facevault.models import tiling
from facevault.models.base import DetectedFace
from facevault.pipeline import Pipeline

DATA = Path(os.environ.get("FACEVAULT_TEST_DATA", "../shared/data"))


def face(x1: float, y1: float, x2: float, y2: float, score: float = 1.0) -> DetectedFace:
    pts = np.array([[x1, y1]] * 5, dtype=np.float32)
    return DetectedFace((x1, y1, x2, y2), score, pts, (x1, y1), (x2, y1), (x1, y2))


@pytest.mark.parametrize(("width", "height", "side"), [(4096, 3072, 894), (640, 480, 640), (1000, 641, 640)])
def test_tiles_cover_every_pixel_overlap_and_stay_inside(width: int, height: int, side: int) -> None:
    grid = tiling.tile_grid(width, height, side)
    seen = np.zeros((height, width), dtype=np.int32)
    for x0, y0, x1, y1 in grid:
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert x1 - x0 <= side and y1 - y0 <= side
        seen[y0:y1, x0:x1] += 1
    assert seen.min() >= 1
    if width > side:  # neighbours share at least a third of a tile: a face that size is whole in one
        xs = sorted({x0 for x0, _, _, _ in grid})
        assert all(b - a <= side * (1 - tiling.OVERLAP) + 1 for a, b in itertools.pairwise(xs))


def test_merge_keeps_the_whole_photo_faces_and_drops_duplicates_and_parts() -> None:
    kept = [face(100, 100, 200, 220, 0.9)]
    extra = [
        face(105, 102, 198, 215, 0.95),  # the same face seen again in a tile
        face(150, 100, 200, 220, 0.99),  # the right half of it, cut by a tile's edge
        face(400, 400, 440, 448, 0.7),  # a small face only the tiles found
        face(402, 401, 441, 447, 0.6),  # and the same small face from the neighbouring tile
    ]
    merged = tiling.merge(kept, extra)
    assert [f.box for f in merged] == [(100, 100, 200, 220), (400, 400, 440, 448)]


def test_shifted_moves_box_and_points_then_scales() -> None:
    f = tiling.shifted(face(10, 20, 30, 40), 100, 200, 0.5)
    assert f.box == (55, 110, 65, 120)
    assert f.landmarks[0].tolist() == [55, 110] and f.left_eye == (55, 110) and f.nose == (55, 120)


def test_the_setting_is_checked_and_part_of_the_pipeline_signature(tmp_path: Path) -> None:
    settings = load_settings(tmp_path)
    off = Pipeline.for_model("dlib-resnet-v1", settings)
    on = Pipeline.for_model("dlib-resnet-v1", load_settings(tmp_path, detect_tiles="on"))
    assert off.tiles == "off" and on.tiles == "on"
    assert off.signature() != on.signature()  # prefetched faces of one are not the other's
    with pytest.raises(ConfigError, match="detect_tiles"):
        Pipeline(off.pack, tiles="always")


def _found(
    truth: list[tuple[float, float, float, float]], pipe: Pipeline, pixels: np.ndarray
) -> tuple[int, int]:
    _, scale, faces = pipe.detect(pixels)
    boxes = [tuple(v / scale for v in f.box) for f in faces]
    hits = len(match_pairs(iou_matrix(truth, boxes), 0.3))
    return hits, len(boxes) - hits


@pytest.mark.slow
def test_tiles_find_the_small_faces_of_a_large_group_photo(tmp_path: Path) -> None:
    from bench.detection_fddb import read_fddb

    if not (DATA / "fddb" / "faces.csv").is_file():
        pytest.skip("FDDB not available (set FACEVAULT_TEST_DATA)")
    items = read_fddb(DATA / "fddb")[::7][:40]
    pixels, truth = mosaic(items, (2400, 1800))
    assert len(truth) >= 25
    off = Pipeline.for_model("dlib-resnet-v1", load_settings(tmp_path))
    on = Pipeline.for_model("dlib-resnet-v1", load_settings(tmp_path, detect_tiles="on"))
    found_off, false_off = _found(truth, off, pixels)
    found_on, false_on = _found(truth, on, pixels)
    assert found_on >= 0.6 * len(truth)  # FDDB at upsample 0 of MMOD: about 0.74 of the faces
    assert found_on >= found_off + 0.4 * len(truth)
    assert false_on <= false_off + 3
    # a photo no larger than max_detect_side is not tiled: the same faces either way
    small = pixels[:900, :1200]
    assert [f.box for f in on.detect(small)[2]] == [f.box for f in off.detect(small)[2]]
