"""Erasure: every template, sample, crop, image record, review record, index entry and the consent record
of a subject, with a receipt (counts and hashes, no biometric data) in the audit log, and the photo
copies the server kept.

What cannot be inside the store transaction (index entries, photo files, the pages SQLite's write-ahead
log still holds) is recorded in it as a pending erasure, so that an erasure a crash interrupted after its
commit is finished at the next open of the vault (``finish_pending_erasures``) or by ``doctor --repair``,
instead of leaving a face behind that no row points to any more.

Fault points, in order: ``erase:before_commit`` (inside the transaction), ``erase:db_committed``,
``erase:index_updated``, ``erase:files_removed`` (the pending record not cleared yet).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection

from .. import faults
from ..audit_events import SubjectErased
from ..errors import FaceVaultError
from ..results import ErasureReceipt
from . import library_snapshot
from .context import ServiceContext
from .photos import remove_copies, sweep_staging
from .review import sweep_probes

log = logging.getLogger("facevault")


def erase_subject(
    ctx: ServiceContext,
    collection: str,
    subject: str,
    *,
    reason: str = "erasure_request",
    first: Callable[[Connection, dict[str, Any]], None] | None = None,
) -> ErasureReceipt:
    """Erase the subject ``subject`` names (store/refs.py). ``first``: more to do in the same
    transaction before the erasure, given the subject's row (consent withdrawal records itself)."""
    with ctx.read() as conn:
        coll = ctx.store.get_collection(conn, collection)
    with ctx.indexes.committing(coll) as change:
        with ctx.write() as conn:
            coll = ctx.store.get_collection(conn, collection)
            subj = ctx.store.find_subject(conn, coll["id"], subject)
            if first is not None:
                first(conn, subj)
            gone = ctx.store.delete_subject(conn, subj)
            pending_id = ctx.store.add_pending_erasure(
                conn, coll["id"], subj["id"], gone["sample_ids"], gone["image_sha256"]
            )
            receipt = {
                "subject_id": subj["id"],
                "reason": reason,
                "samples_erased": len(gone["sample_ids"]),
                "crops_erased": gone["crops"],
                "images_erased": len(gone["image_sha256"]),
                "image_sha256": gone["image_sha256"],
                "consent_id": gone["consent_id"],
                "consent_evidence_sha256": gone["consent_evidence_sha256"],
            }
            seq = ctx.log(conn, SubjectErased(collection=collection, receipt=receipt))
            faults.point("erase:before_commit")
        faults.point("erase:db_committed")
        change.remove(gone["sample_ids"])
    faults.point("erase:index_updated")
    removed = remove_copies(ctx.settings, coll["id"], gone["image_sha256"])
    sweep_probes(ctx)  # kept review probes of searches whose candidates went with the subject
    faults.point("erase:files_removed")
    with ctx.write() as conn:
        ctx.store.clear_pending_erasure(conn, pending_id)
    ctx.store.checkpoint()  # last: the erased rows' old pages leave the write-ahead log
    return ErasureReceipt(
        collection=collection, name=subj["name"], audit_seq=seq, photos_removed=removed, **receipt
    )


def _finish(ctx: ServiceContext, pending: dict[str, Any]) -> bool:
    """Finish one interrupted erasure: its index entries and photo copies; True when nothing is left."""
    with ctx.read() as conn:
        coll = ctx.store.collection_by_id(conn, pending["collection_id"])
    if coll is not None and pending["sample_ids"]:
        try:
            with ctx.indexes.committing(coll) as change:
                change.remove(pending["sample_ids"])
        except (FaceVaultError, OSError) as exc:  # e.g. an index server that is down: try again later
            log.warning("erasure of subject #%s not finished: %s", pending["subject_id"], exc)
            return False
    remove_copies(ctx.settings, pending["collection_id"], pending["image_sha256"])
    with ctx.write() as conn:
        ctx.store.clear_pending_erasure(conn, pending["id"])
    return True


def finish_pending_erasures(ctx: ServiceContext) -> int:
    """Finish erasures a crash interrupted after their commit (index entries, photo copies, the pages
    left in SQLite's write-ahead log), and what killed photo writers left in the staging area (see
    service/photos.py). Returns how many erasures were finished."""
    with ctx.read() as conn:
        pending = ctx.store.pending_erasures(conn)
    finished = sum(1 for p in pending if _finish(ctx, p))
    sweep_staging(ctx)
    library_snapshot.sweep(ctx)  # library vectors on disk that an erasure or a key rotation made stale
    if pending:
        sweep_probes(ctx)
        ctx.store.checkpoint()
    return finished
