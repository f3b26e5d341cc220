"""One large photo, end to end: a real FDDB group photo resized to 12.6 megapixels (4096x3072) and
saved as a JPEG, then searched with the shipped default (decode, detect on a downscaled copy, align on
the full-resolution pixels, embed, search, audit) in one process with the models already loaded.

    .venv/bin/python -m bench.large_photo [--runs 5] [--out bench/results/large-photo.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from bench.detection_fddb import read_fddb
from PIL import Image

import facevault

SIZE = (4096, 3072)


def group_photo(data: Path) -> tuple[Path, int]:
    """The FDDB image with the most annotated faces (a real news group photo; ties: first by path)
    and its number of annotated faces."""
    path, boxes = max(sorted(read_fddb(data / "fddb")), key=lambda item: len(item[1]))
    return Path(path), len(boxes)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.environ.get("FACEVAULT_TEST_DATA", "../shared/data"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default="bench/results/large-photo.json")
    args = ap.parse_args()
    source, annotated = group_photo(Path(args.data))
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "large.jpg"
        Image.open(source).convert("RGB").resize(SIZE, Image.LANCZOS).save(big, quality=92)
        vault = facevault.open(str(Path(tmp) / "vault"), create=True)
        vault.create_collection("bench")
        vault.search("bench", big, purpose="warm-up")  # loads the models once, as a server would
        times, faces = [], 0
        for _ in range(args.runs):
            t0 = time.perf_counter()
            res = vault.search("bench", big, purpose="bench")
            times.append(time.perf_counter() - t0)
            faces = len(res.faces)
        vault.close()
    out = {
        "source": str(source),
        "pixels": SIZE[0] * SIZE[1],
        "annotated_faces": annotated,
        "faces": faces,
        "seconds": times,
        "median_s": statistics.median(times),
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
