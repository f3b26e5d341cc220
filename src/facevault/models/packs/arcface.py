"""ArcFace-family recognizers (InsightFace ``w600k_r50.onnx``, ``w600k_mbf.onnx``, ``glintr100.onnx``)
and OpenCV's SFace (``face_recognition_sface_2021dec.onnx``): both read a 112x112 chip aligned by a
5-point similarity transform onto the ArcFace template.

ArcFace feeds ``(RGB - 127.5) / 127.5``; SFace feeds raw RGB 0-255 (OpenCV swaps its BGR input to RGB
and applies no scaling). Both come from the manifest's mean/std/colour, so one class serves both. Models
exported with a fixed batch of 1 (SFace) are run one chip at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ModelError
from ..base import DetectedFace, Embedder
from .align import align_five_points
from .common import default_threads
from .manifest import RecognizerSpec


class ArcFaceEmbedder(Embedder):
    def __init__(
        self, model_id: str, model_path: Path, spec: RecognizerSpec, threads: int | None = None
    ) -> None:
        self.model_id = model_id
        self.dim = spec.embedding_dim
        self.model_path = Path(model_path)
        self.spec = spec
        self.threads = default_threads() if threads is None else threads
        self._mean = np.asarray(spec.mean, dtype=np.float32)
        self._std = np.asarray(spec.std, dtype=np.float32)

    @cached_property
    def _session(self) -> Any:
        from ..onnx_runtime import make_session

        session = make_session(self.model_path, threads=self.threads)
        out = session.get_outputs()[0].shape
        if isinstance(out[-1], int) and out[-1] != self.dim:
            raise ModelError(
                f"{self.model_path.name} gives {out[-1]}-d embeddings; the manifest says {self.dim}"
            )
        return session

    @cached_property
    def _fixed_batch(self) -> int | None:
        first = self._session.get_inputs()[0].shape[0]
        return int(first) if isinstance(first, int) else None

    def align(self, pixels: np.ndarray, face: DetectedFace) -> np.ndarray:
        if face.landmarks.shape != (5, 2):
            raise ModelError(
                f"{self.model_id} aligns on 5 landmarks; the detector gave {face.landmarks.shape[0]}"
            )
        return align_five_points(pixels, face.landmarks, self.spec.template, self.spec.input_size)

    def preprocess(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        batch = np.stack([np.asarray(c, dtype=np.float32) for c in chips])
        if self.spec.color == "BGR":
            batch = batch[..., ::-1]
        batch = (batch - self._mean) / self._std
        return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))

    def embed_chips(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        if not chips:
            return np.zeros((0, self.dim), dtype=np.float32)
        session = self._session
        name = session.get_inputs()[0].name
        step = self._fixed_batch or self.spec.batch_size
        out = []
        for start in range(0, len(chips), step):
            blob = self.preprocess(chips[start : start + step])
            n = len(blob)
            if self._fixed_batch and n < self._fixed_batch:  # pad a short last batch of a fixed-batch model
                blob = np.concatenate([blob, np.zeros((self._fixed_batch - n, *blob.shape[1:]), np.float32)])
            res = np.asarray(session.run(None, {name: blob})[0], dtype=np.float32)
            out.append(res.reshape(len(blob), -1)[:n])
        vectors = np.concatenate(out)
        if vectors.shape[1] != self.dim:
            raise ModelError(f"{self.model_path.name} gave {vectors.shape[1]}-d vectors, expected {self.dim}")
        return vectors
