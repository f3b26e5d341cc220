"""Retention: what is due for destruction, the sweep that destroys it, and the written public policy."""

from __future__ import annotations

from datetime import datetime

from ..audit_events import RetentionSwept
from ..clock import utcnow
from ..config import DEFAULT_RETENTION_DAYS, MAX_RETENTION_DAYS
from ..privacy.policy import destruction_reason
from ..results import RetentionDue, SweepReport
from .collections import list_collections
from .context import ServiceContext
from .erasure import erase_subject
from .library_erasure import library_retention_sweep


def retention_due(ctx: ServiceContext, now: datetime | None = None) -> list[RetentionDue]:
    """Subjects whose data must be destroyed now, with the reason."""
    now = now or utcnow()
    with ctx.read() as conn:
        rows = ctx.store.all_subjects(conn)
    due = []
    for r in rows:
        why = destruction_reason(r, now)
        if why is not None:
            due.append(RetentionDue(collection=r["collection"], subject_id=r["id"], reason=why))
    return due


def retention_sweep(ctx: ServiceContext, now: datetime | None = None) -> SweepReport:
    """Destroy everything that is due, in collections and in photo libraries; returns the erasure
    receipts (those of library people under ``library_erased``)."""
    receipts = [
        erase_subject(ctx, d.collection, f"#{d.subject_id}", reason=d.reason) for d in retention_due(ctx, now)
    ]
    library_receipts = library_retention_sweep(ctx, now)
    with ctx.write() as conn:
        ctx.log(
            conn,
            RetentionSwept(
                erased_subjects=len(receipts), library_people_erased=len(library_receipts) or None
            ),
        )
    report = SweepReport(swept_at=(now or utcnow()).isoformat(), erased=receipts)
    report["library_erased"] = library_receipts
    return report


def retention_policy(ctx: ServiceContext) -> str:
    """The written, public retention and destruction policy (BIPA 740 ILCS 14/15(a))."""
    lines = [
        "Biometric data retention and destruction policy",
        "",
        "This facevault deployment keeps face templates only of people who gave written consent for a "
        "stated purpose. Each person's face templates, stored face crops (in collections that keep "
        "them), sample records and consent record are permanently destroyed at the earliest of:",
        "  1. the day their consent is withdrawn (destroyed at once, on withdrawal);",
        "  2. the day their consent expires, where it has an end date;",
        "  3. the end of the retention period of their collection, counted from their last interaction "
        f"(enrollment or consent renewal), and never later than {MAX_RETENTION_DAYS // 365} years after it;",
        "  4. their erasure request or opt-out by selfie (destroyed at once).",
        "A retention sweep runs when the server starts and daily, and can be run with "
        "`facevault retention sweep`. Every destruction is recorded in the audit log with a receipt that "
        "holds counts and hashes, never biometric data.",
        "",
        "Collections:",
    ]
    for c in list_collections(ctx):
        crops_note = " encrypted face crops are kept to re-embed with a new model;" * bool(c["keep_crops"])
        lines.append(
            f"  - {c['name']}: purpose: {c.get('purpose') or 'not stated'}; retention after last "
            f"interaction: {c.get('retention_days', DEFAULT_RETENTION_DAYS)} days;{crops_note} "
            f"{c['subjects']} people enrolled."
        )
    with ctx.read() as conn:
        libraries = ctx.store.list_libraries(conn)
    if libraries:
        lines += [
            "",
            "Photo libraries (faces of unnamed people are destroyed when the retention period has passed "
            "since the person was last seen in a new photo; named people follow their consent):",
        ]
    for lib in libraries:
        lines.append(
            f"  - {lib['name']}: purpose: {lib['purpose']}; legal basis: {lib['legal_basis']}; retention: "
            f"{lib['retention_days']} days; {lib['faces']} faces of {lib['people']} people in "
            f"{lib['photos']} photos."
        )
    return "\n".join(lines)
