"""Human review of search candidates (EU AI Act Art. 14): a candidate counts as confirmed only once two
different reviewers confirmed it; any rejection marks it rejected."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from ..audit_events import Reviewed
from ..errors import InputError, NotFoundError
from ..results import ReviewCandidate, ReviewStatus
from .context import ServiceContext

CONFIRMATIONS_NEEDED = 2
DECISIONS = ("confirm", "reject")


def record_candidates(
    ctx: ServiceContext, conn: Connection, case_id: str, seq: int, collection: str, faces: list[Any]
) -> None:
    """Queue a search's candidates for review under its case, in the search's own transaction."""
    for face in faces:
        for c in face.candidates:
            ctx.store.add_review_candidate(
                conn,
                case_id=case_id,
                search_seq=seq,
                collection=collection,
                subject_id=c.subject_id,
                subject_name=c.name,
                similarity=c.similarity,
            )


def review_status(ctx: ServiceContext, case_id: str) -> ReviewStatus:
    with ctx.read() as conn:
        cands = ctx.store.review_candidates(conn, case_id)
        decisions = ctx.store.review_decisions(conn, [c["id"] for c in cands])
    out = []
    for c in cands:
        mine = [d for d in decisions if d["candidate_id"] == c["id"]]
        confirms = sorted({d["reviewer"] for d in mine if d["decision"] == "confirm"})
        rejects = sorted({d["reviewer"] for d in mine if d["decision"] == "reject"})
        state = (
            "rejected" if rejects else ("confirmed" if len(confirms) >= CONFIRMATIONS_NEEDED else "pending")
        )
        out.append(
            ReviewCandidate(
                candidate_id=c["id"],
                search_seq=c["search_seq"],
                collection=c["collection"],
                subject_id=c["subject_id"],
                name=c["subject_name"],
                similarity=c["similarity"],
                confirmed_by=confirms,
                rejected_by=rejects,
                state=state,
            )
        )
    return ReviewStatus(case_id=case_id, candidates=out, confirmations_needed=CONFIRMATIONS_NEEDED)


def review(
    ctx: ServiceContext, case_id: str, candidate: int, decision: str, reviewer: str, note: str | None = None
) -> ReviewCandidate:
    """Record one reviewer's decision on a candidate of a case (``candidate``: the candidate id, or the
    subject id of a candidate in this case)."""
    if decision not in DECISIONS:
        raise InputError("decision must be confirm or reject")
    reviewer = (reviewer or "").strip()
    if not reviewer:
        raise InputError("a review needs the reviewer's name", code="reviewer_required")
    with ctx.write() as conn:
        cands = ctx.store.review_candidates(conn, case_id)
        match = [c for c in cands if c["id"] == candidate] or [
            c for c in cands if c["subject_id"] == candidate
        ]
        if not match:
            raise NotFoundError(f"case {case_id!r} has no candidate {candidate}", code="candidate_not_found")
        target = match[-1]
        ctx.store.add_review_decision(
            conn, candidate_id=target["id"], reviewer=reviewer, decision=decision, note=note
        )
        ctx.log(
            conn,
            Reviewed(
                case_id=case_id,
                collection=target["collection"],
                candidate_id=target["id"],
                subject_id=target["subject_id"],
                decision=decision,
                reviewer=reviewer,
            ),
        )
    return next(c for c in review_status(ctx, case_id).candidates if c.candidate_id == target["id"])
