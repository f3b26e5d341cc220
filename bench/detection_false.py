"""What a detector's "false" detections on FDDB are: a contact sheet to look at, not a number.

FDDB counts as false every detection that matches no annotated face, and its annotators left out many
faces (profiles, faces cut by the frame, crowds, statues). This writes a sheet of the false detections at
the detector's operating threshold, the ``--top`` highest-scoring first and then ``--random`` others
(seeded), each with its score and width, so a person can tell faces from clutter; and prints how many
false detections overlap an annotated face at all.

    .venv/bin/python -m bench.detection_false --detector yunet [--out /tmp/false.png] [--all]

``--all`` writes every false detection instead, best first, 48 to a sheet (``false-0.png``, ...), each
tile numbered, for a count of faces against clutter over all of them.

The sheet shows crops of FDDB photos: it stays outside the repository (never commit it).
"""

from __future__ import annotations

import argparse
import os
import random
from pathlib import Path

import numpy as np
from bench.detection_detectors import Choice
from bench.detection_fddb import read_fddb
from bench.detection_match import iou_matrix, match_pairs
from PIL import Image, ImageDraw

from facevault import imaging

TILE = 96
SHEET = 48


def false_detections(name: str, data: Path) -> tuple[list[tuple[float, str, tuple[float, ...], float]], int]:
    """[(score, image, box, best IoU with any annotated face)] of the unmatched detections (IoU 0.3),
    and the number of detections."""
    det = Choice(name).build()
    out, total = [], 0
    for path, truth in read_fddb(data / "fddb"):
        faces = det.detect(imaging.load_image(path).pixels)
        boxes = [f.box for f in faces]
        total += len(boxes)
        ious = iou_matrix(truth, boxes)
        hit = {j for _, j, _ in match_pairs(ious, 0.3)}
        for j, f in enumerate(faces):
            if j not in hit:
                best = float(ious[:, j].max()) if len(truth) else 0.0
                out.append((float(f.score), path, tuple(f.box), best))
    return sorted(out, key=lambda r: -r[0]), total


Row = tuple[float, str, tuple[float, ...], float]


def sheet(rows: list[Row], out: Path, columns: int = 10, first: int | None = None) -> None:
    """Crops of ``rows`` with their score and width (and their number from ``first`` when given)."""
    tiles = []
    for i, (score, path, (x1, y1, x2, y2), _) in enumerate(rows):
        im = Image.open(path).convert("RGB")
        w, h = x2 - x1, y2 - y1
        crop = im.crop((int(x1 - 0.3 * w), int(y1 - 0.3 * h), int(x2 + 0.3 * w), int(y2 + 0.3 * h)))
        crop = crop.resize((TILE, TILE))
        label = f"{score:.2f} {int(w)}px" if first is None else f"{first + i} {score:.2f} {int(w)}"
        ImageDraw.Draw(crop).text((2, 2), label, fill=(255, 0, 0))
        tiles.append(crop)
    rows_n = (len(tiles) + columns - 1) // columns
    board = Image.new("RGB", (TILE * columns, TILE * max(1, rows_n)))
    for i, t in enumerate(tiles):
        board.paste(t, ((i % columns) * TILE, (i // columns) * TILE))
    board.save(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector", default="yunet")
    ap.add_argument("--data", default=os.environ.get("FACEVAULT_TEST_DATA", "../shared/data"))
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--random", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="/tmp/false-detections.png")
    ap.add_argument("--all", action="store_true", help="every false detection, 48 to a sheet")
    args = ap.parse_args()
    rows, total = false_detections(args.detector, Path(args.data))
    out = Path(args.out)
    if args.all:
        picked = rows
        for n, start in enumerate(range(0, len(rows), SHEET)):
            sheet(rows[start : start + SHEET], out.with_name(f"{out.stem}-{n}{out.suffix}"), first=start)
    else:
        rest = rows[args.top :]
        picked = rows[: args.top] + random.Random(args.seed).sample(rest, min(args.random, len(rest)))
        sheet(picked, out)
    overlap = sum(1 for r in rows if r[3] > 0)
    widths = np.asarray([r[2][2] - r[2][0] for r in rows]) if rows else np.zeros(1)
    print(
        f"{args.detector}: {len(rows)} false of {total} detections; "
        f"{overlap} overlap an annotated face at all; "
        f"median width {np.median(widths):.0f} px; sheet of {len(picked)} -> {args.out}"
    )


if __name__ == "__main__":
    main()
