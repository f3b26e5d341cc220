"""Choose alignment and test-time augmentation on development data, never on the View-2 folds.

The development pool is every shared LFW image that appears in no View-2 pair (``pairs.txt``): 3,111
images, a superset of LFW's own View-1 images that are not in View-2. Genuine pairs: all pairs among up to
``--cap`` randomly chosen images per identity (so a few very photographed people do not dominate);
impostor pairs: ``--impostors`` random pairs of different identities. Each variant (a model pack and a
TTA mode) embeds the pool through the real evaluation path (``facevault.eval.embedding``), and is scored
by equal error rate, FNMR at FMR 1e-2 and 1e-3, and d'. A paired bootstrap over identities (genuine
pairs resampled by identity, impostors by pair) gives each variant's difference to the baseline.

    python -m bench.devpool [--variants MODEL:TTA[:ENV=VALUE...],...] [--baseline VARIANT] [--out PATH]

``dlib-resnet-v1-lm68`` needs its license accepted first (``facevault models accept-license``); a
variant whose pack cannot be loaded is reported as skipped.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

import facevault.models.registry as fm
from facevault.config import load_settings
from facevault.errors import FaceVaultError
from facevault.eval.embedding import embed_files
from facevault.eval.lfw import image_path, read_pairs
from facevault.models import get_pack

DEFAULT_VARIANTS = (
    "dlib-resnet-v1:none,dlib-resnet-v1:flip,dlib-resnet-v1:flip+views,dlib-resnet-v1-lm68:flip,"
    "dlib-resnet-v1:flip:FACEVAULT_LANDMARK_REFINE=1"
)
BASELINE = "dlib-resnet-v1:flip"  # the default


def pool_images(lfw: Path) -> list[str]:
    images = lfw / "lfw-deepfunneled"
    in_view2 = {
        str(image_path(images, n, i))
        for a, ia, b, ib in read_pairs(lfw / "pairs.txt").pairs
        for n, i in ((a, ia), (b, ib))
    }
    return sorted(str(p) for p in images.glob("*/*.jpg") if str(p) not in in_view2)


def make_pairs(
    paths: list[str], cap: int, impostors: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(index a, index b, identity of the genuine pair or -1) arrays."""
    rng = np.random.default_rng(seed)
    person = np.array([Path(p).parent.name for p in paths])
    names = sorted(set(person))
    ident = {n: k for k, n in enumerate(names)}
    a, b, who = [], [], []
    for n in names:
        idx = np.flatnonzero(person == n)
        if idx.size < 2:
            continue
        chosen = rng.permutation(idx)[:cap]
        for i, j in itertools.combinations(chosen, 2):
            a.append(int(i))
            b.append(int(j))
            who.append(ident[n])
    genuine = len(a)
    while len(a) - genuine < impostors:
        i, j = (int(v) for v in rng.integers(len(paths), size=2))
        if person[i] != person[j]:
            a.append(i)
            b.append(j)
            who.append(-1)
    return np.asarray(a), np.asarray(b), np.asarray(who)


def metrics(scores: np.ndarray, same: np.ndarray) -> dict[str, float]:
    genuine, impostor = np.sort(scores[same]), np.sort(scores[~same])
    thresholds = np.unique(scores)
    frr = np.searchsorted(genuine, thresholds, side="left") / genuine.size
    far = 1 - np.searchsorted(impostor, thresholds, side="left") / impostor.size
    k = int(np.argmin(np.abs(frr - far)))
    out = {"eer": float((frr[k] + far[k]) / 2)}
    for fmr in (1e-2, 1e-3):
        out[f"fnmr_at_fmr_{fmr:g}"] = float((genuine < np.quantile(impostor, 1 - fmr)).mean())
    out["d_prime"] = float((genuine.mean() - impostor.mean()) / np.sqrt((genuine.var() + impostor.var()) / 2))
    return out


def bootstrap(
    scores: dict[str, np.ndarray], who: np.ndarray, baseline: str, rounds: int, seed: int
) -> dict[str, dict[str, Any]]:
    rng = np.random.default_rng(seed)
    same = who >= 0
    by_id = {k: np.flatnonzero(who == k) for k in np.unique(who[same])}
    ids = np.array(sorted(by_id))
    imp = np.flatnonzero(~same)
    deltas: dict[str, dict[str, list[float]]] = {v: {} for v in scores if v != baseline}
    for _ in range(rounds):
        pick = np.concatenate([by_id[k] for k in rng.choice(ids, ids.size)] + [rng.choice(imp, imp.size)])
        base = metrics(scores[baseline][pick], same[pick])
        for v in deltas:
            m = metrics(scores[v][pick], same[pick])
            for key in ("eer", "fnmr_at_fmr_0.001"):
                deltas[v].setdefault(key, []).append(m[key] - base[key])
    out: dict[str, dict[str, Any]] = {}
    for v, d in deltas.items():
        out[v] = {
            key: {
                "mean": round(float(np.mean(x)), 5),
                "ci95": [round(float(np.quantile(x, 0.025)), 5), round(float(np.quantile(x, 0.975)), 5)],
                "share_better": round(float(np.mean(np.asarray(x) < 0)), 3),
            }
            for key, x in d.items()
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("FACEVAULT_TEST_DATA", "../shared/data"))
    ap.add_argument("--variants", default=DEFAULT_VARIANTS)
    ap.add_argument("--cap", type=int, default=12)
    ap.add_argument("--impostors", type=int, default=60000)
    ap.add_argument("--bootstrap", type=int, default=300)
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--baseline", default=BASELINE, help="the variant the others are compared with")
    ap.add_argument("--out", default="bench/results/devpool.json")
    args = ap.parse_args()
    paths = pool_images(Path(args.data) / "lfw")
    a, b, who = make_pairs(paths, args.cap, args.impostors, args.seed)
    same = who >= 0
    print(
        f"pool: {len(paths)} images, {int(same.sum())} genuine pairs of {len(set(who[same]))} identities, "
        f"{int((~same).sum())} impostor pairs"
    )
    scores: dict[str, np.ndarray] = {}
    results: dict[str, Any] = {}
    for variant in args.variants.split(","):
        model, tta, *env = variant.split(":")  # e.g. dlib-resnet-v1:flip:FACEVAULT_LANDMARK_REFINE=0
        os.environ.update(dict(e.split("=", 1) for e in env))
        fm._loaded.clear()  # a pack built under other settings must not be reused
        try:
            get_pack(model)
        except FaceVaultError as exc:
            print(f"{variant}: skipped ({exc.message})")
            results[variant] = {"skipped": exc.message}
            continue
        t0 = time.time()
        embs = embed_files(paths, model_id=model, settings=load_settings(tta=tta), progress=False)
        vecs = np.stack([e.vector for e in embs])  # the centre fallback gives every image a vector
        s = (vecs[a] * vecs[b]).sum(axis=1)
        scores[variant] = s
        results[variant] = {
            **{k: round(v, 5) for k, v in metrics(s, same).items()},
            "no_face_detected": sum(not e.detected for e in embs),
            "seconds": round(time.time() - t0, 1),
        }
        print(variant, results[variant])
        for e in env:
            os.environ.pop(e.split("=", 1)[0], None)
    if args.baseline in scores:
        for v, d in bootstrap(scores, who, args.baseline, args.bootstrap, args.seed).items():
            results[v]["vs_baseline"] = d
    report = {
        "bench": "devpool",
        "pool_images": len(paths),
        "genuine_pairs": int(same.sum()),
        "identities": len(set(who[same])),
        "impostor_pairs": int((~same).sum()),
        "baseline": args.baseline,
        "variants": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(
        f"{'variant':<48}{'EER':>8}{'FNMR@1e-2':>11}{'FNMR@1e-3':>11}{'d-prime':>9}"
        f"  vs {args.baseline}: dEER, dFNMR@1e-3"
    )
    for v, r in results.items():
        if "skipped" in r:
            continue
        vs = r.get("vs_baseline")
        extra = ""
        if vs:
            e, f = vs["eer"], vs["fnmr_at_fmr_0.001"]
            extra = (
                f"  {e['mean']:+.4f} [{e['ci95'][0]:+.4f},{e['ci95'][1]:+.4f}], "
                f"{f['mean']:+.4f} [{f['ci95'][0]:+.4f},{f['ci95'][1]:+.4f}]"
            )
        print(
            f"{v:<48}{r['eer']:>8.4f}{r['fnmr_at_fmr_0.01']:>11.4f}{r['fnmr_at_fmr_0.001']:>11.4f}"
            f"{r['d_prime']:>9.3f}{extra}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
