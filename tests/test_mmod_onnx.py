"""dlib's MMOD CNN face detector converted to ONNX: the file's structure and options, the graph contract,
the cache, the tiled pyramid, parity with dlib itself on real photos, and the detector on real photos."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from facevault.models.dlib import mmod
from facevault.models.dlib import mmod_convert as m

frm = pytest.importorskip("face_recognition_models")
ort = pytest.importorskip("onnxruntime")

from .conftest import data_path  # noqa: E402

# dlib.cnn_face_detection_model_v1(path)(img, upsample) as recorded with dlib-bin 20.0.1: (left, top,
# right, bottom, confidence). The slow test below recomputes such references with dlib itself.
RECORDED = {
    ("face_recognition_examples/examples/obama_small.jpg", 0): [(98, 58, 212, 171, 1.1201520)],
    ("face_recognition_examples/examples/obama_small.jpg", 1): [(94, 64, 211, 182, 1.1080060)],
    ("fddb/images/2002/07/20/big/img_588.jpg", 0): [
        (324, 28, 403, 107, 0.6816130),
        (28, 28, 107, 107, 0.2889693),
    ],
    ("fddb/images/2002/07/25/big/img_725.jpg", 0): [
        (177, 50, 272, 145, 1.0912708),
        (28, 52, 107, 131, 1.0514484),
        (324, 44, 403, 123, 1.0184020),
    ],
}
SCORE_TOLERANCE = 1e-4


def _rgb(*parts: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(data_path(*parts)).convert("RGB"))


@pytest.fixture(scope="module")
def weights() -> m.DlibMmodWeights:
    return m.parse_dlib_mmod(frm.cnn_face_detector_model_location())


@pytest.fixture(scope="module")
def detector() -> mmod.DlibMmodDetector:
    return mmod.DlibMmodDetector(threads=1)


# ---------------------------------------------------------------------------------------- structure


def test_parsed_structure(weights: m.DlibMmodWeights) -> None:
    cfg = weights.config
    assert cfg.detector_windows == [(80, 80, "")]
    assert cfg.nms_iou == pytest.approx(0.3383, abs=1e-4) and cfg.nms_covered == 1.0
    assert cfg.mean_rgb == pytest.approx((122.782, 117.001, 104.298), abs=1e-4)
    assert (cfg.pyramid_padding, cfg.pyramid_outer_padding, cfg.pyramid_down) == (10, 11, 6)
    # three 5x5 stride-2 convs (stride 8), then three 5x5 and one 9x9 at stride 1:
    # offset = ((((0*1 - 4 + 4)*1 - 2 + 2)... composed back to the input = 14
    assert (cfg.cell_stride, cfg.cell_offset) == (8, 14)
    convs = [layer for layer in weights.layers if layer.kind == "con"]
    assert [c.arrays["filters"].shape[0] for c in convs] == [16, 32, 32, 45, 45, 45, 1]
    assert [c.attrs["stride_y"] for c in convs] == [2, 2, 2, 1, 1, 1, 1]
    assert [layer.kind for layer in weights.layers].count("affine") == 6
    assert all(np.isfinite(a).all() for layer in weights.layers for a in layer.arrays.values())


def test_not_a_detector_is_refused(tmp_path: Path) -> None:
    with pytest.raises(m.DlibSerializationError):
        m.parse_dlib_mmod(frm.face_recognition_model_location())  # the ResNet: loss_metric_
    broken = tmp_path / "short.dat"
    broken.write_bytes(Path(frm.cnn_face_detector_model_location()).read_bytes()[:5000])
    with pytest.raises(m.DlibSerializationError):
        m.parse_dlib_mmod(broken)


def test_convert_graph_contract(tmp_path: Path) -> None:
    path = tmp_path / "mmod.onnx"
    digest = m.convert(frm.cnn_face_detector_model_location(), path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert m.read_config(path).detector_windows == [(80, 80, "")]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, out.name) == ("pyramid", "score")
    assert all(isinstance(d, str) for d in inp.shape[2:])  # dynamic H, W
    for h, w in ((64, 64), (101, 77)):  # output: three valid 5x5 stride-2 convs, then 'same' convs
        x = np.zeros((1, 3, h, w), dtype=np.float32)
        got = session.run(None, {"pyramid": x})[0]
        exp_h = (((h - 5) // 2 + 1 - 5) // 2 + 1 - 5) // 2 + 1
        exp_w = (((w - 5) // 2 + 1 - 5) // 2 + 1 - 5) // 2 + 1
        assert got.shape == (1, 1, exp_h, exp_w)


def test_cache_is_versioned_and_checked(tmp_path: Path) -> None:
    src = Path(frm.cnn_face_detector_model_location())
    first = m.converted_mmod_path(src, tmp_path)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    assert first.name == f"dlib-mmod-face-{digest}-c{m.CONVERTER_VERSION}.onnx"
    good = first.read_bytes()
    stamp = first.stat().st_mtime_ns
    assert m.converted_mmod_path(src, tmp_path) == first and first.stat().st_mtime_ns == stamp
    first.write_bytes(good[: len(good) // 2])  # a truncated cache file is rebuilt, not served
    assert m.converted_mmod_path(src, tmp_path).read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name, first.name + ".sha256"]


# ---------------------------------------------------------------------------------------- pyramid


@pytest.mark.parametrize(("nr", "nc"), [(240, 320), (332, 500), (1200, 626), (37, 901), (5, 5)])
def test_pyramid_layout(weights: m.DlibMmodWeights, nr: int, nc: int) -> None:
    rects, rows, cols = mmod.pyramid_layout(nr, nc, weights.config)
    assert rects[0] == (11, 11, 11 + nc - 1, 11 + nr - 1)
    h, w = nr, nc
    for i, (left, top, right, bottom) in enumerate(rects):
        assert 0 <= left <= right < cols and 0 <= top <= bottom < rows
        assert (bottom - top + 1, right - left + 1) == (h, w)  # each level floor(5/6) of the previous
        h, w = int(5 / 6 * h), int(5 / 6 * w)
        for other in rects[:i]:
            assert not mmod._intersects(rects[i], other)


# ---------------------------------------------------------------------------------------- parity


@pytest.mark.parametrize(("key", "want"), list(RECORDED.items()), ids=lambda v: str(v)[-40:])
def test_matches_recorded_dlib(detector: mmod.DlibMmodDetector, key: tuple[str, int], want: list) -> None:
    rel, upsample = key
    got = detector.run(_rgb(*rel.split("/")), upsample)
    assert [list(box) for box, _ in got] == [list(w[:4]) for w in want]
    assert [s for _, s in got] == pytest.approx([w[4] for w in want], abs=SCORE_TOLERANCE)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("rel", "upsample"),
    [
        ("dlib_faces/2008_002470.jpg", 1),  # six small faces
        ("face_recognition_examples/examples/obama-240p.jpg", 1),
        ("fddb/images/2003/01/14/big/img_882.jpg", 1),
        ("face_recognition_examples/examples/two_people.jpg", 0),
    ],
)
def test_matches_dlib_itself(detector: mmod.DlibMmodDetector, rel: str, upsample: int) -> None:
    dlib = pytest.importorskip("dlib")
    img = _rgb(*rel.split("/"))
    ref = dlib.cnn_face_detection_model_v1(frm.cnn_face_detector_model_location())(img, upsample)
    got = detector.run(img, upsample)
    assert len(ref) > 0
    assert [list(box) for box, _ in got] == [
        [d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()] for d in ref
    ]
    assert [s for _, s in got] == pytest.approx([d.confidence for d in ref], abs=SCORE_TOLERANCE)


# ---------------------------------------------------------------------------------------- detector


def test_finds_the_faces_in_a_group_photo(detector: mmod.DlibMmodDetector) -> None:
    img = _rgb("dlib_faces", "2008_002470.jpg")
    faces = detector.detect(img)  # upsample 1 (default): faces of ~40 px
    assert len(faces) == 6
    areas = [f.area for f in faces]
    assert areas == sorted(areas, reverse=True)
    for f in faces:
        x1, y1, x2, y2 = f.box
        assert f.landmarks.shape == (5, 2) and f.score > 0
        assert x1 <= f.left_eye[0] < f.right_eye[0] <= x2 and y1 <= f.nose[1] <= y2
    assert mmod.DlibMmodDetector(upsample=0, threads=1).detect(img) == []  # 40 px faces need upsampling


def test_portrait_shortcut(detector: mmod.DlibMmodDetector) -> None:
    big = _rgb("face_recognition_examples", "examples", "obama_small.jpg")  # face: 114 of 320 px
    (face,) = detector.detect_portrait(big)
    assert face.box == (98.0, 58.0, 213.0, 172.0)  # found at the image's own scale (dlib's upsample 0)
    img = _rgb("face_recognition_examples", "examples", "two_people.jpg")  # faces under 30% of the width
    faces = detector.detect_portrait(img)  # so the upsampled search runs too, and finds the same two
    assert len(faces) == 2 and faces[0].width > 120
    assert sorted(round(f.box[0]) for f in faces) == pytest.approx([225, 795], abs=4)


def test_face_filling_the_frame(detector: mmod.DlibMmodDetector) -> None:
    img = _rgb("face_recognition_examples", "examples", "obama_small.jpg")
    crop = img[58:172, 98:213]  # dlib's own box: the face fills the whole frame
    faces = mmod.DlibMmodDetector(upsample=0, threads=1).detect(crop)
    assert len(faces) == 1
    assert faces[0].width >= 0.8 * crop.shape[1]


def test_no_face_in_dogs(detector: mmod.DlibMmodDetector) -> None:
    img = _rgb("dlib_faces", "dogs.jpg")
    assert mmod.DlibMmodDetector(upsample=0, threads=1).detect(img) == []


def test_min_face_scales_the_search(detector: mmod.DlibMmodDetector) -> None:
    img = _rgb("face_recognition_examples", "examples", "obama-240p.jpg")  # a ~57 px face
    assert mmod.DlibMmodDetector(upsample=0, threads=1).detect(img) == []
    faces = mmod.DlibMmodDetector(upsample=None, min_face=50, threads=1).detect(img)
    assert len(faces) == 1
    x1, y1, x2, y2 = faces[0].box
    assert abs(x1 - 192) <= 6 and abs(y1 - 27) <= 6 and abs(x2 - 250) <= 6 and abs(y2 - 85) <= 6


@pytest.mark.parametrize("shape", [(1, 1, 3), (4, 4, 3), (40, 30, 3), (81, 97, 3), (123, 321, 3), (64, 64)])
def test_any_input_size(detector: mmod.DlibMmodDetector, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(sum(shape))
    img = rng.integers(0, 256, size=shape).astype(np.uint8)
    faces = detector.detect(img)  # noise: no crash and no face
    assert faces == []


def test_odd_size_crop_keeps_the_face(detector: mmod.DlibMmodDetector) -> None:
    img = _rgb("face_recognition_examples", "examples", "obama_small.jpg")[3:238, 1:317]  # 235x316
    faces = detector.detect(img)
    assert len(faces) == 1
    assert faces[0].box[0] == pytest.approx(94 - 1, abs=3) and faces[0].box[1] == pytest.approx(64 - 3, abs=3)


def test_landmarks_in_box_and_bad_options(detector: mmod.DlibMmodDetector) -> None:
    img = _rgb("face_recognition_examples", "examples", "obama_small.jpg")
    face = detector.landmarks_in_box(img, (98.0, 58.0, 213.0, 172.0))
    assert face.fallback and face.landmarks.shape == (5, 2)
    assert 98 <= face.left_eye[0] < face.right_eye[0] <= 213
    from facevault.errors import ModelError

    with pytest.raises(ModelError):
        mmod.DlibMmodDetector(upsample=-1)
    with pytest.raises(ModelError):
        mmod.DlibMmodDetector(upsample=None, min_face=None)
    with pytest.raises(ModelError):
        detector.detect(np.zeros((10, 10, 3), dtype=np.float32))
