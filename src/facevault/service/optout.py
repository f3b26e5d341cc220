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
    threshold also keeps the expected number of wrongly erased people per opt-out below the setting."""
    decoded = ctx.decode(photo)
    colls = [get_collection(ctx, collection)] if collection else list_collections(ctx)
    models = sorted({c["model_id"] for c in colls}) or [ctx.settings.default_model]
    if collection is None:
        models = sorted(set(models) | library_models(ctx))
    library_erased: list[dict[str, Any]] = []
    photos_blurred = photos_not_owned = 0
    scope = collection or "*"
    erased: list[ErasureReceipt] = []
    optout_ids = []
    key = ctx.current_key()
    s = ctx.settings
    for model_id in models:
        faces = ctx.pipeline(model_id).analyze(decoded.pixels)
        if not faces:
            with ctx.write() as conn:
                ctx.log(conn, OptedOut(collection=collection, probe_sha256=decoded.sha256, outcome="no_face"))
            raise NoFaceError("no face was found in the opt-out photo")
        raw = faces[0].embedding
        for coll in (c for c in colls if c["model_id"] == model_id):
            with ctx.read() as conn:
                n = ctx.store.count_samples(conn, coll["id"])
            strict = ctx.strict_threshold(
                model_id, min(s.conflict_fmr, s.optout_max_false_erasures / max(n, 1))
            )
            for cand in find_candidates(ctx, coll, raw, MAX_ERASED_PER_COLLECTION, strict):
                erased.append(erase_subject(ctx, coll["name"], f"#{cand.subject_id}", reason="opt_out"))
        if collection is None:  # an opt-out from everything reaches every photo library too
            done = erase_matching(ctx, raw, model_id, reason="opt_out")
            library_erased += done.receipts
            photos_blurred += done.photos_blurred
            photos_not_owned += done.photos_not_owned
        context_row = {"model_id": model_id, "scope": scope, "dim": int(raw.shape[0])}
        with ctx.write() as conn:
            optout_ids.append(
                ctx.store.add_optout(
                    conn,
                    model_id=model_id,
                    dim=int(raw.shape[0]),
                    scope=scope,
                    vector=key.seal(key.protect(raw), optout_context(context_row)),
                    key_version=key.version,
                )
            )
    with ctx.write() as conn:
        seq = ctx.log(
            conn,
            OptedOut(
                collection=collection,
                probe_sha256=decoded.sha256,
                outcome="ok",
                scope=scope,
                optout_ids=optout_ids,
                subjects_erased=[e.subject_id for e in erased],
                library_people_erased=[[r["library"], r["person"]] for r in library_erased] or None,
                library_photos_blurred=photos_blurred if collection is None else None,
                library_photos_not_owned=photos_not_owned if collection is None else None,
            ),
        )
    return LibraryOptoutReport(
        scope=scope,
        optout_ids=optout_ids,
        erased=erased,
        audit_seq=seq,
        library_people_erased=[[r["library"], r["person"]] for r in library_erased],
        library_photos_blurred=photos_blurred,
        library_photos_not_owned=photos_not_owned,
    )


def library_models(ctx: ServiceContext) -> set[str]:
    with ctx.read() as conn:
        return {lib["model_id"] for lib in ctx.store.list_libraries(conn)}
