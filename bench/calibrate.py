"""Build the score -> false-match-rate table of a model from impostor pairs.

Impostors: the first image of every shared-LFW identity that does NOT appear in the View-2 evaluation
folds (pairs.txt), all pairs between them. So the thresholds facevault shows are never fitted on the
pairs it is evaluated on.

    python -m bench.calibrate [--model dlib-resnet-v1] [--out src/facevault/models/calibration/MODEL.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from facevault import calibration
from facevault.config import load_settings
from facevault.eval.embedding import embed_files
from facevault.eval.lfw import read_pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="dlib-resnet-v1")
    ap.add_argument("--data", default=os.environ.get("FACEVAULT_TEST_DATA", "../shared/data"))
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    lfw = Path(args.data) / "lfw"
    images = lfw / "lfw-deepfunneled"
    eval_names = {name for pair in read_pairs(lfw / "pairs.txt").pairs for name in (pair[0], pair[2])}
    paths = []
    for person in sorted(p for p in images.iterdir() if p.is_dir()):
        if person.name in eval_names:
            continue
        files = sorted(person.glob("*.jpg"))
        if files:
            paths.append(str(files[0]))
    t0 = time.time()
    settings = load_settings()
    embs = embed_files(paths, model_id=args.model, settings=settings, fallback="none")
    vecs = np.stack([e.vector for e in embs if e.vector is not None])
    sims = vecs @ vecs.T
    iu = np.triu_indices(len(vecs), k=1)
    impostor = sims[iu]
    source = (
        f"shared LFW deep-funneled, first image of {len(vecs)} identities outside the View-2 folds, "
        f"{impostor.size} impostor pairs"
    )
    cal = calibration.from_impostor_scores(args.model, impostor, source)
    out = Path(args.out or f"src/facevault/models/calibration/{args.model}.json")
    calibration.save(cal, out)
    summary = {
        "model": args.model,
        "identities": len(vecs),
        "impostor_pairs": int(impostor.size),
        "seconds": round(time.time() - t0, 1),
        "thresholds": {f"{f:g}": round(cal.threshold_for(f), 4) for f in (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)},
        "out": str(out),
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
