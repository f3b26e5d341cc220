"""Analyse a one-off probe in a forked child while this process opens the vault.

A one-off ``facevault search`` spends most of its time starting up: importing the store and audit stack
(SQLAlchemy alone is ~0.25 s) and loading the detector, landmark model and ONNX session (~0.3 s). The two
do not depend on each other, so on a machine with a free core they can run at the same time: the child
decodes the probe and runs the pipeline of the vault's default model; the parent goes on opening the
store and reading the collection. The parent then uses the child's faces only if they were computed by
the pipeline it would have used itself (same model, detector and settings: ``Pipeline.signature``) on the
same bytes (same SHA-256); otherwise, or if the child failed or took too long, it analyses the probe
itself. The child never opens the store, the keys or the audit log, and its result is only ever a hint:
what is searched, and what is audited, is decided by the parent exactly as without it.

This module imports nothing heavy at module level (it runs before the vault is opened)."""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import sys
import threading
import time
from types import TracebackType
from typing import Any

from ..config import prefetch_setting

WAIT_SECONDS = 30.0  # longer than any sane analysis of one probe; then the parent does it itself
# A fork copies the parent's thread pools and locks mid-use; once these libraries run (or any other
# thread does), a forked child can hang. A cold CLI process has neither, a test runner or server may.
RUNTIMES = ("onnxruntime", "faiss", "dlib", "torch")


def fork_is_safe() -> bool:
    """Whether this process may fork a child that loads models: one thread, no model runtime loaded."""
    return (
        hasattr(os, "fork")
        and threading.active_count() == 1
        and not any(name in sys.modules for name in RUNTIMES)
    )


class ProbeAnalysis:
    """The faces of one probe photo, computed by a forked child (``start``) and claimed by the search
    (``faces_for``). Use as a context manager: leaving it kills and reaps a child still running."""

    def __init__(self, pid: int | None, read_fd: int | None) -> None:
        self._pid = pid
        self._fd = read_fd
        self._result: dict[str, Any] | None = None

    @classmethod
    def start(cls, path: str, home: str | os.PathLike[str] | None) -> ProbeAnalysis:
        """Fork a child that analyses the photo at ``path`` with the default model of the vault at
        ``home``. Where forking is not safe (``fork_is_safe``) or ``FACEVAULT_PREFETCH=0``, nothing is
        started and the search analyses the probe itself."""
        if not prefetch_setting() or not fork_is_safe():
            return cls(None, None)
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(read_fd)
            _child(path, home, write_fd)
        os.close(write_fd)
        return cls(pid, read_fd)

    @property
    def started(self) -> bool:
        return self._pid is not None or self._result is not None

    def faces_for(self, pipeline: Any, sha256: str) -> list[Any] | None:
        """The child's faces if it analysed these bytes (``sha256``) with a pipeline of the same
        ``signature`` as ``pipeline``; else None (the caller analyses the probe itself)."""
        result = self._collect()
        if not result or result.get("sha256") != sha256 or result.get("signature") != pipeline.signature():
            return None
        faces = result.get("faces")
        return faces if isinstance(faces, list) else None

    def _collect(self) -> dict[str, Any] | None:
        if self._fd is not None:
            self._result = _read_result(self._fd, WAIT_SECONDS)
            os.close(self._fd)
            self._fd = None
            self._reap()
        return self._result

    def _reap(self) -> None:
        if self._pid is None:
            return
        with contextlib.suppress(ProcessLookupError):  # done or stuck: it has nothing more to say
            os.kill(self._pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self._pid, 0)
        self._pid = None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._reap()

    def __enter__(self) -> ProbeAnalysis:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _read_result(fd: int, timeout: float) -> dict[str, Any] | None:
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None  # too slow: the parent analyses the probe itself
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    try:
        result = pickle.loads(b"".join(chunks))  # our own child's bytes, over a private pipe
    except Exception:
        return None
    return result if isinstance(result, dict) else None


def _child(path: str, home: str | os.PathLike[str] | None, write_fd: int) -> None:
    """Decode and analyse, write the pickled result, and leave without running the parent's exit
    handlers or flushing its buffered output (``os._exit``)."""
    code = 0
    try:
        from .. import imaging
        from ..config import load_settings
        from ..pipeline import Pipeline

        settings = load_settings(home)
        decoded = imaging.load_image(
            path, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels
        )
        pipeline = Pipeline.for_model(settings.default_model, settings)
        faces = pipeline.analyze(decoded.pixels)
        payload = {"sha256": decoded.sha256, "signature": pipeline.signature(), "faces": faces}
        data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(data)
        while view:
            view = view[os.write(write_fd, view) :]
    except BaseException:  # any failure only means the parent does the work itself
        code = 1
    finally:
        os._exit(code)
