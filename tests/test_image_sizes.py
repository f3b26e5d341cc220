"""Small and large photos through the default pipeline: faces in ORL- and Yale-size grey images are found
(issue 12: every ORL s1-s20 and Yale subject01-08 image yields a face), and a face found on the
downscaled copy of a 12-megapixel photo is cut from the full-resolution pixels."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from facevault import imaging
from facevault.config import load_settings
from facevault.pipeline import Pipeline

DATA = Path(os.environ.get("FACEVAULT_TEST_DATA", "../shared/data"))


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"test data not available: {path} (set FACEVAULT_TEST_DATA)")
    return path


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    return Pipeline.for_model("dlib-resnet-v1", load_settings(tmp_path_factory.mktemp("vault")))


@pytest.mark.slow
def test_every_orl_and_yale_image_yields_a_face(pipeline: Pipeline) -> None:
    orl = _need(DATA / "orl_faces")
    yale = _need(DATA / "yale_faces")
    paths = [p for n in range(1, 21) for p in sorted((orl / f"s{n}").glob("*.pgm"))]
    paths += [p for n in range(1, 9) for p in sorted(yale.glob(f"subject{n:02d}.*"))]
    assert len(paths) == 200 + 87
    missed = [p.relative_to(DATA) for p in paths if not pipeline.analyze(imaging.load_image(p).pixels)]
    assert missed == []


def test_a_face_on_the_downscaled_copy_is_cut_from_the_full_resolution_photo(pipeline: Pipeline) -> None:
    photo = imaging.load_image(_need(DATA / "deepface_tests" / "img49.jpg")).pixels
    assert photo.shape[0] * photo.shape[1] > 12_000_000
    work, scale, faces = pipeline.detect(photo)
    assert scale < 0.5 and faces
    from_full = pipeline.embed_faces(work, scale, faces, full=photo)
    from_copy = pipeline.embed_faces(work, scale, faces)
    # the same face, in the photo's own coordinates either way
    assert from_full[0].face.box == from_copy[0].face.box
    assert from_full[0].face.box[2] > work.shape[1]  # beyond the copy's width: full-size coordinates
    # the same person, but not the same chip: one is cut from the photo, the other from its copy
    assert float(np.dot(from_full[0].embedding, from_copy[0].embedding)) > 0.9
    assert not np.array_equal(from_full[0].embedding, from_copy[0].embedding)
    assert pipeline.analyze(photo)[0].embedding.tolist() == from_full[0].embedding.tolist()
