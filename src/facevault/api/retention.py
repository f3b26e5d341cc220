"""The server's retention sweep: once when the server starts (before it answers any request, so nobody
can be searched whose data is already due for destruction) and then on a timer (daily by default).

The timer is an asyncio task that sleeps on the event loop and runs each sweep in a worker thread; the
app's lifespan cancels it on shutdown. ``clock`` lets a test sweep "as of" a later time instead of
waiting for one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import anyio.to_thread

from ..errors import FaceVaultError
from ..service import Vault

log = logging.getLogger("facevault.api")
ACTOR = "server:retention"


class RetentionSweeper:
    def __init__(self, vault: Vault, interval_s: float, clock: Callable[[], datetime] | None = None) -> None:
        self.vault = vault.acting_as(ACTOR, role="system")
        self.interval_s = interval_s
        self.clock = clock
        self.last: dict[str, Any] | None = None  # the newest sweep's report (or its error code)
        self.runs = 0
        self.task: asyncio.Task[None] | None = None

    def sweep_now(self) -> dict[str, Any]:
        """One sweep, in the calling thread. A failure is logged by code and reported, never raised: the
        next sweep tries again."""
        now = self.clock() if self.clock else None
        try:
            report = self.vault.retention_sweep(now=now)
            self.last = {"ok": True, "swept_at": report["swept_at"], "erased": len(report["erased"])}
        except FaceVaultError as exc:
            log.error("retention sweep failed: %s", exc.code)
            self.last = {"ok": False, "error": exc.code}
        except Exception as exc:  # keep serving; the next sweep retries
            log.error("retention sweep failed: %s", type(exc).__name__)
            self.last = {"ok": False, "error": type(exc).__name__}
        self.runs += 1
        return self.last

    async def start(self) -> None:
        """The start-up sweep (awaited), then the periodic task."""
        await anyio.to_thread.run_sync(self.sweep_now)
        if self.interval_s > 0:
            self.task = asyncio.create_task(self._loop(), name="facevault-retention-sweep")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await anyio.to_thread.run_sync(self.sweep_now)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
