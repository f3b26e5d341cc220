"""The probe photos kept for human review: what a reviewer compares with the enrolled samples.

A search run with a case id whose result has candidates keeps, for its reviewers, one sealed record:
the probe photo shrunk to at most ``MAX_SIDE`` px (EXIF-upright), the face boxes in it, and per face the
candidates with the similarity of each matched sample. It is AES-256-GCM under the current template key
with the case and the search's audit entry as associated data, in ``<photos>/.review/s<seq>.sealed``
(0600). Nothing else of a probe is ever kept, and nothing at all for a search without a case, without
candidates, or whose case is not for review.

The record lives only while its search has a pending candidate: it is deleted when the last candidate
of that search is decided or erased (``sweep``, run by every review read and decision and by erasure).
Every look at it is audited (``review.view``: who, which case, candidate and what was shown).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from .. import imaging
from ..audit_events import AuditEvent
from ..errors import FaceVaultError, NotFoundError
from ..results import SearchResult
from . import annotate
from .context import ServiceContext

MAX_SIDE = 1024
FACE_SIDE = 320
FACE_PAD = 0.35  # of the box's longer side, on every side of a face crop
FOLDER = ".review"
RECORD_NAME = re.compile(r"s(\d+)\.sealed")
PROBE_REFUSED = "no kept probe for this candidate"
VIEWS = ("face", "photo")
PART_MAX_AGE_S = 3600.0


@dataclass(frozen=True, kw_only=True)
class ProbeViewed(AuditEvent):
    """A reviewer looked at the kept probe of a candidate (its face crop or the whole photo)."""

    action = "review.view"  # type: ignore[misc]
    candidate_id: int
    search_seq: int
    shown: str


def folder(ctx: ServiceContext) -> Path:
    return Path(ctx.settings.photos_dir).resolve() / FOLDER


def record_path(ctx: ServiceContext, seq: int) -> Path:
    return folder(ctx) / f"s{int(seq)}.sealed"


def _context(case_id: str, seq: int) -> bytes:
    return f"review-probe:{seq}:{case_id}".encode()


def keep(ctx: ServiceContext, result: SearchResult, probe: Any) -> bool:
    """Keep the probe of a case search for its reviewers (module docstring); returns whether it was."""
    if not result.case_id or not any(f.candidates for f in result.faces):
        return False
    with ctx.read() as conn:  # a repeated search adds no candidate (same face, same subject): no record
        rows = ctx.store.review_candidates(conn, result.case_id)
    if not any(int(r["search_seq"]) == result.audit_seq for r in rows):
        return False
    pixels = ctx.decode(probe).pixels
    small, scale = imaging.downscale(pixels, MAX_SIDE)
    buf = io.BytesIO()
    Image.fromarray(small).save(buf, format="JPEG", quality=90)
    faces = [
        {
            "face_index": f.face_index,
            "box": [round(v * scale, 1) for v in f.box],
            "candidates": [
                {
                    "subject_id": c.subject_id,
                    "similarity": c.similarity,
                    "samples": {str(s.sample_id): s.similarity for s in c.samples},
                }
                for c in f.candidates
            ],
        }
        for f in result.faces
    ]
    body = {"faces": faces, "jpeg": base64.b64encode(buf.getvalue()).decode("ascii")}
    key = ctx.current_key()
    sealed = key.encrypt(json.dumps(body).encode(), _context(result.case_id, result.audit_seq))
    path = record_path(ctx, result.audit_seq)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(
            fd, json.dumps({"key_version": key.version, "blob": base64.b64encode(sealed).decode()}).encode()
        )
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return True


def _open(ctx: ServiceContext, case_id: str, seq: int) -> dict[str, Any] | None:
    path = record_path(ctx, seq)
    try:
        outer = json.loads(path.read_bytes())
        key = ctx.keys.key(int(outer["key_version"]))
        plain = key.decrypt(base64.b64decode(outer["blob"]), _context(case_id, seq), "a kept review probe")
        return json.loads(plain)  # type: ignore[no-any-return]
    except (OSError, ValueError, KeyError, FaceVaultError):
        return None  # gone, of another case, or under a key that was forgotten


def _face_of(record: dict[str, Any], subject_id: int, similarity: float) -> dict[str, Any] | None:
    """The face of the probe a candidate row came from: the one listing that subject at that score."""
    best: tuple[float, dict[str, Any]] | None = None
    for face in record["faces"]:
        for c in face["candidates"]:
            if c["subject_id"] == subject_id:
                gap = abs(float(c["similarity"]) - similarity)
                if best is None or gap < best[0]:
                    best = (gap, face)
    return None if best is None else best[1]


def details(ctx: ServiceContext, case_id: str, rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Per candidate row: whether its probe is kept, the face (index, box, place from the left among
    the probe's faces) and the similarity of each matched sample."""
    out: dict[int, dict[str, Any]] = {}
    records: dict[int, dict[str, Any] | None] = {}
    for row in rows:
        seq = int(row["search_seq"])
        if seq not in records:
            records[seq] = _open(ctx, case_id, seq)
        record = records[seq]
        face = None if record is None else _face_of(record, int(row["subject_id"]), float(row["similarity"]))
        if record is None or face is None:
            out[int(row["id"])] = {"kept": False}
            continue
        lefts = sorted(float(f["box"][0]) for f in record["faces"])
        cand = next(c for c in face["candidates"] if c["subject_id"] == row["subject_id"])
        out[int(row["id"])] = {
            "kept": True,
            "faces": len(record["faces"]),
            "face_position": lefts.index(float(face["box"][0])) + 1,
            "sample_similarity": {int(k): v for k, v in cand["samples"].items()},
        }
    return out


def view(ctx: ServiceContext, case_id: str, candidate_id: int, shown: str) -> bytes:
    """A JPEG of a candidate's kept probe: its face crop (``face``) or the whole probe with that face
    boxed (``photo``); audited. Every refusal is the same ``probe_unavailable``."""
    refused = NotFoundError(PROBE_REFUSED, code="probe_unavailable")
    if shown not in VIEWS:
        raise refused
    with ctx.read() as conn:
        row = next((c for c in ctx.store.review_candidates(conn, case_id) if c["id"] == candidate_id), None)
    if row is None:
        raise refused
    record = _open(ctx, case_id, int(row["search_seq"]))
    face = None if record is None else _face_of(record, int(row["subject_id"]), float(row["similarity"]))
    if record is None or face is None:
        raise refused
    pixels = imaging.decode_image(base64.b64decode(record["jpeg"]), name="kept probe").pixels
    if shown == "face":
        data = _face_crop(pixels, face["box"])
    else:
        others = [(f["box"], "", annotate.SKIPPED_COLOUR) for f in record["faces"] if f is not face]
        data = annotate.draw_boxes(
            pixels, [*others, (face["box"], "", annotate.MATCH_COLOUR)], line_share=1 / 100
        )
    with ctx.write() as conn:  # no face leaves without its audit entry
        ctx.log(
            conn,
            ProbeViewed(
                case_id=case_id,
                collection=row["collection"],
                candidate_id=candidate_id,
                search_seq=int(row["search_seq"]),
                shown=shown,
            ),
        )
    return data


def _face_crop(pixels: Any, box: list[float]) -> bytes:
    x1, y1, x2, y2 = box
    pad = FACE_PAD * max(x2 - x1, y2 - y1)
    img = Image.fromarray(pixels)
    crop = img.crop(
        (
            max(0, int(x1 - pad)),
            max(0, int(y1 - pad)),
            min(img.width, int(x2 + pad)),
            min(img.height, int(y2 + pad)),
        )
    )
    crop.thumbnail((FACE_SIDE, FACE_SIDE))
    if max(crop.size) < FACE_SIDE:  # small faces are shown large enough to judge
        f = FACE_SIDE / max(crop.size)
        crop = crop.resize(
            (max(1, round(crop.width * f)), max(1, round(crop.height * f))), Image.Resampling.LANCZOS
        )
    buf = io.BytesIO()
    crop.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _young(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_mtime < PART_MAX_AGE_S
    except FileNotFoundError:
        return True


def sweep(ctx: ServiceContext, pending_seqs: set[int]) -> int:
    """Delete every kept probe whose search is not in ``pending_seqs`` (the searches with a pending
    candidate: ``review.sweep_probes``); returns how many went."""
    root = folder(ctx)
    if not root.is_dir():
        return 0
    removed = 0
    for path in root.iterdir():
        m = RECORD_NAME.fullmatch(path.name)
        if m is not None and int(m.group(1)) in pending_seqs:
            continue
        if m is None and _young(path):
            continue  # a record being written now
        path.unlink(missing_ok=True)  # a finished record, or a .part of a killed writer
        removed += 1
    return removed
