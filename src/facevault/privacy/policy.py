"""The retention rule: when a person's biometric data must be destroyed (BIPA 740 ILCS 14/15(a),
GDPR Art. 5(1)(e)). Pure policy over store rows; the service applies it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ..clock import as_utc


def destruction_reason(subject: dict[str, Any], now: datetime) -> str | None:
    """Why ``subject`` (a row with its consent and collection's retention) must be destroyed at ``now``,
    or None: consent withdrawn, consent expired, or the retention period after the last interaction is
    over."""
    expires, withdrawn = as_utc(subject["expires_at"]), as_utc(subject["withdrawn_at"])
    last = as_utc(subject["last_interaction_at"] or subject["created_at"])
    if withdrawn is not None:
        return "consent_withdrawn"
    if expires is not None and expires <= now:
        return "consent_expired"
    if last is not None and last + timedelta(days=int(subject["retention_days"])) <= now:
        return "retention_period_over"
    return None
