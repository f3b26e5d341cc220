"""Image -> faces: detect -> align -> quality -> embed, batched per image.

Embeddings are L2-normalised, so similarity is a dot product in [-1, 1]. Test-time augmentation
(``tta``) embeds extra views of each face (its mirror image, a wider crop) in the same batch and averages
them: more forward passes, better accuracy (see docs/BENCHMARKS.md).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np

from . import imaging
from .config import Settings, models_dir_setting
from .errors import ConfigError
from .models import ModelPack, get_pack, l2_normalize, tiling
from .models.base import DetectedFace
from .models.detectors import with_detector
from .models.registry import ensure_registered
from .quality import FaceQuality, assess, turned_over, upside_down

TTA_MODES = ("none", "flip", "flip+views")


@dataclass(frozen=True)
class ProcessedFace:
    face: DetectedFace  # in original-image coordinates
    quality: FaceQuality
    embedding: np.ndarray  # (dim,) float32, unit length


def _scaled(face: DetectedFace, factor: float) -> DetectedFace:
    return face if factor == 1.0 else tiling.shifted(face, 0.0, 0.0, factor)


class Pipeline:
    def __init__(
        self, pack: ModelPack, *, max_detect_side: int = 1600, tta: str = "flip", tiles: str = "off"
    ) -> None:
        if tta not in TTA_MODES:
            raise ConfigError(f"tta must be one of {', '.join(TTA_MODES)}, got {tta!r}")
        if tiles not in tiling.MODES:
            raise ConfigError(f"detect_tiles must be one of {', '.join(tiling.MODES)}, got {tiles!r}")
        self.tiles = tiles
        self.pack = pack
        # dlib's detector objects are not documented as thread-safe: one image at a time per pipeline.
        self.lock = threading.Lock()  # detectors are not documented as thread-safe: one model call at a time
        self.max_detect_side = max_detect_side
        self.tta = tta

    @classmethod
    def for_model(cls, model_id: str, settings: Settings, detector: str | None = None) -> Pipeline:
        """The pipeline of ``model_id`` finding faces with ``detector`` (a collection's choice), else the
        ``detector`` setting, else the pack's own detector (``models.detectors``)."""
        pack = with_detector(
            get_pack(model_id), detector or settings.detector, models_dir_setting(settings.home)
        )
        return cls(
            pack, max_detect_side=settings.max_detect_side, tta=settings.tta, tiles=settings.detect_tiles
        )

    @property
    def model_id(self) -> str:
        return self.pack.model_id

    def signature(self) -> tuple[object, ...]:
        """What decides this pipeline's faces for a given image: two pipelines with the same signature
        give the same faces (``service.prefetch`` relies on it)."""
        det = self.pack.detector
        return (self.model_id, type(det).__qualname__, det.name, self.max_detect_side, self.tta, self.tiles)

    def detect(
        self, pixels: np.ndarray, portrait: bool = False
    ) -> tuple[np.ndarray, float, list[DetectedFace]]:
        """Faces on a working copy no larger than ``max_detect_side``; returns (work pixels, scale, faces).
        ``portrait``: the photo is meant to show one person large (enrollment)."""
        work, scale = imaging.downscale(pixels, self.max_detect_side)
        det = self.pack.detector
        if portrait:
            return work, scale, det.detect_portrait(work)
        faces = det.detect(work)
        if self.tiles == "on" and scale < 1.0:  # a large photo: its small faces, at full resolution
            small = [_scaled(f, scale) for f in tiling.detect_tiles(det, pixels)]
            faces = sorted(tiling.merge(faces, small), key=lambda f: -f.area)  # largest first, as detect
        return work, scale, faces

    def embed_faces(
        self, work: np.ndarray, scale: float, faces: list[DetectedFace], full: np.ndarray | None = None
    ) -> list[ProcessedFace]:
        """Align, assess and embed faces found on ``work`` (a copy of the image shrunk by ``scale``).
        With ``full`` (the image itself), the chips are cut from its full-resolution pixels: a face found
        on a downscaled copy of a large photo keeps all its detail. All views of all faces go through the
        network in one batch; each face's views are averaged."""
        if not faces:
            return []
        emb = self.pack.embedder
        originals = [_scaled(f, 1.0 / scale) for f in faces]
        source, located = (full, originals) if full is not None and scale != 1.0 else (work, faces)
        views = [emb.align_views(source, f, augment=self.tta == "flip+views") for f in located]
        chips = [c for vs in views for c in vs]
        if self.tta != "none":
            chips += [np.ascontiguousarray(c[:, ::-1]) for c in chips]
        raw = emb.embed_chips(chips)
        out = []
        start = 0
        n_views = [len(vs) for vs in views]
        per_copy = sum(n_views)
        for original, vs, n in zip(originals, views, n_views, strict=True):
            idx = list(range(start, start + n))
            if self.tta != "none":
                idx += [i + per_copy for i in idx]
            start += n
            vec = l2_normalize(raw[idx].mean(axis=0))
            out.append(ProcessedFace(face=original, quality=assess(original, vs[0]), embedding=vec))
        return out

    def analyze(
        self, pixels: np.ndarray, portrait: bool = False, *, upright: bool = False
    ) -> list[ProcessedFace]:
        """Every face in the image, largest first (with ``portrait``, see ``detect``). ``upright``
        (enrollment): the first face, the one an enrollment judges, is also checked for being upside
        down (``quality.turned_over``); if it is, its roll is turned by 180 degrees."""
        with self.lock:
            work, scale, faces = self.detect(pixels, portrait)
            out = self.embed_faces(work, scale, faces, full=pixels)
            if upright and out and turned_over(work, faces[0], self.pack.detector):
                out[0] = replace(out[0], quality=upside_down(out[0].quality))
            return out


T = TypeVar("T")
R = TypeVar("R")

_worker_state: dict[str, Any] = {}


def _init_worker(model_id: str, settings: Settings) -> None:
    """One process per core: every library in the worker runs single-threaded."""
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["FACEVAULT_THREADS"] = "1"
    try:
        import faiss

        faiss.omp_set_num_threads(1)
    except ImportError:  # pragma: no cover - faiss is a dependency
        pass
    ensure_registered(models_dir_setting(settings.home))  # the vault's installed packs, as in the parent
    _worker_state["pipeline"] = Pipeline.for_model(model_id, settings)


def worker_pool(model_id: str, settings: Settings, workers: int) -> ProcessPoolExecutor:
    """Worker processes, each with its own single-threaded models. They are *spawned*, not forked: a
    fork copies the parent's locks and OpenMP/ONNX Runtime thread pools mid-use, and the child can then
    hang forever (seen with a parent that had run FAISS searches). Spawning costs about a second."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(model_id, settings),
    )


def run_in_worker(job: tuple[Callable[[Pipeline, Any], Any], Any]) -> Any:
    """``func(pipeline, item)`` in a ``worker_pool`` process, for ``job = (func, item)``; ``func`` must be
    a module-level function."""
    func, item = job
    return func(_worker_state["pipeline"], item)


def worker_count(settings: Settings) -> int:
    return settings.workers if settings.workers > 0 else (os.cpu_count() or 1)


def map_with_pipeline(
    func: Callable[[Pipeline, T], R],
    items: Iterable[T],
    *,
    model_id: str,
    settings: Settings,
    workers: int | None = None,
    chunksize: int = 4,
) -> Iterator[R]:
    """Apply ``func(pipeline, item)`` to every item, in order, over ``workers`` processes (each with
    its own lazily loaded models). ``func`` must be a module-level function and must not raise."""
    n = worker_count(settings) if workers is None else workers
    if n <= 1:
        pipe = Pipeline.for_model(model_id, settings)
        for item in items:
            yield func(pipe, item)
        return
    with worker_pool(model_id, settings, n) as pool:
        yield from pool.map(run_in_worker, ((func, item) for item in items), chunksize=chunksize)
