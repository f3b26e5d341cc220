"""Human review of search candidates (EU AI Act Art. 14): a candidate counts as confirmed only once two
different principals confirmed it; any rejection marks it rejected.

The reviewer who counts is the authenticated principal, never a name the caller types: over HTTP the API
key (``key:<prefix>``), for the local operator (CLI, Python API) the operating-system account the process
runs as (``local:<user>``, from the process's user id, not from ``$USER``). The name given with a decision
is only shown next to the principal (``alice (local:ops)``), so one operator confirming twice under two
names is one reviewer.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from .. import audit
from ..audit_events import Reviewed
from ..errors import ConflictError, InputError, NotFoundError
from ..results import ReviewCandidate, ReviewStatus
from . import review_probes
from .context import ServiceContext

CONFIRMATIONS_NEEDED = 2
DECISIONS = ("confirm", "reject")
MAX_REVIEWER_NAME = 200


def local_principal() -> str:
    """The local operator as a reviewer: ``local:<account>`` of the process's real user id."""
    try:
        import pwd

        account = pwd.getpwuid(os.getuid()).pw_name
    except ImportError:  # no pwd module (Windows): the login name is the best there is
        import getpass

        account = getpass.getuser()
    except KeyError:  # a user id without a passwd entry (some containers)
        account = f"uid{os.getuid()}"
    return f"local:{account}"


def principal_of(ctx: ServiceContext) -> str:
    """Who is deciding: the calling key over HTTP (the context's actor), else the local account."""
    return local_principal() if ctx.role is None else ctx.actor


def _label(principal: str, name: str | None) -> str:
    """How a decision's reviewer is shown: ``<name> (<principal>)``, or the principal alone."""
    return f"{name} ({principal})" if name and name != principal else principal


def _stored_note(name: str, note: str | None) -> str:
    """The decision's note column: the reviewer's display name with their note (the principal is in the
    ``reviewer`` column, which the one-decision-per-reviewer constraint keys on)."""
    return json.dumps({"reviewer_name": name, "note": note}, ensure_ascii=False)


def _display_name(row: dict[str, Any]) -> str | None:
    """The display name kept with a decision; None for decisions recorded before names were kept apart
    (their ``reviewer`` column holds the name that was given)."""
    try:
        kept = json.loads(row.get("note") or "")
    except ValueError:
        return None
    return kept.get("reviewer_name") if isinstance(kept, dict) else None


@dataclass(frozen=True, kw_only=True)
class ReviewedWithNote(Reviewed):
    """A review decision with the reviewer's note (the ``review`` entry; the note is part of it)."""

    note: str | None = None


def _searches(conn: Connection, case_id: str) -> dict[int, dict[str, Any]]:
    """The case's search entries by seq: probe hash and the subject ids per face."""
    out = {}
    for e in audit.entries(conn, 0, action="search", case_id=case_id):
        faces = e["details"].get("candidates") or []
        out[int(e["seq"])] = {
            "sha": e.get("probe_sha256"),
            "faces": [{int(c[0]) for c in face} for face in faces],
        }
    return out


def record_candidates(
    ctx: ServiceContext, conn: Connection, case_id: str, seq: int, collection: str, faces: list[Any]
) -> None:
    """Queue a search's candidates for review under its case, in the search's own transaction. The same
    face of the same photo (same image hash, same face) against the same subject is one candidate: a
    repeated search of a case adds none."""
    existing = ctx.store.review_candidates(conn, case_id)
    searches = _searches(conn, case_id) if existing else {}
    sha = searches.get(seq, {}).get("sha")

    def known(face_pos: int, subject_id: int) -> bool:
        for row in existing:
            if int(row["subject_id"]) != subject_id or row["collection"] != collection:
                continue
            earlier = searches.get(int(row["search_seq"]))
            if earlier is None or sha is None or earlier["sha"] != sha:
                continue
            if face_pos < len(earlier["faces"]) and subject_id in earlier["faces"][face_pos]:
                return True
        return False

    for pos, face in enumerate(faces):
        for c in face.candidates:
            if existing and known(pos, c.subject_id):
                continue
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
        mine = [d for d in decisions if d["candidate_id"] == c["id"]]  # in the order they were made
        confirms = _by_principal(mine, "confirm")
        rejects = _by_principal(mine, "reject")
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
                confirmed_by=list(confirms.values()),
                rejected_by=list(rejects.values()),
                state=state,
            )
        )
    return ReviewStatus(case_id=case_id, candidates=out, confirmations_needed=CONFIRMATIONS_NEEDED)


def _note_of(row: dict[str, Any]) -> str | None:
    try:
        kept = json.loads(row.get("note") or "")
    except ValueError:
        return row.get("note") or None  # a note recorded before names were kept apart
    return kept.get("note") if isinstance(kept, dict) else None


def review_details(ctx: ServiceContext, case_id: str) -> dict[str, Any]:
    """What a reviewer needs besides the states: whether the case exists (any search named it), each
    decision with its note, and the kept probe of each candidate (``review_probes.details``)."""
    with ctx.read() as conn:
        cands = ctx.store.review_candidates(conn, case_id)
        decisions = ctx.store.review_decisions(conn, [c["id"] for c in cands])
        exists = bool(cands) or bool(audit.entries(conn, 1, case_id=case_id))
    probes = review_probes.details(ctx, case_id, cands)
    out: dict[int, dict[str, Any]] = {}
    for c in cands:
        mine = [d for d in decisions if d["candidate_id"] == c["id"]]
        out[int(c["id"])] = {
            "decisions": [
                {
                    "reviewer": _label(d["reviewer"], _display_name(d)),
                    "decision": d["decision"],
                    "note": _note_of(d),
                    "at": d["at"].isoformat() if hasattr(d["at"], "isoformat") else str(d["at"]),
                }
                for d in mine
            ],
            "probe": probes.get(int(c["id"]), {"kept": False}),
        }
    return {"exists": exists, "candidates": out}


def _state(decisions: list[dict[str, Any]]) -> str:
    if _by_principal(decisions, "reject"):
        return "rejected"
    return "confirmed" if len(_by_principal(decisions, "confirm")) >= CONFIRMATIONS_NEEDED else "pending"


def pending_search_seqs(ctx: ServiceContext) -> set[int]:
    """The searches (audit seqs) that still have a pending candidate in some case."""
    with ctx.read() as conn:
        cands = ctx.store.review_candidates(conn)
        decisions = ctx.store.review_decisions(conn, [c["id"] for c in cands])
    by_cand: dict[int, list[dict[str, Any]]] = {}
    for d in decisions:
        by_cand.setdefault(int(d["candidate_id"]), []).append(d)
    return {int(c["search_seq"]) for c in cands if _state(by_cand.get(int(c["id"]), [])) == "pending"}


def sweep_probes(ctx: ServiceContext) -> int:
    """Delete the kept probes of searches without a pending candidate (decided, or erased)."""
    return review_probes.sweep(ctx, pending_search_seqs(ctx))


def review_queue(ctx: ServiceContext) -> list[dict[str, Any]]:
    """Every case with candidates: counts per state and when its last search ran, open cases first."""
    with ctx.read() as conn:
        cands = ctx.store.review_candidates(conn)
        decisions = ctx.store.review_decisions(conn, [c["id"] for c in cands])
    by_cand: dict[int, list[dict[str, Any]]] = {}
    for d in decisions:
        by_cand.setdefault(int(d["candidate_id"]), []).append(d)
    cases: dict[str, dict[str, Any]] = {}
    for c in cands:
        case = cases.setdefault(
            c["case_id"],
            {
                "case_id": c["case_id"],
                "candidates": 0,
                "pending": 0,
                "confirmed": 0,
                "rejected": 0,
                "collections": [],
                "last_search_seq": 0,
            },
        )
        case["candidates"] += 1
        case[_state(by_cand.get(int(c["id"]), []))] += 1
        if c["collection"] not in case["collections"]:
            case["collections"].append(c["collection"])
        case["last_search_seq"] = max(case["last_search_seq"], int(c["search_seq"]))
    return sorted(cases.values(), key=lambda k: (k["pending"] == 0, -k["last_search_seq"]))


def _by_principal(decisions: list[dict[str, Any]], decision: str) -> dict[str, str]:
    """{principal: how it is shown} of the decisions of one kind: distinct principals are what count."""
    out: dict[str, str] = {}
    for d in decisions:
        if d["decision"] == decision:
            out.setdefault(d["reviewer"], _label(d["reviewer"], _display_name(d)))
    return out


def review(
    ctx: ServiceContext, case_id: str, candidate: int, decision: str, reviewer: str, note: str | None = None
) -> ReviewCandidate:
    """Record the acting principal's decision on a candidate of a case (``candidate``: the candidate id,
    or the subject id of a candidate in this case). ``reviewer`` is the name shown with the decision; the
    principal that counts is the caller's (:func:`principal_of`), whatever the name says."""
    if decision not in DECISIONS:
        raise InputError("decision must be confirm or reject")
    name = " ".join((reviewer or "").split())
    if not name:
        raise InputError("a review needs the reviewer's name", code="reviewer_required")
    if len(name) > MAX_REVIEWER_NAME:
        raise InputError(f"a reviewer's name may have at most {MAX_REVIEWER_NAME} characters")
    principal = principal_of(ctx)
    with ctx.write() as conn:
        cands = ctx.store.review_candidates(conn, case_id)
        match = [c for c in cands if c["id"] == candidate] or [
            c for c in cands if c["subject_id"] == candidate
        ]
        if not match:
            raise NotFoundError(f"case {case_id!r} has no candidate {candidate}", code="candidate_not_found")
        target = match[-1]
        earlier = [d for d in ctx.store.review_decisions(conn, [target["id"]]) if d["reviewer"] == principal]
        if earlier:
            shown = _label(principal, _display_name(earlier[0]))
            raise ConflictError(
                f"{principal} already decided on this candidate (as {shown}, {earlier[0]['decision']}); a "
                "second person must decide, with their own API key or account: a different reviewer name "
                "is the same reviewer",
                code="already_reviewed",
            )
        ctx.store.add_review_decision(
            conn,
            candidate_id=target["id"],
            reviewer=principal,
            decision=decision,
            note=_stored_note(name, note),
        )
        ctx.log(
            conn,
            ReviewedWithNote(
                case_id=case_id,
                collection=target["collection"],
                candidate_id=target["id"],
                subject_id=target["subject_id"],
                decision=decision,
                reviewer=_label(principal, name),
                note=note or None,
            ),
        )
    sweep_probes(ctx)  # a probe whose search has no pending candidate left goes now
    return next(c for c in review_status(ctx, case_id).candidates if c.candidate_id == target["id"])
