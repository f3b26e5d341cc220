"""Many probes searched in one process (``facevault search COLLECTION P1 P2 ...`` or ``--manifest``): the
models are loaded once, and each probe is an ordinary ``search`` with its own audit entry.

What is wrong with the request itself (unknown collection, no purpose, a top or threshold the caller may
not use) is refused once, before any probe is read, as a single search would refuse it (audited once).
What is wrong with one probe (unreadable file, no face...) is yielded as that probe's error, and the run
goes on.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from .. import imaging
from ..errors import FaceVaultError, InputError
from ..results import SearchResult
from .context import ImageInput, ServiceContext
from .search import checked_request, require_purpose, search

MAX_MANIFEST_BYTES = 16 * 1024 * 1024


def search_many(
    ctx: ServiceContext,
    collection: str,
    probes: Sequence[ImageInput],
    *,
    purpose: str,
    case_id: str | None = None,
    top_k: int = 5,
    fmr: float | None = None,
    threshold: float | None = None,
) -> Iterator[tuple[ImageInput, SearchResult | FaceVaultError]]:
    """``search`` of every probe, in order: (probe, its result or the error that stopped it)."""
    purpose = require_purpose(purpose)
    with ctx.read() as conn:
        coll = ctx.store.get_collection(conn, collection)
        samples = ctx.store.count_samples(conn, coll["id"])
    asked = {"purpose": purpose, "case_id": case_id, "collection": collection}
    checked_request(ctx, coll, samples, top_k, fmr, threshold, asked)
    for probe in probes:
        try:
            result = search(
                ctx,
                collection,
                probe,
                purpose=purpose,
                case_id=case_id,
                top_k=top_k,
                fmr=fmr,
                threshold=threshold,
            )
        except FaceVaultError as exc:
            yield probe, exc
        else:
            yield probe, result


def read_manifest(path: str | Path) -> list[str]:
    """The image paths of a probe manifest: a text file with one path per line (relative paths are
    relative to the manifest's folder; blank lines and lines starting with ``#`` are skipped)."""
    p = Path(path)
    try:
        text = imaging.read_file_bytes(p, MAX_MANIFEST_BYTES).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{p}: a manifest must be UTF-8 text", code="invalid_input") from None
    base = p.parent
    paths = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            paths.append(str(base / line) if not Path(line).is_absolute() else line)
    if not paths:
        raise InputError(f"{p}: the manifest names no image", code="invalid_input")
    return paths
