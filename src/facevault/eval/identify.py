"""Open-set 1:N identification on a folder-per-identity dataset (e.g. LFW).

Gallery: the first image (sorted by name) of every identity with two or more images. Mated probes: the
second image of those identities. Non-mated probes: the image of every identity that has exactly one
image (so they are certainly absent from the gallery). Metrics follow NIST FRVT 1:N terms:

- rank-1 hit rate: the mate is the top candidate (no threshold);
- FPIR(t): share of non-mated probes whose top candidate scores >= t;
- FNIR(t): share of mated probes whose top candidate is not the mate or scores < t;
- FNIR at FPIR=0.01, and FPIR / FNIR at the default search threshold (calibrated target FMR).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import calibration
from ..config import Settings, models_dir_setting
from ..errors import InputError
from ..index import FaissIndex
from ..models import registry
from .embedding import embed_files

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".pgm", ".gif", ".bmp"}


def _identities(images: Path) -> dict[str, list[Path]]:
    out = {}
    for person in sorted(p for p in images.iterdir() if p.is_dir()):
        files = sorted(f for f in person.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            out[person.name] = files
    return out


def run_identify(
    images_dir: str | Path,
    *,
    model_id: str,
    settings: Settings,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    t0 = time.time()
    images = Path(images_dir)
    if not images.is_dir():
        raise InputError(f"{images}: image directory not found", code="file_not_found")
    people = _identities(images)
    multi = [name for name, files in people.items() if len(files) >= 2]
    single = [name for name, files in people.items() if len(files) == 1]
    if not multi or not single:
        raise InputError("need identities with two or more images and identities with exactly one")
    gallery_paths = [str(people[n][0]) for n in multi]
    mated_paths = [str(people[n][1]) for n in multi]
    nonmated_paths = [str(people[n][0]) for n in single]
    embs = embed_files(
        gallery_paths + mated_paths + nonmated_paths,
        model_id=model_id,
        settings=settings,
        workers=workers,
        progress=progress,
    )
    if any(e.vector is None for e in embs):
        bad = next(e for e in embs if e.vector is None)
        raise InputError(f"could not use {bad.path}: {bad.error}")
    vecs = np.stack([e.vector for e in embs])  # type: ignore[misc]
    g = len(gallery_paths)
    gallery, mated, nonmated = vecs[:g], vecs[g : 2 * g], vecs[2 * g :]

    # The same exact index the engine uses for small collections.
    index = FaissIndex(Path("/nonexistent/eval.faiss"), vecs.shape[1], model_id)
    index.add(np.arange(g, dtype=np.int64), gallery)
    m_scores, m_ids = index.search(mated, 1)
    n_scores, _ = index.search(nonmated, 1)
    m_top, m_hit = m_scores[:, 0].astype(np.float64), m_ids[:, 0] == np.arange(g)
    n_top = n_scores[:, 0].astype(np.float64)

    def fpir(t: float) -> float:
        return float((n_top >= t).mean())

    def fnir(t: float) -> float:
        return float(1.0 - (m_hit & (m_top >= t)).mean())

    # Threshold with FPIR <= 0.01: just above the 1%-from-the-top non-mated score.
    ranked = np.sort(n_top)[::-1]
    allowed = int(np.floor(0.01 * ranked.size))
    t_fpir = float(ranked[allowed]) + 1e-9
    registry.ensure_registered(models_dir_setting())  # an installed pack's calibration lives in its folder
    cal = calibration.for_model(model_id)
    default_fmr = settings.search_fmr or calibration.search_fmr_for_gallery(
        g, settings.search_fpir, settings.search_max_fmr
    )
    t_default = cal.threshold_for(default_fmr)
    return {
        "protocol": "open-set 1:N; gallery = first image of identities with >= 2 images; mated probe = "
        "their second image; non-mated probes = identities with exactly one image",
        "model_id": model_id,
        "gallery_size": g,
        "mated_probes": int(len(mated)),
        "non_mated_probes": int(len(nonmated)),
        "rank1_hit_rate": round(float(m_hit.mean()), 5),
        "fnir_at_fpir_0.01": round(fnir(t_fpir), 5),
        "threshold_at_fpir_0.01": round(t_fpir, 5),
        "default_threshold": round(t_default, 5),
        "default_threshold_fmr": float(f"{default_fmr:.4g}"),
        "default_threshold_rule": f"expected FPIR {settings.search_fpir} over {g} gallery samples",
        "fpir_at_default_threshold": round(fpir(t_default), 5),
        "fnir_at_default_threshold": round(fnir(t_default), 5),
        "no_face_detected": sum(1 for e in embs if not e.detected),
        "no_face_handling": "face box assumed at the image centre, as in the LFW pairs protocol",
        "seconds": round(time.time() - t0, 1),
    }
