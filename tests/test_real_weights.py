"""The pack code on real weights: the ONNX files of ``FACEVAULT_TEST_MODELS`` (default ../shared/models;
SOURCE.md there gives their layout and traps) on real photos (``FACEVAULT_TEST_DATA``).

YuNet 2023mar (fixed 1x3x640x640) and its dynamic export, SCRFD det_500m and det_2.5g (numeric output
names; det_500m declares 640-case output shapes), MobileFaceNet 128-d through the ArcFace-style path with
per-channel ImageNet mean/std. Boxes are compared with dlib HOG's (the built-in default detector) on LFW.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from facevault import imaging
from facevault.models import registry
from facevault.models.base import DetectedFace, Detector, box_iou, l2_normalize
from facevault.models.packs import install_pack, load_pack, parse_manifest
from facevault.models.packs.arcface import ArcFaceEmbedder
from facevault.models.packs.common import OnnxFaceDetector
from facevault.models.packs.manifest import DetectorSpec, sha256_file
from facevault.models.packs.scrfd import ScrfdDetector
from facevault.models.packs.yunet import YunetDetector

from .conftest import data_path
from .pack_support import REAL_SHA256, real_model

YUNET_SPEC = DetectorSpec(
    "yunet", "x", mean=0.0, std=1.0, color="BGR", score_threshold=0.6, nms_threshold=0.3
)
SCRFD_SPEC = DetectorSpec("scrfd", "x")
IMAGENET_MEAN = [123.675, 116.28, 103.53]  # x/255 then (x - 0.485..) / 0.229.., in pixel units
IMAGENET_STD = [58.395, 57.12, 57.375]

DETECTORS = {
    "yunet-640": ("face_detection_yunet_2023mar.onnx", YunetDetector, YUNET_SPEC),
    "yunet-dynamic": ("yunet_s_dynamic.onnx", YunetDetector, YUNET_SPEC),
    "scrfd-500m": ("det_500m.onnx", ScrfdDetector, SCRFD_SPEC),
    "scrfd-2.5g": ("det_2.5g.onnx", ScrfdDetector, SCRFD_SPEC),
}


def _detector(which: str, **spec_changes: object) -> OnnxFaceDetector:
    file, cls, spec = DETECTORS[which]
    if spec_changes:
        spec = DetectorSpec(**{**spec.__dict__, **spec_changes})  # type: ignore[arg-type]
    return cls(real_model(file), spec, threads=1)


@pytest.fixture(scope="module")
def detectors() -> dict[str, OnnxFaceDetector]:
    return {k: _detector(k) for k in DETECTORS}


def _photo(*parts: str) -> np.ndarray:
    return imaging.load_image(data_path(*parts)).pixels


def _lfw_sample(n: int = 8) -> list[Path]:
    root = data_path("lfw", "lfw-deepfunneled")
    people = sorted(p for p in root.iterdir() if p.is_dir())[::400][:n]
    return [sorted(p.glob("*.jpg"))[0] for p in people]


def _central(faces: list[DetectedFace], shape: tuple[int, ...]) -> DetectedFace:
    h, w = shape[:2]
    return min(
        faces,
        key=lambda f: ((f.box[0] + f.box[2]) / 2 - w / 2) ** 2 + ((f.box[1] + f.box[3]) / 2 - h / 2) ** 2,
    )


def _assert_face_geometry(face: DetectedFace) -> None:
    """5 landmarks inside the (slightly grown) box, in the ArcFace order: the first eye left of the
    second, eyes above the nose, the nose above the mouth corners, mouth corners left to right."""
    x1, y1, x2, y2 = face.box
    pad_x, pad_y = 0.1 * (x2 - x1), 0.1 * (y2 - y1)
    pts = face.landmarks
    assert pts.shape == (5, 2)
    assert ((pts[:, 0] >= x1 - pad_x) & (pts[:, 0] <= x2 + pad_x)).all(), (face.box, pts)
    assert ((pts[:, 1] >= y1 - pad_y) & (pts[:, 1] <= y2 + pad_y)).all(), (face.box, pts)
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = pts
    assert lx < nx < rx and mlx < mrx
    assert max(ly, ry) < ny < min(mly, mry)
    assert face.left_eye[0] < face.right_eye[0]


def test_the_real_files_are_the_published_ones() -> None:
    for name, digest in REAL_SHA256.items():
        assert sha256_file(real_model(name)) == digest, name


def test_the_traps_of_the_real_files(detectors: dict[str, OnnxFaceDetector]) -> None:
    """What SOURCE.md warns about, as the code sees it: YuNet 2023mar is fixed at 640x640 and names its
    outputs; the dynamic YuNet and SCRFD take any size; SCRFD names its outputs with numbers."""
    assert detectors["yunet-640"].fixed_input() == (640, 640)
    assert detectors["yunet-dynamic"].fixed_input() is None
    names = detectors["yunet-640"]._output_names
    assert sorted(names) == sorted(f"{k}_{s}" for k in ("cls", "obj", "bbox", "kps") for s in (8, 16, 32))
    for k in ("scrfd-500m", "scrfd-2.5g"):
        assert detectors[k].fixed_input() is None
        assert len(detectors[k]._output_names) == 9 and all(n.isdigit() for n in detectors[k]._output_names)


@pytest.mark.parametrize("which", list(DETECTORS))
def test_boxes_agree_with_dlib_hog_on_lfw(which: str, detectors: dict[str, OnnxFaceDetector]) -> None:
    hog = registry.get_pack("dlib-resnet-v1").detector
    det = detectors[which]
    ious = []
    for path in _lfw_sample():
        pixels = imaging.load_image(path).pixels
        faces = det.detect(pixels)
        assert faces, f"{which} found no face in {path.name}"
        face = _central(faces, pixels.shape)
        assert face.score >= det.spec.score_threshold
        _assert_face_geometry(face)
        ref = _central(hog.detect(pixels), pixels.shape)
        ious.append(box_iou(face.box, ref.box))
        # the eyes sit where dlib's 5-point model puts them (within a quarter of the eye distance)
        for mine, theirs in ((face.left_eye, ref.left_eye), (face.right_eye, ref.right_eye)):
            assert np.hypot(mine[0] - theirs[0], mine[1] - theirs[1]) < 0.25 * ref.eye_distance, path.name
    assert min(ious) > 0.5 and float(np.median(ious)) > 0.6, ious


@pytest.mark.parametrize("which", list(DETECTORS))
def test_every_face_of_a_group_photo_with_its_landmarks(
    which: str, detectors: dict[str, OnnxFaceDetector]
) -> None:
    pixels = _photo("face_recognition_examples", "examples", "two_people.jpg")  # 1126x661
    faces = detectors[which].detect(pixels)
    assert len(faces) == 2
    for f in faces:
        _assert_face_geometry(f)
        assert f.score > 0.75 and 130 < f.width < 170
    assert {f.box[0] < pixels.shape[1] / 2 for f in faces} == {True, False}  # one on each side


def test_fixed_and_dynamic_yunet_find_the_same_faces(detectors: dict[str, OnnxFaceDetector]) -> None:
    for parts in (("obama.jpg",), ("obama-240p.jpg",), ("obama-1080p.jpg",)):
        pixels = _photo("face_recognition_examples", "examples", *parts)
        a, b = detectors["yunet-640"].detect(pixels), detectors["yunet-dynamic"].detect(pixels)
        assert len(a) == len(b) == 1, parts
        assert box_iou(a[0].box, b[0].box) > 0.85
        eye = a[0].eye_distance
        assert np.abs(a[0].landmarks - b[0].landmarks).max() < 0.2 * eye


def test_scrfd_runs_at_other_sizes_than_its_declared_outputs() -> None:
    """det_500m declares its output shapes for a 640x640 input; the decoder reads the actual ones."""
    pixels = _photo("face_recognition_examples", "examples", "obama.jpg")
    at_640 = _detector("scrfd-500m").detect(pixels)
    for size in ((416, 416), (480, 320)):
        faces = _detector("scrfd-500m", input_size=size).detect(pixels)
        assert len(faces) == 1 and box_iou(faces[0].box, at_640[0].box) > 0.8, size


@pytest.mark.parametrize("which", list(DETECTORS))
def test_a_face_that_fills_the_frame_is_found_with_a_good_score(
    which: str, detectors: dict[str, OnnxFaceDetector]
) -> None:
    photo = _photo("face_recognition_examples", "examples", "obama.jpg")
    ref = detectors["yunet-640"].detect(photo)[0]
    x1, y1, x2, y2 = (int(v) for v in ref.box)
    portrait = np.ascontiguousarray(photo[y1 + 10 : y2, x1:x2])  # nothing around the face
    det = detectors[which]
    faces = det.detect(portrait)
    assert len(faces) == 1
    assert faces[0].score > (0.9 if which.startswith("yunet") else 0.7), faces[0].score
    h, w = portrait.shape[:2]
    assert box_iou(faces[0].box, (0, 0, w, h)) > 0.75
    _assert_face_geometry(faces[0])
    if which.startswith("scrfd"):  # why the padded look exists: the plain letterbox misses it
        _, scores, _ = det.candidates(portrait, 1.0)
        assert scores.size == 0 or scores.max() < 0.5


def test_landmarks_in_a_given_box_on_a_real_photo(detectors: dict[str, OnnxFaceDetector]) -> None:
    pixels = _photo("face_recognition_examples", "examples", "obama.jpg")
    det = detectors["scrfd-500m"]
    found = det.detect(pixels)[0]
    hog = registry.get_pack("dlib-resnet-v1").detector
    box = hog.detect(pixels)[0].box
    given = det.landmarks_in_box(pixels, box)
    assert given.fallback and given.box == tuple(float(v) for v in box)
    assert np.abs(given.landmarks - found.landmarks).max() < 2.0


def test_no_face_in_a_photo_without_one(detectors: dict[str, OnnxFaceDetector]) -> None:
    rng = np.random.default_rng(3)
    noise = rng.integers(0, 256, (480, 640, 3)).astype(np.uint8)
    for which, det in detectors.items():
        assert det.detect(noise) == [], which


# ---- MobileFaceNet through the ArcFace-style path ---------------------------------------------------
def _mfn_manifest(file: str) -> dict:
    return {
        "name": "mobilefacenet-test",
        "version": "1",
        "detector": {"kind": "yunet", "file": "face_detection_yunet_2023mar.onnx"},
        "recognizer": {
            "kind": "arcface",
            "file": file,
            "embedding_dim": 128,
            "mean": IMAGENET_MEAN,
            "std": IMAGENET_STD,
        },
        "license": {"id": "research-only", "commercial_use": False, "text": "research use only"},
        "files": {
            "face_detection_yunet_2023mar.onnx": REAL_SHA256["face_detection_yunet_2023mar.onnx"],
            file: REAL_SHA256[file],
        },
    }


def _mfn(file: str) -> ArcFaceEmbedder:
    spec = parse_manifest(_mfn_manifest(file)).recognizer
    return ArcFaceEmbedder("mobilefacenet-test", real_model(file), spec, threads=1)


def test_the_manifest_keeps_per_channel_mean_and_std() -> None:
    m = parse_manifest(_mfn_manifest("mobilefacenet_foamliu.onnx"))
    assert m.recognizer.mean == tuple(IMAGENET_MEAN) and m.recognizer.std == tuple(IMAGENET_STD)
    again = parse_manifest(m.to_json())
    assert again.recognizer == m.recognizer
    emb = _mfn("mobilefacenet_foamliu.onnx")
    chip = np.full((112, 112, 3), (124, 116, 104), np.uint8)
    blob = emb.preprocess([chip])
    # x/255 then ImageNet normalisation, channel by channel (RGB): about zero for the mean colour
    assert (
        np.abs(
            blob[0, :, 0, 0]
            - (np.array([124, 116, 104]) / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
        ).max()
        < 1e-4
    )


def _lfw_pairs(count: int) -> tuple[list[tuple[Path, Path]], list[tuple[Path, Path]]]:
    """The first ``count`` matched and mismatched pairs of View-2 fold 1."""
    lines = data_path("lfw", "pairs.txt").read_text().splitlines()[1:]
    root = data_path("lfw", "lfw-deepfunneled")

    def img(name: str, n: str) -> Path:
        return root / name / f"{name}_{int(n):04d}.jpg"

    same = [(img(a, i), img(a, j)) for a, i, j in (ln.split() for ln in lines[:count])]
    diff = [(img(a, i), img(b, j)) for a, i, b, j in (ln.split() for ln in lines[300 : 300 + count])]
    return same, diff


def test_mobilefacenet_tells_people_apart_on_lfw(detectors: dict[str, OnnxFaceDetector]) -> None:
    det = detectors["yunet-640"]
    fixed, dyn = _mfn("mobilefacenet_foamliu.onnx"), _mfn("mobilefacenet_foamliu_dynbatch.onnx")
    cache: dict[Path, np.ndarray] = {}

    def vector(path: Path) -> np.ndarray:
        if path not in cache:
            pixels = imaging.load_image(path).pixels
            chip = dyn.align(pixels, _central(det.detect(pixels), pixels.shape))
            assert chip.shape == (112, 112, 3)
            cache[path] = l2_normalize(dyn.embed_chips([chip]))[0]
        return cache[path]

    same, diff = _lfw_pairs(15)
    genuine = np.array([vector(a) @ vector(b) for a, b in same])
    impostor = np.array([vector(a) @ vector(b) for a, b in diff])
    assert genuine.mean() - impostor.mean() > 0.45, (genuine.mean(), impostor.mean())
    accuracy = ((genuine > 0.4).sum() + (impostor <= 0.4).sum()) / (len(genuine) + len(impostor))
    assert accuracy >= 0.96, (sorted(genuine)[:3], sorted(impostor)[-3:])
    # the fixed-batch export (run chip by chip) and the dynamic-batch one give the same vectors
    pixels = imaging.load_image(same[0][0]).pixels
    chips = [dyn.align(pixels, f) for f in det.detect(pixels)] * 3
    a, b = l2_normalize(fixed.embed_chips(chips)), l2_normalize(dyn.embed_chips(chips))
    assert a.shape == (3, 128) and np.abs(a - b).max() < 1e-4


def test_an_installed_yunet_mobilefacenet_pack(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    data = _mfn_manifest("mobilefacenet_foamliu_dynbatch.onnx")
    data["name"] = "yunet-mfn"
    for f in data["files"]:
        shutil.copy(real_model(f), src / f)
    (src / "facevault-pack.json").write_text(json.dumps(data))
    root = tmp_path / "models"
    install_pack(src, accept_license=True, root=root)
    pack = load_pack("yunet-mfn", root, threads=1)
    assert isinstance(pack.detector, Detector) and pack.dim == 128
    first, second = _lfw_pairs(1)[0][0]
    vecs = []
    for path in (first, second):
        pixels = imaging.load_image(path).pixels
        face = _central(pack.detector.detect(pixels), pixels.shape)
        vecs.append(l2_normalize(pack.embedder.embed_chips([pack.embedder.align(pixels, face)]))[0])
    assert pack.model_id == "yunet-mfn" and pack.embedder.dim == 128
    assert float(vecs[0] @ vecs[1]) > 0.4


def test_the_real_yunet_installs_as_a_known_layout(tmp_path: Path) -> None:
    """A folder with just OpenCV Zoo's file (no manifest) is the catalog's detector-only ``yunet``."""
    from facevault.models.packs import installed_detectors, load_detector

    src = tmp_path / "download"
    src.mkdir()
    shutil.copy(real_model("face_detection_yunet_2023mar.onnx"), src)
    root = tmp_path / "models"
    pack = install_pack(src, root=root)
    assert pack.name == "yunet" and pack.manifest.detector_only and pack.manifest.license.id == "MIT"
    assert [d.name for d in installed_detectors(root)] == ["yunet"]
    pixels = _photo("face_recognition_examples", "examples", "obama.jpg")
    assert len(load_detector("yunet", root).detect(pixels)) == 1
