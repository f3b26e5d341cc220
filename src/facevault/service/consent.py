"""Consent: the record behind every subject, shown and withdrawn (withdrawal erases at once)."""

from __future__ import annotations

from ..audit_events import ConsentWithdrawn
from ..results import ConsentView, ErasureReceipt
from .context import ServiceContext
from .erasure import erase_subject
from .subjects import get_subject


def consent_show(ctx: ServiceContext, collection: str, subject: str) -> ConsentView:
    view = get_subject(ctx, collection, subject)
    return ConsentView(subject_id=view.id, name=view.name, collection=collection, **view.consent.to_dict())


def withdraw_consent(ctx: ServiceContext, collection: str, subject: str) -> ErasureReceipt:
    """Withdrawal erases the subject's biometric data at once; the receipt records the withdrawal."""
    with ctx.write() as conn:
        coll = ctx.store.get_collection(conn, collection)
        subj = ctx.store.find_subject(conn, coll["id"], subject)
        ctx.store.withdraw_consent(conn, subj["consent_id"])
        ctx.log(
            conn,
            ConsentWithdrawn(collection=collection, subject_id=subj["id"], consent_id=subj["consent_id"]),
        )
    return erase_subject(ctx, collection, f"#{subj['id']}", reason="consent_withdrawn")
