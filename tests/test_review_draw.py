"""``facevault search --draw OUT.jpg`` writes the probe with names on its faces, and the summary line
names every face left to right (matched faces green, the others amber)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from facevault.service import annotate

from .test_cli import fv, fvj, gallery  # noqa: F401

GREEN = np.array(annotate.MATCH_COLOUR)


def test_search_draw_writes_the_labelled_probe(gallery: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "drawn.jpg"
    res = fvj("search", "staff", gallery["probe"], "--purpose", "test", "--draw", out)
    assert res["faces"][0]["candidates"][0]["name"] == "Eileen Collins"
    drawn = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert drawn.shape[:2] == np.asarray(Image.open(gallery["probe"])).shape[:2]
    assert (np.abs(drawn - GREEN).sum(axis=2) < 60).sum() > 300  # the green frame and label
    line = annotate.summary(res)
    assert line.startswith("1 face: Eileen Collins 0.")
    fv("search", "staff", gallery["probe"], gallery["a"], "--purpose", "t", "--draw", out, code=2)


def test_summary_orders_faces_left_to_right() -> None:
    faces = [
        {"face_index": 0, "box": [300, 10, 360, 70], "searched": True, "candidates": []},
        {
            "face_index": 1,
            "box": [10, 10, 70, 70],
            "searched": True,
            "candidates": [{"name": "Ann", "similarity": 0.9771}],
        },
        {"face_index": 2, "box": [150, 10, 170, 30], "searched": False, "candidates": []},
    ]
    assert annotate.summary({"faces": faces}) == "3 faces: Ann 0.977; not searched (too small); no match"
    assert annotate.summary({"faces": []}) == "no face found"
