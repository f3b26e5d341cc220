"""Resumable HTTP downloads for ``models fetch``: a ``.part`` file grows until the whole file is there.

A download that breaks off keeps its ``.part`` file; the next attempt asks the server for the rest
(``Range: bytes=N-``) and appends it when the server answers ``206`` from byte N, or starts again when it
answers the whole file (``200``: no range support, or ``file:`` URLs). Whether the bytes are the right
ones is the caller's check (SHA-256), made on the complete file.

Progress goes to the ``progress(done, total)`` callback when given, else to the logger
``facevault.models.fetch`` (INFO, at most every 5% and at the end, with ``done``, ``total`` and
``file`` attributes): an edge can render it without reaching into this module.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import logging
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from ...errors import ConflictError

CHUNK = 1 << 16
TIMEOUT_S = 60
USER_AGENT = "facevault-models-fetch"
LOG = logging.getLogger("facevault.models.fetch")

Progress = Callable[[int, int | None], None]

_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class DownloadInterrupted(OSError):
    """The transfer stopped before the whole file came; the ``.part`` file keeps what did."""

    def __init__(self, url: str, done: int, total: int | None, reason: str) -> None:
        of = f" of {total}" if total is not None else ""
        super().__init__(f"{url}: interrupted after {done}{of} bytes ({reason})")
        self.done, self.total = done, total


def log_progress(label: str, step: float = 0.05) -> Progress:
    """A progress callback that logs to ``facevault.models.fetch``, at most every ``step`` of the file."""
    last = [-1.0]

    def report(done: int, total: int | None) -> None:
        frac = done / total if total else 0.0
        final = total is not None and done >= total
        if not final and total and frac - last[0] < step:
            return
        last[0] = frac
        size = f"{done / 1e6:.1f} of {total / 1e6:.1f} MB ({frac:.0%})" if total else f"{done / 1e6:.1f} MB"
        LOG.info("%s: %s", label, size, extra={"done": done, "total": total, "file": label})

    return report


@contextlib.contextmanager
def _locked(part: Path) -> Iterator[BinaryIO]:
    """The ``.part`` file opened for appending, locked against a second fetch of the same file."""
    fh = open(part, "ab")  # noqa: SIM115 - closed below
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise ConflictError(f"{part} is being downloaded by another process", code="fetch_busy") from exc
        yield fh
    finally:
        fh.close()


def _content_range(value: str | None) -> tuple[int, int | None] | None:
    """(first byte, total or None) of a ``Content-Range: bytes a-b/n`` header."""
    m = _RANGE.match((value or "").strip())
    if not m:
        return None
    return int(m.group(1)), None if m.group(3) == "*" else int(m.group(3))


def _unsatisfiable_total(exc: urllib.error.HTTPError) -> int | None:
    """The total size a ``416`` answer gives (``Content-Range: bytes */n``), if any."""
    m = re.match(r"^bytes \*/(\d+)$", (exc.headers.get("Content-Range") or "").strip())
    return int(m.group(1)) if m else None


def download(url: str, part: Path, progress: Progress | None = None) -> int:
    """Bring ``part`` to the complete content of ``url``, resuming what it holds; its size in bytes.

    Raises ``DownloadInterrupted`` (the part file kept) when the transfer stops early, another
    ``OSError`` (``urllib.error.URLError``, ``HTTPError``) when it cannot start."""
    report = progress or log_progress(part.name.removesuffix(".part"))
    part.parent.mkdir(parents=True, exist_ok=True)
    with _locked(part) as fh:
        offset = fh.seek(0, 2)
        headers = {"User-Agent": USER_AGENT}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
        except urllib.error.HTTPError as exc:
            if exc.code != 416 or not offset:
                raise
            total = _unsatisfiable_total(exc)
            if total == offset:  # the part file already holds the whole file
                report(offset, total)
                return offset
            fh.truncate(0)  # longer than the file, or unknown: start again
            offset = 0
            resp = urllib.request.urlopen(
                urllib.request.Request(url, headers={"User-Agent": USER_AGENT}), timeout=TIMEOUT_S
            )
        with resp:
            status = getattr(resp, "status", None)
            got = _content_range(resp.headers.get("Content-Range")) if status == 206 else None
            if offset and (got is None or got[0] != offset):
                fh.truncate(0)  # the server sent the whole file (or another range): start again
                offset = 0
            length_raw = resp.headers.get("Content-Length")
            length = int(length_raw) if length_raw and length_raw.isascii() and length_raw.isdigit() else None
            total = offset + length if length is not None else None
            if got and got[1] is not None:
                total = got[1]
            done = offset
            try:
                while block := resp.read(CHUNK):
                    fh.write(block)
                    done += len(block)
                    report(done, total)
            except (OSError, http.client.HTTPException) as exc:
                fh.flush()
                raise DownloadInterrupted(url, done, total, str(exc) or type(exc).__name__) from exc
            fh.flush()
            if total is not None and done < total:
                raise DownloadInterrupted(url, done, total, "the connection closed early")
            if total is None:
                report(done, done)
            return done
