"""``doctor``: every index holds exactly the store's samples (and only vectors of the collection's model),
the audit chain is intact, and no file holding a face is left that no store row owns; with ``repair``,
bad indexes are rebuilt from the store, interrupted erasures are finished and unowned face files go.

The files looked at: kept photo copies (``<photos>/c<id>/<sha256>``) that no image row owns, staging
files of photo writers that were killed (``<photos>/.staging``), erasures recorded as pending (a crash
after their commit), and index files of collections that no longer exist or that a killed index save
left half-written (they hold protected templates). A problem with no collection of its own (a deleted
collection's leftovers) is reported as an entry named ``#<id> (deleted)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FaceVaultError
from ..models.registry import get_pack
from ..results import DoctorReport
from .collections import usable_detector
from .context import ServiceContext
from .erasure import finish_pending_erasures
from .photos import STAGED_NAME, owned, staging_leftovers, unowned_copies
from .records import verify_audit

INDEX_FILE = re.compile(r"collection-(\d+)\..+")
STAGING_KEY = -1  # staging files whose name says no collection


@dataclass
class FileProblems:
    """Face files of one collection (or of none) that no row owns, and unfinished erasures."""

    messages: list[str] = field(default_factory=list)
    stray: list[tuple[int, str, Path]] = field(default_factory=list)  # (collection id, sha256, copy)
    index_files: list[Path] = field(default_factory=list)


def doctor(ctx: ServiceContext, repair: bool = False) -> DoctorReport:
    with ctx.read() as conn:
        colls = ctx.store.list_collections(conn)
    chain = verify_audit(ctx)  # the same check as `audit verify` (chain, head outside the database)
    report = [_check_index(ctx, coll, repair) for coll in colls]
    files = file_problems(ctx)
    if repair and files:
        _repair_files(ctx, files)
        after = file_problems(ctx)
    else:
        after = files
    entries = {int(c["id"]): e for c, e in zip(colls, report, strict=True)}
    for cid, found in sorted(files.items()):
        entry = entries.get(cid)
        if entry is None:
            entry = {
                "collection": "photos/.staging" if cid == STAGING_KEY else f"#{cid} (deleted)",
                "model_id": None,
                "samples": 0,
                "indexed": 0,
                "problems": [],
                "repaired": False,
            }
            report.append(entry)
        index_fine = not entry["problems"] or entry["repaired"]
        entry["problems"].extend(found.messages)
        entry["repaired"] = index_fine and repair and cid not in after
    ok = chain.ok and all(not e["problems"] for e in report)
    repaired_all = all(e["repaired"] or not e["problems"] for e in report)
    return DoctorReport(
        ok=ok or (repair and repaired_all and chain.ok),
        collections=report,
        audit=chain.to_dict(),
        repaired=repair and any(e["repaired"] and e["problems"] for e in report),
    )


def _check_index(ctx: ServiceContext, coll: dict[str, Any], repair: bool) -> dict[str, Any]:
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
    if problems and repair and not foreign:
        entry["indexed"] = ctx.indexes.recreate(coll)
        entry["repaired"] = True
    entry["detector"], unusable = _detector_state(ctx, coll)
    if unusable:  # no repair can bring a removed or changed detector back: the operator must
        problems.append(unusable)
        entry["repaired"] = False
    return entry


def _detector_state(ctx: ServiceContext, coll: dict[str, Any]) -> tuple[str, str | None]:
    """(the detector that finds the collection's faces, why it cannot be used or None)."""
    chosen = coll.get("detector")
    if not chosen:
        try:
            return get_pack(coll["model_id"]).detector.name, None
        except FaceVaultError as exc:
            return "?", exc.message
    try:
        usable_detector(ctx, coll["model_id"], chosen)
    except FaceVaultError as exc:
        back = f"`collection set {coll['name']} --detector own` goes back to the pack's"
        return chosen, f"{exc.message}; {back}"
    return chosen, None


def file_problems(ctx: ServiceContext) -> dict[int, FileProblems]:
    """What is left on disk or pending that no row owns, by collection id."""
    out: dict[int, FileProblems] = {}

    def of(cid: int) -> FileProblems:
        return out.setdefault(cid, FileProblems())

    with ctx.read() as conn:
        pending = ctx.store.pending_erasures(conn)
        existing = {int(c["id"]) for c in ctx.store.list_collections(conn)}
    per_coll: dict[int, int] = {}
    for p in pending:
        per_coll[p["collection_id"]] = per_coll.get(p["collection_id"], 0) + 1
    for cid, n in per_coll.items():
        of(cid).messages.append(
            f"{n} erasure(s) interrupted after their commit: index entries or photo copies may remain"
        )
    leftovers: dict[int, int] = {}
    for path in staging_leftovers(ctx.settings):
        m = STAGED_NAME.fullmatch(path.name)
        cid = int(m.group(1)) if m else STAGING_KEY
        leftovers[cid] = leftovers.get(cid, 0) + 1
    for cid, n in leftovers.items():
        of(cid).messages.append(f"{n} photo file(s) left in the staging area by a writer that was killed")
    for cid, paths in unowned_copies(ctx).items():
        found = of(cid)
        found.messages.append(f"{len(paths)} photo file(s) that no image record owns")
        # a copy is owned by the image row of its name, in its collection's own folder only
        found.stray.extend((cid, p.name if p.parent.name == f"c{cid}" else "", p) for p in paths)
    with ctx.indexes.exclusive():  # no index save is half-way while we look
        for cid, paths in _index_leftovers(ctx, existing).items():
            found = of(cid)
            found.messages.append(f"{len(paths)} index file(s) that no collection owns (protected templates)")
            found.index_files.extend(paths)
    return out


def _index_leftovers(ctx: ServiceContext, existing: set[int]) -> dict[int, list[Path]]:
    """Index files of deleted collections, and temporary files of index saves that were killed."""
    folder = Path(ctx.settings.index_dir)
    if not folder.is_dir():
        return {}
    out: dict[int, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        m = INDEX_FILE.fullmatch(path.name)
        if m is None or not path.is_file():
            continue
        cid = int(m.group(1))
        if cid not in existing or path.name.endswith(".tmp"):
            out.setdefault(cid, []).append(path)
    return out


def _repair_files(ctx: ServiceContext, files: dict[int, FileProblems]) -> None:
    finish_pending_erasures(ctx)  # also finishes or removes what killed photo writers staged
    for found in files.values():
        for cid, name, path in found.stray:
            if not name or not owned(
                ctx, cid, name
            ):  # looked up again: an enrollment may have committed since
                path.unlink(missing_ok=True)
    with ctx.indexes.exclusive():
        for found in files.values():
            for path in found.index_files:
                path.unlink(missing_ok=True)
