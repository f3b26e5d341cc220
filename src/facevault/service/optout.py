"""Opt-out by selfie: erase everyone whose samples match the face, in one collection or all, and keep a
protected opt-out template that blocks later enrollments of that face (checked by ``optout_guard``).

An opt-out from everything reaches the photo libraries too (``library_erasure.erase_matching``): the
matching faces are erased and blurred in the libraries' kept copies; the report and the audit entry
count the photos blurred (``library_photos_blurred``) and those left as they are because they are
indexed by a server path facevault does not own (``library_photos_not_owned``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import faults
from ..audit_events import OptedOut
from ..errors import FaceVaultError, ModelError, NoFaceError
from ..models.registry import get_pack
from ..protection import TemplateKey
from ..results import ErasureReceipt, OptoutReport
from .collections import get_collection, list_collections
from .context import Collection, ImageInput, ServiceContext
from .erasure import erase_subject
from .library_erasure import erase_matching
from .optout_guard import OptoutGuard, OptoutSet
from .search import find_candidates

MAX_ERASED_PER_COLLECTION = 1000


@dataclass(eq=False)
class LibraryOptoutReport(OptoutReport):
    """An opt-out's report with what it did to the photo libraries (all empty or 0 for an opt-out from
    one collection): the people erased ([library, person number]), the photos whose kept copy was
    blurred, and those indexed by a server path (faces erased, file not written: facevault does not own
    it). Fields of the report itself, so the REST answer and ``--json`` carry them too."""

    library_people_erased: list[list[Any]] = field(default_factory=list)
    library_photos_blurred: int = 0
    library_photos_not_owned: int = 0


def optout_context(row: dict[str, Any]) -> bytes:
    """Associated data binding an opt-out template to its model, scope and dimension."""
    return f"optout:{row['model_id']}:{row['scope']}:{row['dim']}".encode()


def open_optout(ctx: ServiceContext, row: dict[str, Any]) -> np.ndarray:
    """An opt-out row's raw (unprotected) embedding."""
    k = ctx.keys.key(row["key_version"])
    return k.unprotect(k.open(row["vector"], optout_context(row), row["dim"]))


def optout_guard(
    ctx: ServiceContext, coll: Collection, key: TemplateKey, rows: list[dict[str, Any]] | None = None
) -> OptoutGuard:
    """The opt-out templates that apply to this collection, protected under ``key``, grouped by the model
    that made them. Refused (``model_unavailable``) when some were made by a pack that can no longer be
    loaded: enrollments could not be checked against them. ``rows``: the collection's opt-out rows, when
    the caller has read them in its own transaction."""
    if rows is None:
        with ctx.read() as conn:
            rows = ctx.store.optouts_for(conn, None, coll["name"])
    by_model: dict[str, list[np.ndarray]] = {}
    for r in rows:
        by_model.setdefault(r["model_id"], []).append(key.protect(open_optout(ctx, r)))
    sets = {}
    for model_id, vecs in by_model.items():
        if model_id != coll["model_id"]:
            try:
                get_pack(model_id)
            except FaceVaultError as exc:
                raise ModelError(
                    f"opt-outs recorded with model {model_id!r} apply to collection {coll['name']!r}, "
                    f"but that model cannot be loaded ({exc.message}); install it again so that "
                    "enrollments can be checked against them"
                ) from exc
        sets[model_id] = OptoutSet(model_id, np.stack(vecs), ctx.strict_threshold(model_id))
    own = sets.pop(coll["model_id"], None)
    return OptoutGuard(key, own, [sets[m] for m in sorted(sets)])


def library_optout_guard(
    ctx: ServiceContext, library: dict[str, Any], key: TemplateKey, rows: list[dict[str, Any]] | None = None
) -> OptoutGuard:
    """The opt-outs that apply to a photo library (those of every collection: scope ``*``), for
    ``library add``: a face that matches one is never stored."""
    if rows is None:
        with ctx.read() as conn:
            rows = ctx.store.optouts_for(conn, None, "*")
    target = {"name": f"library {library['name']}", "model_id": library["model_id"]}
    return optout_guard(ctx, target, key, [r for r in rows if r["scope"] == "*"])


def optout(ctx: ServiceContext, photo: ImageInput, *, collection: str | None = None) -> LibraryOptoutReport:
    """Erase every subject whose samples match the (largest) face in ``photo`` at the strict threshold, in
    one collection or all, and keep a protected opt-out template that blocks later enrollments. The strict
    threshold also keeps the expected number of wrongly erased people per opt-out below the setting.

    The templates (one per model) are stored first, in one transaction: from then on the face is blocked,
    even if the process dies before the erasures are done; ``finish_pending_optouts`` finishes those at
    the next open. No template is stored when a model finds no face."""
    decoded = ctx.decode(photo)
    colls = [get_collection(ctx, collection)] if collection else list_collections(ctx)
    models = sorted({c["model_id"] for c in colls}) or [ctx.settings.default_model]
    if collection is None:
        models = sorted(set(models) | library_models(ctx))
    scope = collection or "*"
    raws: dict[str, np.ndarray] = {}
    for model_id in models:
        faces = ctx.pipeline(model_id).analyze(decoded.pixels)
        if not faces:
            with ctx.write() as conn:
                ctx.log(conn, OptedOut(collection=collection, probe_sha256=decoded.sha256, outcome="no_face"))
            raise NoFaceError("no face was found in the opt-out photo")
        raws[model_id] = faces[0].embedding
    key = ctx.current_key()
    with ctx.write() as conn:
        optout_ids = [_store_template(ctx, conn, key, model_id, scope, raw) for model_id, raw in raws.items()]
    faults.point("optout:stored")
    done = OptoutErasures()
    for model_id, raw in raws.items():
        done.add(_erase_matches(ctx, model_id, raw, colls, collection))
    faults.point("optout:erased")
    with ctx.write() as conn:
        ctx.store.finish_optouts(conn, optout_ids)
        seq = ctx.log(conn, done.event(collection, decoded.sha256, "ok", scope, optout_ids))
    return LibraryOptoutReport(
        scope=scope,
        optout_ids=optout_ids,
        erased=done.erased,
        audit_seq=seq,
        library_people_erased=done.people(),
        library_photos_blurred=done.photos_blurred,
        library_photos_not_owned=done.photos_not_owned,
    )


@dataclass
class OptoutErasures:
    """What an opt-out's erasures did, over its models."""

    erased: list[ErasureReceipt] = field(default_factory=list)
    library_erased: list[dict[str, Any]] = field(default_factory=list)
    photos_blurred: int = 0
    photos_not_owned: int = 0

    def add(self, other: OptoutErasures) -> None:
        self.erased += other.erased
        self.library_erased += other.library_erased
        self.photos_blurred += other.photos_blurred
        self.photos_not_owned += other.photos_not_owned

    def people(self) -> list[list[Any]]:
        return [[r["library"], r["person"]] for r in self.library_erased]

    def event(
        self, collection: str | None, probe_sha256: str | None, outcome: str, scope: str, ids: list[int]
    ) -> OptedOut:
        everything = collection is None
        return OptedOut(
            collection=collection,
            probe_sha256=probe_sha256,
            outcome=outcome,
            scope=scope,
            optout_ids=ids,
            subjects_erased=[e.subject_id for e in self.erased],
            library_people_erased=self.people() or None,
            library_photos_blurred=self.photos_blurred if everything else None,
            library_photos_not_owned=self.photos_not_owned if everything else None,
        )


def _store_template(
    ctx: ServiceContext, conn: Any, key: TemplateKey, model_id: str, scope: str, raw: np.ndarray
) -> int:
    context_row = {"model_id": model_id, "scope": scope, "dim": int(raw.shape[0])}
    return ctx.store.add_optout(
        conn,
        model_id=model_id,
        dim=int(raw.shape[0]),
        scope=scope,
        vector=key.seal(key.protect(raw), optout_context(context_row)),
        key_version=key.version,
    )


def _erase_matches(
    ctx: ServiceContext, model_id: str, raw: np.ndarray, colls: list[Collection], collection: str | None
) -> OptoutErasures:
    """Erase the subjects of ``colls`` on ``model_id`` that match ``raw``, and, for an opt-out from
    everything (``collection`` None), the matching people of every photo library on that model. Each
    erasure is its own transaction, and running this again erases nothing twice."""
    s = ctx.settings
    out = OptoutErasures()
    for coll in (c for c in colls if c["model_id"] == model_id):
        with ctx.read() as conn:
            n = ctx.store.count_samples(conn, coll["id"])
        strict = ctx.strict_threshold(model_id, min(s.conflict_fmr, s.optout_max_false_erasures / max(n, 1)))
        for cand in find_candidates(ctx, coll, raw, MAX_ERASED_PER_COLLECTION, strict):
            out.erased.append(erase_subject(ctx, coll["name"], f"#{cand.subject_id}", reason="opt_out"))
    if collection is None:  # an opt-out from everything reaches every photo library too
        done = erase_matching(ctx, raw, model_id, reason="opt_out")
        out.library_erased += done.receipts
        out.photos_blurred += done.photos_blurred
        out.photos_not_owned += done.photos_not_owned
    return out


def finish_pending_optouts(ctx: ServiceContext) -> int:
    """Finish the erasures of opt-outs a crash interrupted (their templates were stored, ``finished_at``
    is NULL), each with an audit entry of outcome ``finished_at_open``. Returns how many were finished."""
    with ctx.read() as conn:
        pending = ctx.store.pending_optouts(conn)
    if not pending:
        return 0
    everyone = list_collections(ctx)
    for row in pending:
        scope = row["scope"]
        collection = None if scope == "*" else scope
        colls = [c for c in everyone if collection is None or c["name"] == collection]
        done = _erase_matches(ctx, row["model_id"], open_optout(ctx, row), colls, collection)
        with ctx.write() as conn:
            ctx.store.finish_optouts(conn, [row["id"]])
            ctx.log(conn, done.event(collection, None, "finished_at_open", scope, [row["id"]]))
    return len(pending)


def library_models(ctx: ServiceContext) -> set[str]:
    with ctx.read() as conn:
        return {lib["model_id"] for lib in ctx.store.list_libraries(conn)}
