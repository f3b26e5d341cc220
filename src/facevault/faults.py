"""Named fault points: places in a use case where a test may stop the process (``kill -9`` at an exact
step) or run something else in between (another writer, a migration), without wrapping private methods.

``point(name)`` does nothing unless ``FACEVAULT_CRASH_AT=name`` (the process kills itself with SIGKILL,
as ``kill -9`` would) or a test registered a hook for ``name`` with ``hooked(name, fn)``.

The points, in the order a use case passes them:
- ``enroll:checked``: enrollment has read the collection and judged every image, nothing stored yet
- ``enroll:db_committed``: the enrollment's store transaction committed, the index not updated yet
- ``photos:staged`` / ``photos:enrolled`` / ``photos:placed``: an uploaded photo's copy in the staging
  area, its enrollment committed, the copy moved into place (service/photos.py)
- ``library:copies_staged`` / ``library:photos_committed`` / ``library:copy_placed``: a chunk of uploaded
  library photos staged, its rows committed, a copy moved into place (service/library_ingest.py)
- ``library_erase:committed``: a library erasure committed, kept copies not blurred or removed yet
- ``erase:before_commit`` / ``erase:db_committed``: inside / after the erasure's store transaction
- ``erase:index_updated`` / ``erase:files_removed``: the index, then the photo copies, brought in line
- ``migrate:reembedded``: every crop re-embedded, nothing stored yet
- ``migrate:before_commit`` / ``migrate:db_committed``
- ``rotate:key_added`` / ``rotate:indexes_dropped`` / ``rotate:before_commit`` / ``rotate:db_committed``
- ``search:shortlisted``: the index gave a shortlist, the stored templates are not read yet
- ``audit:committed``: any audited write transaction committed, the audit head file not written yet
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .config import fault_setting

_hooks: dict[str, list[Callable[[], None]]] = {}
_lock = threading.Lock()


def point(name: str) -> None:
    """Pass the fault point ``name``."""
    if fault_setting() == name:
        os.kill(os.getpid(), signal.SIGKILL)
    with _lock:
        hooks = list(_hooks.get(name, ()))
    for hook in hooks:
        hook()


@contextmanager
def hooked(name: str, fn: Callable[[], None], *, once: bool = False) -> Iterator[None]:
    """Run ``fn`` each time (or only the first time, ``once``) this process passes ``name``."""
    fired = False

    def hook() -> None:
        nonlocal fired
        if once and fired:
            return
        fired = True
        fn()

    with _lock:
        _hooks.setdefault(name, []).append(hook)
    try:
        yield
    finally:
        with _lock:
            _hooks[name].remove(hook)
