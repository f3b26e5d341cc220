"""The one definition of time handling: everything is stored and shown in UTC. SQLite hands back naive
datetimes, which are UTC by this rule."""

from __future__ import annotations

from datetime import UTC, date, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """``value`` with its time zone; a naive datetime is UTC."""
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC, or None."""
    v = as_utc(value)
    return v.isoformat() if v else None


def to_datetime(value: date | datetime) -> datetime:
    """A date is midnight UTC of that day; a naive datetime is UTC."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)
