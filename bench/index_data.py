"""Embeddings for the index benchmark: real LFW mates plus synthetic distractors.

Real part: every image of the shared LFW deep-funneled set embedded with facevault's own pipeline
(``facevault.eval.embedding.embed_files``), cached as ``bench/results/cache/lfw-MODEL.npz`` (vectors,
identity labels, paths). Without the data directory the benchmark runs on synthetic identities only.

Synthetic distractors: face embeddings are not centred on the origin. For dlib-resnet-v1 every pair of
faces has a cosine similarity far above 0 (the impostor threshold at FMR 1e-3 is about 0.93), so
uniformly random unit vectors would be far easier to separate than real faces and would flatter an
approximate index. Instead distractors are drawn from a Gaussian N(mu, Sigma) fitted to the real
embeddings' mean and full covariance, then normalised; :func:`impostor_quantiles` compares the score
quantiles of synthetic-vs-synthetic and real-vs-real impostor pairs so the match can be checked (the
benchmark prints both).

Other dimensions (e.g. 512, for which facevault has no model here): the real vectors are lifted with a
fixed random isometry Q (dim x real_dim) plus a little isotropic noise in the remaining directions, and
the Gaussian is lifted the same way, so mates and distractors keep the real geometry.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CACHE_DIR = Path(__file__).resolve().parent / "results" / "cache"


@dataclass
class RealFaces:
    vectors: np.ndarray  # (n, d) float32 unit vectors
    labels: np.ndarray  # (n,) int identity labels
    source: str


def data_dir() -> Path:
    return Path(os.environ.get("FACEVAULT_TEST_DATA", "../shared/data"))


def lfw_embeddings(model_id: str = "dlib-resnet-v1", *, compute: bool = True) -> RealFaces | None:
    """The cached LFW embeddings of ``model_id``, computing them (minutes on 2 cores) when absent.
    None when neither the cache nor the LFW images exist."""
    cache = CACHE_DIR / f"lfw-{model_id}.npz"
    if cache.exists():
        z = np.load(cache)
        return RealFaces(z["vectors"], z["labels"], f"cached {cache.name}")
    images = data_dir() / "lfw" / "lfw-deepfunneled"
    if not images.is_dir() or not compute:
        return None
    from facevault.config import load_settings
    from facevault.eval.embedding import embed_files

    paths: list[str] = []
    labels: list[int] = []
    for label, person in enumerate(sorted(p for p in images.iterdir() if p.is_dir())):
        for f in sorted(person.glob("*.jpg")):
            paths.append(str(f))
            labels.append(label)
    embs = embed_files(paths, model_id=model_id, settings=load_settings(), fallback="centre")
    keep = [i for i, e in enumerate(embs) if e.vector is not None]
    vectors = np.stack([embs[i].vector for i in keep]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    lab = np.asarray([labels[i] for i in keep], dtype=np.int64)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, vectors=vectors, labels=lab, paths=np.asarray([paths[i] for i in keep]))
    os.replace(tmp, cache)
    return RealFaces(vectors, lab, f"computed {cache.name}")


class GaussianFaces:
    """Distractor generator: N(mu, Sigma) fitted to real embeddings, optionally lifted to ``dim``."""

    def __init__(self, real: np.ndarray, dim: int, seed: int = 0) -> None:
        real = np.asarray(real, dtype=np.float64)
        self.real_dim = real.shape[1]
        self.dim = dim
        self.mu = real.mean(axis=0)
        cov = np.cov(real, rowvar=False) + 1e-9 * np.eye(self.real_dim)
        self.chol = np.linalg.cholesky(cov)
        rng = np.random.default_rng(seed + 7919)
        if dim != self.real_dim:
            q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
            self.lift = q[:, : self.real_dim]  # isometry R^real_dim -> R^dim
            self.complement = q[:, self.real_dim :]
            # noise energy in the new directions: 10% of the real within-sample variance
            self.noise_sd = float(np.sqrt(0.1 * np.trace(cov) / max(dim - self.real_dim, 1)))
        else:
            self.lift = None
            self.complement = None
            self.noise_sd = 0.0

    def lift_real(self, real: np.ndarray, seed: int = 1) -> np.ndarray:
        """Real vectors mapped into ``dim`` the same way distractors are (identity when dims match)."""
        x = np.asarray(real, dtype=np.float64)
        if self.lift is not None:
            rng = np.random.default_rng(seed)
            noise = rng.standard_normal((len(x), self.dim - self.real_dim)) * self.noise_sd
            x = x @ self.lift.T + noise @ self.complement.T
        return _unit(x)

    def sample(self, n: int, seed: int, chunk: int = 1_000_000) -> np.ndarray:
        """n unit vectors (float32), generated chunk by chunk so 10M x 128 fits comfortably."""
        out = np.empty((n, self.dim), dtype=np.float32)
        rng = np.random.default_rng(seed)
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            z = rng.standard_normal((m, self.real_dim)).astype(np.float32)
            x = z @ self.chol.T.astype(np.float32) + self.mu.astype(np.float32)
            if self.lift is not None:
                noise = rng.standard_normal((m, self.dim - self.real_dim)).astype(np.float32)
                x = x @ self.lift.T.astype(np.float32) + (noise * self.noise_sd) @ self.complement.T.astype(
                    np.float32
                )
            out[start : start + m] = _unit(x)
        return out


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def impostor_quantiles(
    vectors: np.ndarray,
    labels: np.ndarray | None,
    qs: tuple[float, ...],
    pairs: int = 2_000_000,
    seed: int = 3,
) -> list[float]:
    """Score quantiles over random pairs of different identities (labels None = all different)."""
    rng = np.random.default_rng(seed)
    n = len(vectors)
    a = rng.integers(0, n, pairs)
    b = rng.integers(0, n, pairs)
    keep = a != b
    if labels is not None:
        keep &= labels[a] != labels[b]
    a, b = a[keep], b[keep]
    scores = np.einsum("ij,ij->i", vectors[a], vectors[b])
    return [float(v) for v in np.quantile(scores, qs)]


if __name__ == "__main__":
    faces = lfw_embeddings()
    print("no LFW data" if faces is None else f"{faces.vectors.shape} {faces.source}")
