"""Token buckets, in memory (one server process per vault): one per API key for the requests it makes,
and one per client address for the failed authentications that come from it.

The second one exists because a request with a wrong key costs the server a store lookup in a worker
thread, and a flood of them slowed real searches down (issue 11, finding 13). An address whose bucket
is empty is answered 429 by the outermost middleware, before routing and before any store work. A key
that authenticated recently is exempt from its address's block (it is still checked against the store
and its own per-key limit), so a real user behind the same address (a NAT, a proxy, loopback) is not
locked out by an attacker next to them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import threading
import time
from collections.abc import Iterable


class RateLimiter:
    def __init__(self, per_minute: int, burst: int) -> None:
        self.rate = max(per_minute, 1) / 60.0
        self.burst = float(max(burst, 1))
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last time)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend one token for ``key``; returns 0 if allowed, else the seconds until one is free."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def give(self, key: str) -> None:
        """Give back one token spent by ``take`` (the request it was spent for did not count)."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate + 1.0)
            self._buckets[key] = (tokens, now)

    def prune(self, limit: int) -> None:
        """Keep at most ``limit`` buckets: over it, forget the full ones (they hold nothing), then the
        oldest down to 90% of ``limit``, so that the rebuild happens once per many new keys."""
        now = time.monotonic()
        with self._lock:
            if len(self._buckets) <= limit:
                return
            self._buckets = {
                k: (t, last)
                for k, (t, last) in self._buckets.items()
                if t + (now - last) * self.rate < self.burst
            }
            excess = len(self._buckets) - int(limit * 0.9)
            if excess > 0:
                for k in list(self._buckets)[:excess]:
                    del self._buckets[k]


def client_bucket(host: str | None) -> str:
    """The bucket of a client address: the address itself, or its /64 for IPv6 (one host usually
    holds a whole /64, so a per-address limit would be no limit at all)."""
    if not host:
        return "unknown"
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The API key a request carries (``X-API-Key`` first, then ``Authorization: Bearer``), as the
    authentication dependency reads it."""
    header_key = bearer = None
    for name, value in headers:
        lname = name.lower()
        if lname == b"x-api-key":
            header_key = value.decode("latin-1").strip()
        elif lname == b"authorization":
            scheme, _, rest = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and rest.strip():
                bearer = rest.strip()
    return header_key or bearer or None


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.strip().encode("utf-8", "surrogateescape")).digest()


class AuthFailureLimiter:
    """Failed authentications per client address (token bucket), with the recently good keys exempt."""

    MAX_ADDRESSES = 100_000
    MAX_GOOD_KEYS = 10_000

    def __init__(self, per_minute: int, burst: int, *, good_for_s: float = 600.0) -> None:
        self.buckets = RateLimiter(per_minute, burst)
        self.good_for_s = good_for_s
        self._good: dict[bytes, float] = {}  # digest of a key that authenticated -> until when
        self._lock = threading.Lock()

    def _known_good(self, key: str) -> bool:
        digest = _digest(key)
        with self._lock:
            until = self._good.get(digest)
        return until is not None and until > time.monotonic()

    def admit(self, host: str | None, key: str | None) -> tuple[float, bool]:
        """May a request from ``host`` carrying ``key`` try to authenticate? ``(0, charged)`` if so,
        else ``(seconds to wait, False)``. A key that is not known to be good is charged one token now,
        before its lookup, so that requests in flight together cannot overrun the bucket; a success
        gives the token back (``succeeded``). Cheap: no store, no thread. A request without a key is
        always admitted and never charged (its 401 costs nothing)."""
        if key is None or self._known_good(key):
            return 0.0, False
        bucket = client_bucket(host)
        wait = self.buckets.take(bucket)
        self.buckets.prune(self.MAX_ADDRESSES)
        return wait, wait == 0

    def refund(self, host: str | None) -> None:
        """Give back the token ``admit`` charged for a request that never tried its key."""
        self.buckets.give(client_bucket(host))

    def failed(self, host: str | None, key: str, *, charged: bool) -> None:
        """Count one failed authentication (a key that is malformed, unknown or revoked) from ``host``
        (already counted if ``charged``); a key that was good and is refused now (revoked) loses its
        exemption."""
        digest = _digest(key)
        with self._lock:
            self._good.pop(digest, None)
        if not charged:
            self.buckets.take(client_bucket(host))

    def succeeded(self, host: str | None, key: str, *, charged: bool) -> None:
        """Remember that ``key`` authenticated (a block on its address no longer stops it), and give
        back the token it was charged."""
        if charged:
            self.buckets.give(client_bucket(host))
        now = time.monotonic()
        digest = _digest(key)
        with self._lock:
            self._good.pop(digest, None)
            self._good[digest] = now + self.good_for_s
            if len(self._good) > self.MAX_GOOD_KEYS:
                self._good = {d: t for d, t in self._good.items() if t > now}
                for d in list(self._good)[: max(0, len(self._good) - self.MAX_GOOD_KEYS)]:
                    del self._good[d]
