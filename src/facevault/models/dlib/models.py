"""dlib's frontal HOG detector, 5- or 68-point landmarks and 128-d ResNet, from the PyPI packages
``dlib-bin`` (or ``dlib``) and ``face-recognition-models``. Nothing is loaded at import time.

The landmark model decides the alignment: ``dlib.get_face_chip`` fits its similarity transform to all
5 points, or to the 68-point model's points. The 68-point model aligns better (docs/BENCHMARKS.md), but
it was trained on iBUG 300-W, whose license excludes commercial use, so it is only used by the
license-gated ``dlib-resnet-v1-lm68`` pack (see ``dlib.license``)."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import tempfile
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ...config import model_cache_setting
from ...errors import ModelError
from ..base import DetectedFace, Detector, Embedder

CHIP_SIZE = 150
CHIP_PADDING = 0.25
AUGMENT_PADDING = 0.30
# SVM score offset of the detector's second look (evaluation protocols only).
LENIENT_THRESHOLD = -0.6
# detect_portrait: a face at least this share of the longer side ends the search.
PORTRAIT_FRACTION = 0.3


def _dlib() -> Any:
    try:
        import dlib
    except ImportError as exc:  # pragma: no cover - dependency is declared
        raise ModelError("dlib is not installed (pip install dlib-bin)") from exc
    return dlib


class ModelFiles:
    """Where ``face-recognition-models`` keeps its four dlib files, found without importing the package:
    its ``__init__`` imports ``pkg_resources`` (0.2-0.3 s, a third of a one-off search's budget) only to
    build these paths. Same method names as the package's own functions."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _file(self, name: str) -> str:
        path = self.folder / name
        if not path.is_file():
            raise ModelError(f"face-recognition-models is incomplete: {path} is missing")
        return str(path)

    def pose_predictor_model_location(self) -> str:
        return self._file("shape_predictor_68_face_landmarks.dat")

    def pose_predictor_five_point_model_location(self) -> str:
        return self._file("shape_predictor_5_face_landmarks.dat")

    def face_recognition_model_location(self) -> str:
        return self._file("dlib_face_recognition_resnet_model_v1.dat")

    def cnn_face_detector_model_location(self) -> str:
        return self._file("mmod_human_face_detector.dat")


@functools.cache
def model_files() -> ModelFiles:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:  # pragma: no cover - dependency is declared
        raise ModelError("face-recognition-models is not installed")
    return ModelFiles(Path(next(iter(spec.submodule_search_locations))) / "models")


_model_files = model_files  # the older private name


def frontal_detector() -> Any:
    """dlib's frontal HOG detector. ``get_frontal_face_detector`` rebuilds it from text embedded in dlib
    (0.35-0.6 s per process); the same object saved in dlib's binary form loads in ~2 ms, so it is cached
    under the model cache, named by the dlib version, and written atomically (a killed write leaves no
    half file behind). A cache file dlib cannot read is rebuilt."""
    dlib = _dlib()
    cache = model_cache_dir() / f"dlib-frontal-hog-{dlib.__version__}.svm"
    if cache.is_file():
        try:
            return dlib.fhog_object_detector(str(cache))
        except RuntimeError:
            pass  # unreadable (not dlib's format): rebuild below
    detector = dlib.get_frontal_face_detector()
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=cache.name, suffix=".tmp", dir=cache.parent)
        os.close(fd)
        detector.save(tmp)
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only cache only costs the slower load next time
    return detector


# Where the quality module's three points sit in each landmark set: the two corners of each eye and the
# base of the nose. 5-point model: corners 0-1 and 2-3, nose 4. 68-point (iBUG) model: corners 36/39
# and 42/45, nose base 33, the same anatomical points, so quality thresholds hold for both.
_EYE_CORNERS = {5: ((0, 1), (2, 3)), 68: ((36, 39), (42, 45))}
_NOSE_BASE = {5: 4, 68: 33}
# Which point a landmark becomes in the mirror image (left and right swap).
_MIRROR_ORDER = {
    5: [2, 3, 0, 1, 4],
    68: [
        *range(16, -1, -1),  # jaw
        *range(26, 16, -1),  # brows
        *(27, 28, 29, 30, 35, 34, 33, 32, 31),  # nose
        *(45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40),  # eyes
        *(54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65),  # mouth
    ],
}
# Landmark refinement (opt-in, FACEVAULT_LANDMARK_REFINE=1): the shape predictor run on the face box and on
# the box shifted by 4% of its size left, right, up and down, and once on the mirror image; the six point
# sets are averaged. It steadies the alignment (better on every development measure, docs/BENCHMARKS.md)
# but costs 2-5 ms per face, which the default's ingest speed target cannot afford.
REFINE_SHIFTS = ((0.0, 0.0), (0.04, 0.0), (-0.04, 0.0), (0.0, 0.04), (0.0, -0.04))


def _points(shape: Any) -> np.ndarray:
    return np.array([[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)], dtype=np.float32)


def _face_from_points(pts: np.ndarray, box: tuple[float, float, float, float], score: float) -> DetectedFace:
    n = len(pts)
    if n not in _EYE_CORNERS:
        raise ModelError(f"unsupported landmark model with {n} points (5 or 68 expected)")
    (a0, a1), (b0, b1) = _EYE_CORNERS[n]
    eye_a = tuple(float(v) for v in pts[[a0, a1]].mean(axis=0))
    eye_b = tuple(float(v) for v in pts[[b0, b1]].mean(axis=0))
    nose = pts[_NOSE_BASE[n]]
    left, right = (eye_a, eye_b) if eye_a[0] <= eye_b[0] else (eye_b, eye_a)
    return DetectedFace(
        box=box,
        score=float(score),
        landmarks=pts,
        left_eye=left,  # type: ignore[arg-type]
        right_eye=right,  # type: ignore[arg-type]
        nose=(float(nose[0]), float(nose[1])),
    )


class DlibHogDetector(Detector):
    """HOG + linear SVM frontal detector. Faces smaller than ~80 px need upsampling; we upsample
    once for images up to ``upsample_below`` pixels on their longer side. ``landmarks``: 5 (dlib's own,
    free for any use) or 68 (iBUG 300-W, non-commercial; 0.7 instead of 0.2 ms per face)."""

    def __init__(
        self,
        upsample_below: int = 1000,
        adjust_threshold: float = 0.0,
        landmarks: int = 5,
        refine: bool = False,
    ) -> None:
        """``refine``: average the landmarks over shifted boxes and the mirror image
        (``REFINE_SHIFTS``)."""
        if landmarks not in _EYE_CORNERS:
            raise ModelError(f"landmarks must be 5 or 68, got {landmarks}")
        self.upsample_below = upsample_below
        self.adjust_threshold = adjust_threshold
        self.landmarks = landmarks
        self.refine = refine
        self.name = "dlib-hog" if landmarks == 5 else "dlib-hog-68"

    @cached_property
    def _detector(self) -> Any:
        return frontal_detector()

    @cached_property
    def _shape_predictor(self) -> Any:
        files = model_files()
        if self.landmarks == 68:
            return _dlib().shape_predictor(files.pose_predictor_model_location())
        return _dlib().shape_predictor(files.pose_predictor_five_point_model_location())

    def _upsample_count(self, pixels: np.ndarray) -> int:
        return 1 if max(pixels.shape[:2]) <= self.upsample_below else 0

    def detect(self, pixels: np.ndarray) -> list[DetectedFace]:
        return self._detect(pixels, self.adjust_threshold)

    def detect_portrait(self, pixels: np.ndarray) -> list[DetectedFace]:
        """Scan at the image's own scale first; upsample (4x the HOG work) only when no face is found or
        the largest is smaller than ``PORTRAIT_FRACTION`` of the longer side. Measured on 6,922 LFW
        images: 16.8 instead of 40.6 ms per image, and a face found in 99.6% instead of 99.3%
        (docs/BENCHMARKS.md); small background faces next to a large one are not looked for."""
        faces = self._detect(pixels, self.adjust_threshold, upsample=0)
        if self._upsample_count(pixels) == 0:
            return faces
        if faces and max(f.height for f in faces) >= PORTRAIT_FRACTION * max(pixels.shape[:2]):
            return faces
        return self._detect(pixels, self.adjust_threshold)

    def detect_lenient(self, pixels: np.ndarray) -> list[DetectedFace]:
        return self._detect(pixels, LENIENT_THRESHOLD)

    def _detect(
        self, pixels: np.ndarray, adjust_threshold: float, upsample: int | None = None
    ) -> list[DetectedFace]:
        times = self._upsample_count(pixels) if upsample is None else upsample
        rects, scores, _ = self._detector.run(pixels, times, adjust_threshold)
        faces = []
        h, w = pixels.shape[:2]
        views = _GreyViews(pixels)
        for rect, score in zip(rects, scores, strict=True):
            box = (
                float(max(0, rect.left())),
                float(max(0, rect.top())),
                float(min(w, rect.right() + 1)),
                float(min(h, rect.bottom() + 1)),
            )
            faces.append(_face_from_points(self._landmarks(pixels, rect, views), box, score))
        faces.sort(key=lambda f: -f.area)
        return faces

    def _landmarks(self, pixels: np.ndarray, rect: Any, views: _GreyViews) -> np.ndarray:
        predict = self._shape_predictor
        if not self.refine:
            return _points(predict(pixels, rect))
        dlib = _dlib()
        left, top, right, bottom = rect.left(), rect.top(), rect.right(), rect.bottom()
        bw, bh = right - left, bottom - top
        grey = views.grey
        runs = []
        for dx, dy in REFINE_SHIFTS:
            ox, oy = dx * bw, dy * bh
            moved = dlib.rectangle(
                int(round(left + ox)), int(round(top + oy)), int(round(right + ox)), int(round(bottom + oy))
            )
            runs.append(_points(predict(grey, moved)))
        w = pixels.shape[1]
        mirrored_box = dlib.rectangle(w - 1 - right, top, w - 1 - left, bottom)
        flipped = _points(predict(views.grey_mirrored, mirrored_box))
        flipped[:, 0] = w - 1 - flipped[:, 0]
        runs.append(flipped[_MIRROR_ORDER[len(flipped)]])
        return np.mean(runs, axis=0).astype(np.float32)

    def landmarks_in_box(self, pixels: np.ndarray, box: tuple[float, float, float, float]) -> DetectedFace:
        dlib = _dlib()
        rect = dlib.rectangle(int(box[0]), int(box[1]), int(box[2]) - 1, int(box[3]) - 1)
        face = _face_from_points(self._landmarks(pixels, rect, _GreyViews(pixels)), box, score=0.0)
        return DetectedFace(**{**face.__dict__, "fallback": True})


class _GreyViews:
    """The grey image the shape predictor reads (mean of R, G and B, as dlib computes it from RGB: the
    same points, 10% faster per run) and its mirror image, made once per image and only if a face
    needs them."""

    def __init__(self, pixels: np.ndarray) -> None:
        self._source = pixels
        self._grey: np.ndarray | None = None
        self._flipped: np.ndarray | None = None

    @property
    def grey(self) -> np.ndarray:
        if self._grey is None:
            src = self._source
            self._grey = (src.sum(axis=2, dtype=np.uint16) // 3).astype(np.uint8) if src.ndim == 3 else src
        return self._grey

    @property
    def grey_mirrored(self) -> np.ndarray:
        if self._flipped is None:
            self._flipped = np.ascontiguousarray(self.grey[:, ::-1])
        return self._flipped


class DlibResnetEmbedder(Embedder):
    """dlib's 29-layer ResNet (LFW 99.38% in dlib's own pipeline), 150x150 chips, 128-d output."""

    model_id = "dlib-resnet-v1"
    dim = 128

    @cached_property
    def _net(self) -> Any:
        return _dlib().face_recognition_model_v1(model_files().face_recognition_model_location())

    def align(self, pixels: np.ndarray, face: DetectedFace, padding: float = CHIP_PADDING) -> np.ndarray:
        dlib = _dlib()
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        rect = dlib.rectangle(x1, y1, x2 - 1, y2 - 1)
        points = [dlib.point(int(round(x)), int(round(y))) for x, y in face.landmarks]
        shape = dlib.full_object_detection(rect, points)
        return np.asarray(dlib.get_face_chip(pixels, shape, CHIP_SIZE, padding), dtype=np.uint8)

    def align_views(self, pixels: np.ndarray, face: DetectedFace, augment: bool) -> list[np.ndarray]:
        """With ``augment``, a second chip with more context around the face (padding 0.30 instead of
        0.25). Not the default: on LFW View-1 (development) pairs it did not beat the mirror image alone
        (docs/BENCHMARKS.md)."""
        views = [self.align(pixels, face)]
        if augment:
            views.append(self.align(pixels, face, padding=AUGMENT_PADDING))
        return views

    def embed_chips(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        if not chips:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch = [np.ascontiguousarray(c, dtype=np.uint8) for c in chips]
        return np.asarray(self._net.compute_face_descriptor(batch), dtype=np.float32).reshape(-1, self.dim)


# Bump when the converter's output changes, so cached ONNX files are rebuilt.
CONVERTER_VERSION = "1"


def model_cache_dir() -> Path:
    """Where converted models are cached: ``$FACEVAULT_MODEL_CACHE`` or ``~/.cache/facevault/models``."""
    return model_cache_setting()


def converted_resnet_path(cache_dir: Path | None = None) -> Path:
    """The ONNX form of dlib's ResNet, converted from the shipped ``.dat`` on first use and cached under
    a name that carries the source file's hash (a changed source is never served from a stale cache)."""
    src = Path(model_files().face_recognition_model_location())
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    dest = (cache_dir or model_cache_dir()) / f"dlib-resnet-v1-{digest}-c{CONVERTER_VERSION}.onnx"
    if not dest.exists():
        from .convert import convert

        convert(src, dest)
    return dest


class DlibResnetOnnxEmbedder(DlibResnetEmbedder):
    """The same dlib ResNet weights run by ONNX Runtime: same vectors (max difference ~4e-7 on LFW),
    about 12x faster per core than dlib-bin, and batched."""

    def __init__(self, threads: int = 0, batch_size: int = 32) -> None:
        self.threads = threads
        self.batch_size = batch_size

    @cached_property
    def _session(self) -> Any:
        from ..onnx_runtime import make_session

        return make_session(converted_resnet_path(), threads=self.threads)

    def embed_chips(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        if not chips:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        for start in range(0, len(chips), self.batch_size):
            batch = np.stack(
                [np.asarray(c, dtype=np.float32) for c in chips[start : start + self.batch_size]]
            )
            out.append(self._session.run(["embedding"], {"chip": batch})[0])
        return np.concatenate(out).astype(np.float32)
