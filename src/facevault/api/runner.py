"""Vault work (model inference, SQLite, FAISS) runs in worker threads, never on the event loop, with
a deadline per request."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from .errors import ApiError

T = TypeVar("T")


async def run_sync(request: Any, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    timeout = request.app.state.api_settings.request_timeout_s
    try:
        with anyio.fail_after(timeout):
            return await anyio.to_thread.run_sync(
                functools.partial(fn, *args, **kwargs), abandon_on_cancel=True
            )
    except TimeoutError:
        raise ApiError(504, "timeout", f"the request took longer than {timeout:g} s") from None
