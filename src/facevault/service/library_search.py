"""``library search``: every photo in which the probe's person appears.

For each face of the probe: the library's nearest faces (FAISS over the library's vectors) -> exact
scores -> the faces at or above the threshold -> the person most of the best matches belong to -> every
face of that person (the photos they appear in, even where that one face alone would score below the
threshold), ranked by similarity to the probe, with the face's box, its similarity and estimated
false-match rate, and the person each belongs to. Every search states its purpose and is audited
(``library.search``), like a collection search; only a role that may identify may run one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import calibration
from ..audit_events import LibrarySearched
from ..errors import FaceVaultError, InputError, NoFaceError
from .context import ImageInput, ServiceContext
from .library import person_label
from .library_cluster import library_vectors
from .search import may_identify, require_purpose

SHORTLIST = 200
MAX_RESULTS = 1000


def _threshold(
    ctx: ServiceContext, model_id: str, faces: int, fmr: float | None, threshold: float | None
) -> tuple[float, float]:
    s = ctx.settings
    default = (
        s.search_fmr
        if s.search_fmr > 0
        else calibration.search_fmr_for_gallery(faces, s.search_fpir, s.search_max_fmr)
    )
    return ctx.threshold(model_id, fmr, threshold, default)


def search_library(
    ctx: ServiceContext,
    library: str,
    probe: ImageInput,
    *,
    purpose: str,
    case_id: str | None = None,
    fmr: float | None = None,
    threshold: float | None = None,
    limit: int = MAX_RESULTS,
) -> dict[str, Any]:
    purpose = require_purpose(purpose)
    if not may_identify(ctx):
        raise InputError("this role may not search libraries", code="role_may_not_search")
    with ctx.read() as conn:
        lib = ctx.store.get_library(conn, library)
        rows = ctx.store.library_face_rows(conn, lib["id"])
        lv = library_vectors(ctx, lib, conn, [r[0] for r in rows])
        key = ctx.current_key(conn)
    thr, thr_fmr = _threshold(ctx, lib["model_id"], len(rows), fmr, threshold)
    cal = calibration.for_model(lib["model_id"])
    owner = {r[0]: r[1] for r in rows}
    base = {"purpose": purpose, "case_id": case_id, "library": lib["name"]}
    try:
        decoded = ctx.decode(probe)
    except FaceVaultError as exc:
        with ctx.write() as conn:
            ctx.log(conn, LibrarySearched(**base, outcome="error", error=exc.code))
        raise
    faces = ctx.pipeline(lib["model_id"]).analyze(decoded.pixels)
    if not faces:
        with ctx.write() as conn:
            ctx.log(conn, LibrarySearched(**base, probe_sha256=decoded.sha256, outcome="no_face"))
        raise NoFaceError("no face was found in the probe photo")
    results: list[dict[str, Any]] = []
    audit_matches: list[Any] = []
    for fi, face in enumerate(faces):
        q = key.protect(face.embedding).astype(np.float32)
        sims, ids = lv.search(q[None, :], min(SHORTLIST, max(len(rows), 1)))
        hits = [(int(i), float(s)) for i, s in zip(ids[0], sims[0], strict=True) if i >= 0 and s >= thr]
        votes: dict[int, float] = {}
        for fid, sc in hits[:10]:
            pid = owner.get(fid)
            if pid is not None:
                votes[pid] = votes.get(pid, 0.0) + sc
        person_id = max(votes, key=lambda p: votes[p]) if votes else None
        wanted = {fid for fid, _ in hits}
        if person_id is not None:
            wanted |= {fid for fid, pid in owner.items() if pid == person_id}
        results.append(
            {"face_index": fi, "box": face.face.box_list(), "person_id": person_id, "ids": wanted, "q": q}
        )
    with ctx.write() as conn:
        out_faces = []
        for r in results:
            ids = sorted(r.pop("ids"))
            q = r.pop("q")
            face_rows = ctx.store.library_faces(conn, ids)
            photos = ctx.store.library_photos(conn, (f["photo_id"] for f in face_rows.values()))
            people = ctx.store.people_by_id(
                conn, {f["person_id"] for f in face_rows.values() if f["person_id"]}
            )
            pos = lv.positions(np.asarray(ids, dtype=np.int64)) if ids else np.zeros(0, dtype=np.int64)
            scores = lv.vectors[pos] @ q if len(pos) else np.zeros(0)
            matches = []
            for fid, sc in sorted(zip(ids, scores.tolist(), strict=True), key=lambda t: -t[1])[:limit]:
                f = face_rows.get(fid)
                if f is None:
                    continue
                ph, pe = photos.get(f["photo_id"]), people.get(f["person_id"])
                matches.append(
                    {
                        "photo_id": int(f["photo_id"]),
                        "photo": ph["source"] if ph else None,
                        "photo_sha256": ph["sha256"] if ph else None,
                        "face_id": fid,
                        "box": [round(float(f[k]), 1) for k in ("box_x1", "box_y1", "box_x2", "box_y2")],
                        "similarity": round(float(sc), 4),
                        "estimated_fmr": cal.fmr_at(float(sc)),
                        "person": int(pe["number"]) if pe else None,
                        "person_label": person_label(pe) if pe else None,
                    }
                )
            person = (
                ctx.store.people_by_id(conn, [r["person_id"]]).get(r["person_id"]) if r["person_id"] else None
            )
            out_faces.append(
                {
                    "face_index": r["face_index"],
                    "box": r["box"],
                    "person": int(person["number"]) if person else None,
                    "person_label": person_label(person) if person else None,
                    "photos": len({m["photo_id"] for m in matches}),
                    "matches": matches,
                }
            )
            audit_matches.append(
                [out_faces[-1]["person"], [[m["face_id"], m["similarity"]] for m in matches[:50]]]
            )
        seq = ctx.log(
            conn,
            LibrarySearched(
                **base,
                probe_sha256=decoded.sha256,
                outcome="ok",
                threshold=round(thr, 5),
                threshold_fmr=thr_fmr,
                faces=len(faces),
                matches=audit_matches,
            ),
        )
    return {
        "library": lib["name"],
        "model_id": lib["model_id"],
        "probe_sha256": decoded.sha256,
        "purpose": purpose,
        "case_id": case_id,
        "threshold": round(thr, 5),
        "threshold_fmr": thr_fmr,
        "audit_seq": seq,
        "faces": out_faces,
    }
