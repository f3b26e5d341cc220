"""Vault work (model inference, SQLite, FAISS) runs in a bounded pool of worker threads, never on the
event loop, with a bounded queue in front of it and a deadline per request.

Why bounded: a request that runs past its deadline gets its 504, but its work keeps running (a
half-written enrollment would be worse than a late one). With an unbounded pool that work piled up
and every later request, even a light one, waited behind it and timed out too (issue 11, finding 14).
Here a timed-out job keeps its thread and its request's place until it really ends, so the pool counts
it; when every place is taken, a new request is answered 503 with ``Retry-After`` at once, and a
waiting request whose deadline passes before a thread is free is answered 503 without ever starting.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import math
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import ApiError

T = TypeVar("T")


def overloaded(retry_after_s: float, message: str) -> ApiError:
    return ApiError(503, "overloaded", message, {"Retry-After": str(max(1, math.ceil(retry_after_s)))})


class Ticket:
    """One admitted request's place in the pool (``WorkPool.admit``). Held until the request has been
    answered *and* its last job has ended: a request that timed out keeps its place while its work
    still runs."""

    def __init__(self, pool: WorkPool) -> None:
        self.pool = pool
        self.jobs = 0  # submitted and not ended (guarded by the pool's lock)
        self.answered = False

    def close(self) -> None:
        """The request has been answered."""
        self.pool._close(self)


class WorkPool:
    """``threads`` worker threads and room for ``queue`` more requests waiting for one.

    The unit of admission is the request, not the job: a request's first job takes a ``Ticket``
    (``run_sync``; 503 at once when ``threads + queue`` are out, and the outermost middleware already
    answers that before reading the body when it sees the pool full), and the later jobs of an
    admitted request (authentication, then the use case) only wait for a thread, so a request that
    was let in is never refused halfway. ``submit`` without a ticket admits job by job."""

    def __init__(self, threads: int, queue: int, *, retry_after_s: float = 1.0) -> None:
        self.threads = max(1, int(threads))
        self.queue = max(0, int(queue))
        self.retry_after_s = retry_after_s
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.threads, thread_name_prefix="facevault-work"
        )
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._tickets = 0  # admitted requests not yet let go (see Ticket)
        self._loose = 0  # jobs without a ticket, accepted and not ended

    @property
    def capacity(self) -> int:
        return self.threads + self.queue

    @property
    def pending(self) -> int:
        """Requests (and ticketless jobs) holding a place."""
        with self._lock:
            return self._tickets + self._loose

    def full(self) -> bool:
        with self._lock:
            return self._tickets + self._loose >= self.capacity

    def busy_error(self) -> ApiError:
        return overloaded(
            self.retry_after_s,
            f"the server is busy ({self.capacity} requests at work or waiting); retry later",
        )

    def admit(self) -> Ticket | None:
        """A place for one request, or None when every place is taken (answer 503)."""
        with self._lock:
            if self._tickets + self._loose >= self.capacity:
                return None
            self._tickets += 1
        return Ticket(self)

    def _let_go(self) -> None:  # with the lock held
        if self._tickets + self._loose == 0:
            self._idle.notify_all()

    def _close(self, ticket: Ticket) -> None:
        with self._lock:
            if ticket.answered:
                return
            ticket.answered = True
            if ticket.jobs == 0:
                self._tickets -= 1
                self._let_go()

    def _ended(self, ticket: Ticket | None) -> None:
        with self._lock:
            if ticket is None:
                self._loose -= 1
            else:
                ticket.jobs -= 1
                if ticket.answered and ticket.jobs == 0:
                    self._tickets -= 1
            self._let_go()

    def submit(self, fn: Callable[[], T], ticket: Ticket | None = None) -> concurrent.futures.Future[T]:
        """Queue ``fn`` for a thread. Without a ticket, raise the 503 at once when the pool is full."""
        with self._lock:
            if ticket is not None:
                ticket.jobs += 1
            elif self._tickets + self._loose >= self.capacity:
                raise self.busy_error()
            else:
                self._loose += 1

        def job() -> T:
            try:
                return fn()
            finally:
                self._ended(ticket)

        try:
            future = self._executor.submit(job)
        except RuntimeError:  # shut down: the server is stopping
            self._ended(ticket)
            raise overloaded(self.retry_after_s, "the server is shutting down") from None
        # A job cancelled before it started never runs ``job``, so it is ended here.
        future.add_done_callback(lambda f: self._ended(ticket) if f.cancelled() else None)
        return future

    async def run(self, fn: Callable[[], T], timeout: float, ticket: Ticket | None = None) -> T:
        """Run ``fn`` in the pool within ``timeout`` seconds (waiting for a thread included)."""
        context = contextvars.copy_context()
        future = self.submit(functools.partial(context.run, fn), ticket)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except TimeoutError:
            # wait_for cancelled the wrapper, which cancels the job if it had not started.
            if future.cancelled():
                raise overloaded(
                    self.retry_after_s,
                    f"the server is busy: no worker was free within {timeout:g} s; retry later",
                ) from None
            raise ApiError(504, "timeout", f"the request took longer than {timeout:g} s") from None

    def drain(self, timeout: float) -> bool:
        """Wait until no request holds a place and no job runs or waits (a timed-out job too: its
        thread is still at work); False if some still do after ``timeout`` seconds."""
        with self._idle:
            return self._idle.wait_for(lambda: self._tickets + self._loose == 0, timeout)

    def close(self, timeout: float = 30.0) -> bool:
        """Stop taking work, drop what is queued and wait up to ``timeout`` s for running jobs, so that
        the vault is not closed under a write that is still going on; False if one still runs."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        return self.drain(timeout)


async def run_sync(request: Any, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in the app's work pool, within the request deadline, under the
    request's ticket (taken here by its first job, closed by the middleware once it is answered)."""
    state = request.app.state
    pool: WorkPool = state.work_pool
    ticket = getattr(request.state, "work_ticket", None)
    if ticket is None:  # the request's first job takes its place; the middleware lets it go
        ticket = pool.admit()
        if ticket is None:
            raise pool.busy_error()
        request.state.work_ticket = ticket
    return await pool.run(
        functools.partial(fn, *args, **kwargs), state.api_settings.request_timeout_s, ticket
    )
