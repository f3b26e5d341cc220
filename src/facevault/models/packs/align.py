"""5-point similarity alignment for ArcFace-style chips.

``similarity_transform`` is the least-squares similarity (rotation, uniform scale, translation) that maps
one point set onto another, after Umeyama (1991), "Least-squares estimation of transformation parameters
between two point patterns". ``warp_affine`` applies a 2x3 matrix with Pillow, using the convention that
pixel ``i`` has its centre at coordinate ``i`` (the convention detectors report landmarks in).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 matrix ``M`` minimising sum |dst_i - M @ [src_i, 1]|^2 over similarities (no reflection)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"need two matching (n>=2, 2) point sets, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s_c, d_c = src - mu_s, dst - mu_d
    n = src.shape[0]
    cov = d_c.T @ s_c / n
    u, sing, vt = np.linalg.svd(cov)
    signs = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        signs[-1] = -1.0  # the best orthogonal fit would be a reflection: take the best rotation
    rot = u @ np.diag(signs) @ vt
    var_s = (s_c**2).sum() / n
    if var_s <= 0:
        raise ValueError("source points coincide")
    scale = float((sing * signs).sum() / var_s)
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def invert_affine(m: np.ndarray) -> np.ndarray:
    a = np.asarray(m, dtype=np.float64)[:, :2]
    t = np.asarray(m, dtype=np.float64)[:, 2]
    inv = np.linalg.inv(a)
    return np.hstack([inv, (-inv @ t)[:, None]])


def warp_affine(pixels: np.ndarray, m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Output (h, w, C) with ``out[y, x] = pixels[M^-1 (x, y)]`` (bilinear; zeros outside the image).
    ``size`` is (width, height)."""
    inv = invert_affine(m)
    a = inv[:, :2]
    # Pillow samples output pixel (x, y) at input point A (x + .5, y + .5) + c with pixel i spanning
    # [i, i + 1]; shift the constant so that centres map to centres.
    c = inv[:, 2] - 0.5 * a.sum(axis=1) + 0.5
    img = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8))
    out = img.transform(
        (int(size[0]), int(size[1])),
        Image.Transform.AFFINE,
        (a[0, 0], a[0, 1], c[0], a[1, 0], a[1, 1], c[1]),
        resample=Image.Resampling.BILINEAR,
        fillcolor=0,
    )
    return np.asarray(out, dtype=np.uint8)


def align_five_points(
    pixels: np.ndarray,
    landmarks: np.ndarray,
    template: Sequence[Sequence[float]],
    size: tuple[int, int],
) -> np.ndarray:
    """The chip whose 5 landmarks land (in the least-squares sense) on ``template``."""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    ref = np.asarray(template, dtype=np.float64).reshape(-1, 2)
    if pts.shape != ref.shape:
        raise ValueError(f"{len(pts)} landmarks cannot be aligned to a {len(ref)}-point template")
    return warp_affine(pixels, similarity_transform(pts, ref), size)
