"""1:N identification: every face of a probe photo (or one precomputed embedding) against a collection.

Index shortlist -> store rows for those ids -> stored templates opened and re-scored exactly -> grouped
by subject -> threshold -> candidates -> audit entry (and review queue when a case id is given).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import calibration, faults
from ..audit_events import Searched
from ..errors import FaceVaultError, InputError, ModelMismatchError, NoFaceError, PurposeRequiredError
from ..pipeline import ProcessedFace
from ..results import Candidate, FaceResult, MatchedSample, SearchResult
from .context import Collection, ImageInput, ServiceContext
from .prefetch import ProbeAnalysis
from .review import record_candidates

SAMPLES_PER_CANDIDATE = 5
MAX_TOP_K = 1000  # the most anyone may ask for, the local operator and admin keys included
UNBOUNDED_ROLES = (None, "admin")  # None: the local operator (CLI, Python API), who has every right
IDENTIFYING_ROLES = (None, "admin", "searcher")


def may_exceed_search_limits(ctx: ServiceContext) -> bool:
    """Only the local operator and admin keys may search looser or longer than the settings allow."""
    return ctx.role in UNBOUNDED_ROLES


def may_identify(ctx: ServiceContext) -> bool:
    """Whether the acting role may learn who a face belongs to (run 1:N searches)."""
    return ctx.role in IDENTIFYING_ROLES


def check_top(ctx: ServiceContext, top_k: int) -> int:
    """``top_k`` if the acting role may ask for that many candidates per face (``top_too_large``)."""
    if top_k < 1:
        raise InputError(f"top must be at least 1, got {top_k}", code="invalid_input")
    limit = MAX_TOP_K if may_exceed_search_limits(ctx) else min(ctx.settings.search_max_top, MAX_TOP_K)
    if top_k > limit:
        who = "anyone" if limit == MAX_TOP_K else "a key below admin"
        raise InputError(
            f"top {top_k} is more than {who} may ask for ({limit} candidates per face)",
            code="top_too_large",
            details={"top": top_k, "max_top": limit},
        )
    return int(top_k)


def search_threshold(
    ctx: ServiceContext, coll: Collection, samples: int, fmr: float | None, threshold: float | None
) -> tuple[float, float]:
    """(threshold, its FMR) of a search: the default for the gallery's size, or the caller's ``fmr`` or
    ``threshold``, refused (``threshold_too_loose``) when looser than ``search_loosest_fmr`` allows and
    the acting role is below admin. The default is whatever the vault's settings make it."""
    thr, thr_fmr = ctx.threshold(coll["model_id"], fmr, threshold, default_search_fmr(ctx, coll, samples))
    if (fmr is None and threshold is None) or may_exceed_search_limits(ctx):
        return thr, thr_fmr
    loosest = ctx.settings.search_loosest_fmr
    floor = calibration.for_model(coll["model_id"]).threshold_for(loosest)
    if (fmr is not None and fmr > loosest) or thr < floor - 1e-6:
        asked = f"threshold {threshold}" if threshold is not None else f"false-match rate {fmr}"
        raise InputError(
            f"{asked} is looser than a key below admin may search with: the loosest is false-match rate "
            f"{loosest:g} per comparison (similarity {floor:.4f} for {coll['model_id']})",
            code="threshold_too_loose",
            details={"loosest_fmr": loosest, "loosest_threshold": round(floor, 5)},
        )
    return thr, thr_fmr


def require_purpose(purpose: str | None) -> str:
    """Every search states why it is run; the answer goes into the audit log."""
    purpose = (purpose or "").strip()
    if not purpose:
        raise PurposeRequiredError("a search needs a purpose (why is this search being run?)")
    return purpose


def default_search_fmr(ctx: ServiceContext, collection: Collection, samples: int | None = None) -> float:
    """The per-comparison FMR that keeps the false-positive identification rate near the setting for a
    gallery of this size (docs/ARCHITECTURE.md), unless a fixed ``search_fmr`` is set."""
    s = ctx.settings
    if s.search_fmr > 0:
        return s.search_fmr
    if samples is None:
        with ctx.read() as conn:
            samples = ctx.store.count_samples(conn, collection["id"])
    return calibration.search_fmr_for_gallery(samples, s.search_fpir, s.search_max_fmr)


def search(
    ctx: ServiceContext,
    collection: str,
    probe: ImageInput,
    *,
    purpose: str,
    case_id: str | None = None,
    top_k: int = 5,
    fmr: float | None = None,
    threshold: float | None = None,
    analysis: ProbeAnalysis | None = None,
) -> SearchResult:
    """Open-set 1:N identification of every face in ``probe``. An empty candidate list means the person is
    not in the gallery at this threshold. Every call is written to the audit log. ``analysis``: the probe's
    faces computed ahead by ``service.prefetch``, used only if they match this collection's pipeline."""
    purpose = require_purpose(purpose)
    with ctx.read() as conn:
        coll = ctx.store.get_collection(conn, collection)
        samples = ctx.store.count_samples(conn, coll["id"])
    asked = {"purpose": purpose, "case_id": case_id, "collection": collection}
    thr, thr_fmr = checked_request(ctx, coll, samples, top_k, fmr, threshold, asked)
    try:
        decoded = ctx.decode(probe)
    except FaceVaultError as exc:
        audit_failure(ctx, exc, **asked)
        raise
    pipeline = ctx.collection_pipeline(coll)
    faces = analysis.faces_for(pipeline, decoded.sha256) if analysis is not None else None
    if faces is None:
        faces = pipeline.analyze(decoded.pixels)
    request = SearchRequest(coll, collection, purpose, case_id, top_k, thr, thr_fmr)
    return conclude(ctx, request, decoded.sha256, faces)


@dataclass(frozen=True)
class SearchRequest:
    """A search that passed its checks: what ``conclude`` needs besides the probe's faces."""

    coll: Collection
    collection: str
    purpose: str
    case_id: str | None
    top_k: int
    threshold: float
    threshold_fmr: float

    def entry(self, probe_sha256: str) -> dict[str, Any]:
        return {
            "purpose": self.purpose,
            "case_id": self.case_id,
            "collection": self.collection,
            "probe_sha256": probe_sha256,
            "threshold": round(self.threshold, 5),
        }


def conclude(
    ctx: ServiceContext, req: SearchRequest, probe_sha256: str, faces: list[ProcessedFace]
) -> SearchResult:
    """Search the probe's analysed faces, audit the search (and queue its candidates for review when it
    names a case). No face is audited too, then raised as ``NoFaceError``."""
    entry = req.entry(probe_sha256)
    if not faces:
        with ctx.write() as conn:
            ctx.log(conn, Searched(outcome="no_face", **entry))
        raise NoFaceError("no face was found in the probe image")
    results = search_faces(ctx, req.coll, left_to_right(faces), req.top_k, req.threshold)
    with ctx.write() as conn:
        seq = ctx.log(
            conn,
            Searched(
                **entry,
                outcome="ok",
                threshold_fmr=req.threshold_fmr,
                top_k=req.top_k,
                faces=len(results),
                candidates=[[[c.subject_id, round(c.similarity, 4)] for c in f.candidates] for f in results],
            ),
        )
        if req.case_id:
            # Candidates are leads for human review, not identifications (EU AI Act Art. 14).
            record_candidates(ctx, conn, req.case_id, seq, req.collection, results)
    return SearchResult(
        collection=req.collection,
        model_id=req.coll["model_id"],
        probe_sha256=probe_sha256,
        threshold=round(req.threshold, 5),
        threshold_fmr=req.threshold_fmr,
        top_k=req.top_k,
        purpose=req.purpose,
        case_id=req.case_id,
        audit_seq=seq,
        faces=results,
    )


def search_embedding(
    ctx: ServiceContext,
    collection: str,
    embedding: np.ndarray,
    *,
    model_id: str,
    purpose: str,
    case_id: str | None = None,
    top_k: int = 5,
    fmr: float | None = None,
    threshold: float | None = None,
) -> list[Candidate]:
    """1:N search with a precomputed embedding; refused unless it comes from the collection's model."""
    purpose = require_purpose(purpose)
    with ctx.read() as conn:
        coll = ctx.store.get_collection(conn, collection)
        samples = ctx.store.count_samples(conn, coll["id"])
    asked = {"purpose": purpose, "case_id": case_id, "collection": collection, "input": "embedding"}
    thr, thr_fmr = checked_request(ctx, coll, samples, top_k, fmr, threshold, asked)
    if model_id != coll["model_id"]:
        raise ModelMismatchError(
            f"collection {collection!r} holds {coll['model_id']} vectors; a {model_id} vector cannot be "
            "compared with them"
        )
    vec = np.asarray(embedding, dtype=np.float32).reshape(-1)
    if vec.shape[0] != coll["dim"]:
        raise ModelMismatchError(f"embedding has {vec.shape[0]} dimensions, collection needs {coll['dim']}")
    vec = vec / max(float(np.linalg.norm(vec)), 1e-12)
    candidates = find_candidates(ctx, coll, vec, top_k, thr)
    with ctx.write() as conn:
        ctx.log(
            conn,
            Searched(
                purpose=purpose,
                case_id=case_id,
                collection=collection,
                probe_sha256=hashlib.sha256(vec.astype("<f4").tobytes()).hexdigest(),
                outcome="ok",
                input="embedding",
                threshold=round(thr, 5),
                threshold_fmr=thr_fmr,
                top_k=top_k,
                candidates=[[c.subject_id, round(c.similarity, 4)] for c in candidates],
            ),
        )
    return candidates


def left_to_right(faces: list[ProcessedFace]) -> list[ProcessedFace]:
    """The probe's faces ordered by their box's left edge (then top edge), as a person reads the photo:
    a result's ``face_index`` is that place (0: the leftmost face), the same order as its summary, its
    labelled boxes, its audit entry's ``candidates`` and its review candidates."""
    return sorted(faces, key=lambda f: tuple(f.face.box_list()[:2]))


def search_faces(
    ctx: ServiceContext, coll: Collection, faces: list[ProcessedFace], top_k: int, thr: float
) -> list[FaceResult]:
    out = []
    for i, f in enumerate(faces):
        res = FaceResult(
            face_index=i,
            box=f.face.box_list(),
            quality=f.quality.to_dict(),
            searched=True,
            skipped_reason=None,
        )
        if f.quality.eye_distance < ctx.settings.search_min_eye_distance:
            res.searched, res.skipped_reason = False, "face_too_small"
        else:
            res.candidates = find_candidates(ctx, coll, f.embedding, top_k, thr)
        out.append(res)
    return out


def find_candidates(
    ctx: ServiceContext, coll: Collection, raw: np.ndarray, top_k: int, thr: float
) -> list[Candidate]:
    """Candidates for one unit embedding: index shortlist, then exact scores on the stored templates.
    Both sides are compared in protected form (same secret rotation), which preserves similarity."""
    vec = ctx.current_key().protect(raw)
    cal = calibration.for_model(coll["model_id"])
    index = ctx.indexes.get(coll)
    k = min(len(index), max(50, top_k * SAMPLES_PER_CANDIDATE * 4))
    with ctx.indexes.lock:
        _, ids = index.search(vec[None, :], k)
    faults.point("search:shortlisted")
    with ctx.read() as conn:
        # A collection migrated since it was read holds the new model's templates: a clean, retryable
        # collection_changed instead of failing to open them (wrong_key).
        ctx.still_pinned(conn, coll)
        hits = ctx.open_hits(coll, ctx.store.sample_hits(conn, [int(i) for i in ids[0] if i >= 0]))
    by_subject: dict[int, list[tuple[float, Any]]] = {}
    for hit in hits.values():
        score = float(hit.vector @ vec)  # exact re-rank on the stored vector
        if score >= thr:
            by_subject.setdefault(hit.subject_id, []).append((score, hit))
    ranked = sorted(by_subject.values(), key=lambda lst: -max(s for s, _ in lst))[:top_k]
    out = []
    for lst in ranked:
        lst.sort(key=lambda p: -p[0])
        best, first = lst[0]
        out.append(
            Candidate(
                subject_id=first.subject_id,
                name=first.subject_name,
                external_id=first.external_id,
                similarity=round(best, 5),
                estimated_fmr=float(f"{cal.fmr_at(best):.3g}"),
                samples=[
                    MatchedSample(
                        sample_id=h.sample_id,
                        similarity=round(s, 5),
                        image=h.image_source,
                        image_sha256=h.image_sha256,
                        box=[round(v, 1) for v in h.box],
                    )
                    for s, h in lst[:SAMPLES_PER_CANDIDATE]
                ],
            )
        )
    return out


def checked_request(
    ctx: ServiceContext,
    coll: Collection,
    samples: int,
    top_k: int,
    fmr: float | None,
    threshold: float | None,
    asked: dict[str, Any],
) -> tuple[float, float]:
    """The search's threshold, once ``top_k``, ``fmr`` and ``threshold`` passed the acting role's limits.
    A refusal is audited as a refused search with what was asked (``asked``: the entry's other fields)."""
    try:
        check_top(ctx, top_k)
        return search_threshold(ctx, coll, samples, fmr, threshold)
    except FaceVaultError as exc:
        wanted = {"top_k": top_k, "threshold": threshold, "threshold_fmr": fmr}
        audit_failure(ctx, exc, **asked, **{k: v for k, v in wanted.items() if v is not None})
        raise


def audit_failure(ctx: ServiceContext, exc: FaceVaultError, **fields: Any) -> None:
    """A search refused before it ran (unreadable probe...) is audited too."""
    with ctx.write() as conn:
        ctx.log(conn, Searched(outcome="error", error=exc.code, **fields))
