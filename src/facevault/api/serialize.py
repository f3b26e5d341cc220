"""Service results to JSON: a typed result's ``to_dict()`` (its documented JSON), lists item by item,
anything else (a plain dict, a number, a string) as it is. Every route passes what the service returns
through :func:`to_json`, so the replies stay the same whichever form the service returns."""

from __future__ import annotations

from typing import Any


def to_json(obj: Any) -> Any:
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if isinstance(obj, list | tuple):
        return [to_json(item) for item in obj]
    return obj
