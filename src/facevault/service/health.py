"""``doctor``: every index holds exactly the store's samples (and only vectors of the collection's model),
and the audit chain is intact; with ``repair``, bad indexes are rebuilt from the store."""

from __future__ import annotations

from typing import Any

from ..errors import FaceVaultError
from ..results import DoctorReport
from .context import ServiceContext
from .records import verify_audit


def doctor(ctx: ServiceContext, repair: bool = False) -> DoctorReport:
    report = []
    ok = True
    with ctx.read() as conn:
        colls = ctx.store.list_collections(conn)
    chain = verify_audit(ctx)  # the same check as `audit verify` (chain, head outside the database)
    for coll in colls:
        with ctx.read() as conn:
            store_ids = ctx.store.sample_ids(conn, coll["id"])
            models = ctx.store.models_in_collection(conn, coll["id"])
        problems: list[str] = []
        foreign = sorted(models - {coll["model_id"]})
        if foreign:
            problems.append(f"samples from other models: {', '.join(foreign)}")
        try:
            index_ids = set(ctx.indexes.open(coll).ids().tolist())
        except FaceVaultError as exc:
            problems.append(exc.message)
            index_ids = set()
        missing = len(store_ids - index_ids)
        extra = len(index_ids - store_ids)
        if missing:
            problems.append(f"{missing} stored samples are missing from the index")
        if extra:
            problems.append(f"{extra} index entries have no stored sample")
        entry: dict[str, Any] = {
            "collection": coll["name"],
            "model_id": coll["model_id"],
            "samples": len(store_ids),
            "indexed": len(index_ids),
            "problems": problems,
            "repaired": False,
        }
        if problems:
            ok = False
            if repair and not foreign:
                entry["indexed"] = ctx.indexes.recreate(coll)
                entry["repaired"] = True
        report.append(entry)
    if not chain.ok:
        ok = False
    repaired_all = all(e["repaired"] or not e["problems"] for e in report)
    return DoctorReport(
        ok=ok or (repair and repaired_all and chain.ok),
        collections=report,
        audit=chain.to_dict(),
        repaired=repair and any(e["repaired"] for e in report),
    )
