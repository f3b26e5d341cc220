"""Consent: the record behind every subject, shown and withdrawn (withdrawal erases at once)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from ..audit_events import ConsentWithdrawn
from ..results import ConsentView, ErasureReceipt
from .context import ServiceContext
from .erasure import erase_subject
from .subjects import get_subject


def consent_show(ctx: ServiceContext, collection: str, subject: str) -> ConsentView:
    view = get_subject(ctx, collection, subject)
    return ConsentView(subject_id=view.id, name=view.name, collection=collection, consent=view.consent)


def withdraw_consent(ctx: ServiceContext, collection: str, subject: str) -> ErasureReceipt:
    """Withdrawal erases the subject's biometric data at once; the receipt records the withdrawal. Both
    are one transaction: a crash can never leave a withdrawn consent with the face still enrolled."""

    def withdraw(conn: Connection, subj: dict[str, Any]) -> None:
        ctx.store.withdraw_consent(conn, subj["consent_id"])
        ctx.log(
            conn,
            ConsentWithdrawn(collection=collection, subject_id=subj["id"], consent_id=subj["consent_id"]),
        )

    return erase_subject(ctx, collection, subject, reason="consent_withdrawn", first=withdraw)
