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
from typing import Any

from sqlalchemy import Connection

from ..audit_events import Reviewed
from ..errors import ConflictError, InputError, NotFoundError
from ..results import ReviewCandidate, ReviewStatus
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
            Reviewed(
                case_id=case_id,
                collection=target["collection"],
                candidate_id=target["id"],
                subject_id=target["subject_id"],
                decision=decision,
                reviewer=_label(principal, name),
            ),
        )
    return next(c for c in review_status(ctx, case_id).candidates if c.candidate_id == target["id"])
