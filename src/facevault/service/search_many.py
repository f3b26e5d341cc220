"""Many probes searched in one process (``facevault search COLLECTION P1 P2 ...`` or ``--manifest``): each
probe is an ordinary search with its own audit entry, and the models are loaded once.

The probes are decoded and analysed (detect, align, embed) over worker processes, each with its own
models, while this process searches the analysed faces and writes the audit entries, in probe order.
Fewer than ``MIN_PROBES_FOR_WORKERS`` probes (or ``workers`` 1) are analysed here instead: starting a
worker costs about a second.

What is wrong with the request itself (unknown collection, no purpose, a top or threshold the caller may
not use) is refused once, before any probe is read, as a single search would refuse it (audited once).
What is wrong with one probe (unreadable file, no face...) is audited and yielded as that probe's error,
and the run goes on. The threshold is fixed once for the whole run, from the gallery's size at its start.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import imaging
from ..errors import FaceVaultError, InputError
from ..pipeline import Pipeline, ProcessedFace, map_with_pipeline, worker_count
from ..results import SearchResult
from .context import ImageInput, ServiceContext
from .search import SearchRequest, audit_failure, checked_request, conclude, require_purpose

MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MIN_PROBES_FOR_WORKERS = 8


@dataclass(frozen=True)
class ProbeFailure:
    """A probe's FaceVaultError as it crosses a process boundary (an exception pickles only its message)."""

    kind: type[FaceVaultError]
    message: str
    code: str
    details: dict[str, Any] | None

    @classmethod
    def of(cls, exc: FaceVaultError) -> ProbeFailure:
        return cls(type(exc), exc.message, exc.code, exc.details)

    def error(self) -> FaceVaultError:
        try:
            return self.kind(self.message, code=self.code, details=self.details)
        except TypeError:  # a subclass with its own constructor
            return InputError(self.message, code=self.code, details=self.details)


Analysed = tuple[str, list[ProcessedFace]] | ProbeFailure


def analyse_probe(pipeline: Pipeline, job: tuple[ImageInput, int, int]) -> Analysed:
    """(SHA-256, faces) of one probe, or its failure; runs in a worker (module level, never raises a
    FaceVaultError)."""
    probe, max_bytes, max_pixels = job
    try:
        decoded = imaging.decode_input(probe, max_bytes=max_bytes, max_pixels=max_pixels)
        return decoded.sha256, pipeline.analyze(decoded.pixels)
    except FaceVaultError as exc:
        return ProbeFailure.of(exc)


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
    workers: int | None = None,
) -> Iterator[tuple[ImageInput, SearchResult | FaceVaultError]]:
    """A search of every probe, in order: (probe, its result or the error that stopped it).
    ``workers``: analysis processes (default: the ``workers`` setting, else one per core)."""
    purpose = require_purpose(purpose)
    with ctx.read() as conn:
        coll = ctx.store.get_collection(conn, collection)
        samples = ctx.store.count_samples(conn, coll["id"])
    asked = {"purpose": purpose, "case_id": case_id, "collection": collection}
    thr, thr_fmr = checked_request(ctx, coll, samples, top_k, fmr, threshold, asked)
    request = SearchRequest(coll, collection, purpose, case_id, top_k, thr, thr_fmr)
    s = ctx.settings
    jobs = [(p, s.max_image_bytes, s.max_image_pixels) for p in probes]
    n = worker_count(s) if workers is None else workers
    if n > 1 and len(jobs) >= MIN_PROBES_FOR_WORKERS:
        analysed: Iterator[Analysed] = map_with_pipeline(
            analyse_probe,
            jobs,
            model_id=coll["model_id"],
            settings=ctx.collection_settings(coll),
            workers=n,
            chunksize=2,
        )
    else:
        pipeline = ctx.collection_pipeline(coll)
        analysed = (analyse_probe(pipeline, job) for job in jobs)
    for probe, outcome in zip(probes, analysed, strict=True):
        if isinstance(outcome, ProbeFailure):
            exc = outcome.error()
            audit_failure(ctx, exc, **asked)
            yield probe, exc
            continue
        try:
            yield probe, conclude(ctx, request, *outcome)
        except FaceVaultError as exc:
            yield probe, exc


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
