"""LFW View-2 ("unrestricted, labeled outside data") verification protocol.

The pairs file header gives the number of folds and of matched/mismatched pairs per fold. For each
fold, the threshold is chosen to maximise accuracy on the *other* folds and then applied to this fold;
we report the mean and standard deviation of the per-fold accuracies. TAR at FAR=1e-3 is computed on
all pairs pooled (with 3,000 impostor pairs per 10 folds, a FAR of 1e-3 rests on very few pairs: the
number of impostor pairs is reported with it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Settings
from ..errors import InputError
from .embedding import embed_files

Pair = tuple[str, int, str, int]  # name_a, number_a, name_b, number_b


@dataclass(frozen=True)
class PairsFile:
    folds: int
    per_fold: int
    pairs: list[Pair]
    same: np.ndarray  # bool per pair
    fold_of: np.ndarray  # fold index per pair


def read_pairs(path: str | Path) -> PairsFile:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: pairs file not found", code="file_not_found")
    lines = [ln.split() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not lines or len(lines[0]) != 2:
        raise InputError(f"{p}: first line must be '<folds> <pairs per fold>'")
    folds, per_fold = int(lines[0][0]), int(lines[0][1])
    body = lines[1:]
    if len(body) != folds * 2 * per_fold:
        raise InputError(f"{p}: header promises {folds * 2 * per_fold} pairs, file has {len(body)}")
    pairs: list[Pair] = []
    same = []
    for parts in body:
        if len(parts) == 3:
            pairs.append((parts[0], int(parts[1]), parts[0], int(parts[2])))
            same.append(True)
        elif len(parts) == 4:
            pairs.append((parts[0], int(parts[1]), parts[2], int(parts[3])))
            same.append(False)
        else:
            raise InputError(f"{p}: malformed line {' '.join(parts)!r}")
    fold_of = np.repeat(np.arange(folds), 2 * per_fold)
    return PairsFile(folds, per_fold, pairs, np.asarray(same), fold_of)


def image_path(images: Path, name: str, number: int) -> Path:
    return images / name / f"{name}_{number:04d}.jpg"


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold (midpoint between consecutive scores) with the highest accuracy."""
    order = np.argsort(scores)
    s, y = scores[order], same[order]
    # accuracy when threshold is placed just above s[i]: negatives at or below i are right,
    # positives above i are right.
    neg_below = np.cumsum(~y)
    pos_above = y.sum() - np.cumsum(y)
    correct = np.concatenate([[y.sum()], neg_below + pos_above])
    best = int(np.argmax(correct))
    if best == 0:
        return float(s[0] - 1e-6)
    if best == len(s):
        return float(s[-1] + 1e-6)
    return float((s[best - 1] + s[best]) / 2)


def tar_at_far(scores: np.ndarray, same: np.ndarray, far: float) -> tuple[float, float]:
    """(TAR, threshold) at the lowest threshold whose FAR does not exceed ``far``."""
    impostor = np.sort(scores[~same])[::-1]
    allowed = int(np.floor(far * impostor.size))
    thr = float(impostor[allowed]) + 1e-9 if allowed < impostor.size else float(impostor[-1])
    return float((scores[same] >= thr).mean()), thr


def evaluate_scores(scores: np.ndarray, pf: PairsFile) -> dict[str, Any]:
    accs, thrs = [], []
    for k in range(pf.folds):
        test = pf.fold_of == k
        thr = best_threshold(scores[~test], pf.same[~test])
        accs.append(float(((scores[test] >= thr) == pf.same[test]).mean()))
        thrs.append(thr)
    tar, far_thr = tar_at_far(scores, pf.same, 1e-3)
    return {
        "accuracy": round(float(np.mean(accs)), 5),
        "accuracy_std": round(float(np.std(accs)), 5),
        "fold_accuracies": [round(a, 5) for a in accs],
        "fold_thresholds": [round(t, 5) for t in thrs],
        "tar_at_far_1e-3": round(tar, 5),
        "threshold_at_far_1e-3": round(far_thr, 5),
        "impostor_pairs": int((~pf.same).sum()),
        "genuine_pairs": int(pf.same.sum()),
    }


def run_lfw(
    pairs_path: str | Path,
    images_dir: str | Path,
    *,
    model_id: str,
    settings: Settings,
    workers: int | None = None,
    plot: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    t0 = time.time()
    pf = read_pairs(pairs_path)
    images = Path(images_dir)
    if not images.is_dir():
        raise InputError(f"{images}: image directory not found", code="file_not_found")
    unique = sorted(
        {str(image_path(images, n, i)) for a, ia, b, ib in pf.pairs for n, i in ((a, ia), (b, ib))}
    )
    missing = [p for p in unique if not Path(p).is_file()]
    if missing:
        raise InputError(f"{len(missing)} images named in the pairs file are missing, e.g. {missing[0]}")
    embs = embed_files(unique, model_id=model_id, settings=settings, workers=workers, progress=progress)
    by_path = {e.path: e for e in embs}
    unusable = [e.path for e in embs if e.vector is None]
    if unusable:
        raise InputError(f"{len(unusable)} images could not be decoded, e.g. {unusable[0]}")
    scores = np.empty(len(pf.pairs), dtype=np.float64)
    for i, (a, ia, b, ib) in enumerate(pf.pairs):
        va = by_path[str(image_path(images, a, ia))].vector
        vb = by_path[str(image_path(images, b, ib))].vector
        scores[i] = float(va @ vb)  # type: ignore[operator]
    result = evaluate_scores(scores, pf)
    fallback = sum(1 for e in embs if not e.detected)
    result.update(
        {
            "protocol": f"LFW View-2, {pf.folds} folds x {pf.per_fold} matched + {pf.per_fold} mismatched",
            "model_id": model_id,
            "tta": settings.tta,
            "pairs": len(pf.pairs),
            "images": len(unique),
            "no_face_detected": fallback,
            "no_face_handling": "face box assumed at the image centre (30%-70% of width and height), "
            "landmarks found inside it, then aligned and embedded as usual",
            "seconds": round(time.time() - t0, 1),
        }
    )
    if plot:
        _plot_roc(scores, pf.same, Path(plot), result)
        result["plot"] = str(plot)
    return result


def _plot_roc(scores: np.ndarray, same: np.ndarray, out: Path, result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.argsort(-scores)
    y = same[order]
    tpr = np.cumsum(y) / max(y.sum(), 1)
    fpr = np.cumsum(~y) / max((~y).sum(), 1)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(fpr, tpr, lw=1.5)
    ax.set_xscale("log")
    ax.set_xlim(1e-3, 1)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.set_title(f"LFW ROC ({result['model_id']}), acc {result['accuracy']:.4f}")
    ax.grid(True, which="both", alpha=0.3)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
