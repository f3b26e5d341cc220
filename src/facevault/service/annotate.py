"""Names on faces: one label per face of a search result (best match and similarity, or "no match"),
faces ordered left to right, a one-line summary of the photo, and the photo with labelled boxes drawn
on it (the CLI's ``search --draw`` and the API's annotated download).

Nothing here is stored: the drawn image goes only to whoever ran the (audited) search."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MATCH_COLOUR = (31, 157, 85)  # green: a candidate at or above the threshold
NO_MATCH_COLOUR = (255, 176, 0)  # amber: searched, nobody in the gallery
SKIPPED_COLOUR = (150, 150, 150)  # grey: too small to search
JPEG_QUALITY = 90


@dataclass(frozen=True)
class FaceLabel:
    """How one face of a result is named: its place from the left (1-based), its label and kind."""

    position: int
    face_index: int
    box: tuple[float, float, float, float]
    label: str
    kind: str  # match | no_match | not_searched

    @property
    def colour(self) -> tuple[int, int, int]:
        return {"match": MATCH_COLOUR, "no_match": NO_MATCH_COLOUR}.get(self.kind, SKIPPED_COLOUR)


def _get(obj: Any, name: str) -> Any:
    return obj[name] if isinstance(obj, dict) else getattr(obj, name)


def face_labels(result: Any) -> list[FaceLabel]:
    """The faces of a search result (a ``SearchResult`` or its JSON), left to right."""
    faces = sorted(_get(result, "faces"), key=lambda f: (float(_get(f, "box")[0]), float(_get(f, "box")[1])))
    out = []
    for pos, f in enumerate(faces, 1):
        cands = _get(f, "candidates") or []
        if not _get(f, "searched"):
            label, kind = "not searched (too small)", "not_searched"
        elif cands:
            best = cands[0]
            label, kind = f"{_get(best, 'name')} {float(_get(best, 'similarity')):.3f}", "match"
        else:
            label, kind = "no match", "no_match"
        box = tuple(float(v) for v in _get(f, "box"))
        out.append(FaceLabel(pos, int(_get(f, "face_index")), box, label, kind))  # type: ignore[arg-type]
    return out


def summary(result: Any) -> str:
    """One line for the whole photo: ``3 faces: Barack Obama 0.977; no match; no match``."""
    labels = face_labels(result)
    if not labels:
        return "no face found"
    noun = "face" if len(labels) == 1 else "faces"
    return f"{len(labels)} {noun}: " + "; ".join(lab.label for lab in labels)


def draw_boxes(
    pixels: np.ndarray,
    boxes: Sequence[tuple[Sequence[float], str, tuple[int, int, int]]],
    line_share: float = 1 / 300,
) -> bytes:
    """A JPEG of ``pixels`` with each (box, label, colour) drawn: a frame and the label above it (below
    when there is no room above)."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.fromarray(pixels)
    draw = ImageDraw.Draw(img)
    side = max(img.width, img.height)
    width = max(2, round(side * line_share))
    font = ImageFont.load_default(size=max(12, round(side / 45)))
    for box, label, colour in boxes:
        x1, y1, x2, y2 = (float(v) for v in box)
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=width)
        if not label:
            continue
        tx1, ty1, tx2, ty2 = draw.textbbox((0, 0), label, font=font)
        tw, th = tx2 - tx1 + 2 * width, ty2 - ty1 + 2 * width
        top = y1 - th if y1 - th >= 0 else min(y2, img.height - th)
        left = min(max(0.0, x1), max(0.0, img.width - tw))
        draw.rectangle((left, top, left + tw, top + th), fill=colour)
        draw.text((left + width - tx1, top + width - ty1), label, fill=(0, 0, 0), font=font)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def draw_result(pixels: np.ndarray, result: Any) -> bytes:
    """The probe with every face boxed, coloured by match, and labelled ``<n>. <label>``."""
    return draw_boxes(
        pixels, [(lab.box, f"{lab.position}. {lab.label}", lab.colour) for lab in face_labels(result)]
    )


def annotated_search(ctx: Any, probe: Any, result: Any) -> bytes:
    """The annotated JPEG of a search's probe (decoded again, upright, within the vault's limits)."""
    return draw_result(ctx.decode(probe).pixels, result)
