"""1,000 new faces joining a library of N faces in a *new process*, on a real vault: what a CLI
``facevault library add`` pays, not only the in-memory grouping step ``bench.library`` times.

1. Build (once, not timed as the figure): a vault with library "big" of N faces, written through the
   store's own tables: real LFW embeddings plus calibrated synthetic distractors (``bench.library``),
   each protected and sealed under the template key, grouped into their people (identities, and one
   person per distractor); then the library's vectors and FAISS index, as the last ``library add`` of a
   process leaves them on disk (``service/library_snapshot.py``).
2. Join (timed, in a fresh process per round): open the vault, store 1,000 new faces (held-out real
   faces of identities in the library, and new distractors) and place them with the service's
   ``assign_new_faces`` in the same write transaction, commit; then write the snapshot again, as
   ``library add`` does after its commit. Reported: open, join (vectors loaded + kNN + grouping +
   writes), snapshot write, and the total.

    nice -n 10 python -m bench.library_cold --faces 1000000 [--rounds 2] [--home DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench.index_data import GaussianFaces
from bench.library import library_of, real_faces

CHUNK = 50_000
NEW = 1000
HELD = 400  # real faces held out of the library, joining it later


def _held_out() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    real, labels = real_faces()
    held = np.random.default_rng(5).choice(len(real), size=HELD, replace=False)
    keep = np.setdiff1d(np.arange(len(real)), held)
    return real, labels, keep


def build(home: Path, size: int) -> dict[str, Any]:
    from sqlalchemy import insert, update

    import facevault
    from facevault.clock import utcnow
    from facevault.service import library_cluster
    from facevault.store import schema as t

    real, labels, keep = _held_out()
    vectors, person = library_of(size, real[keep], labels[keep])
    t0 = time.perf_counter()
    v = facevault.open(str(home), create=True)
    v.libraries.create_library("big", purpose="benchmark", basis="benchmark")
    ctx = v.context
    now = utcnow()
    with ctx.write() as conn:
        lib = ctx.store.get_library(conn, "big")
        key = ctx.current_key(conn)
    ad = library_cluster.face_context(lib)
    uniq, first = np.unique(person, return_index=True)
    order = np.argsort(first)  # people numbered in the order their first face appears
    number_of = {int(p): i + 1 for i, p in enumerate(uniq[order])}
    with ctx.write() as conn:
        for start in range(0, len(order), CHUNK):
            rows = [
                {
                    "library_id": lib["id"],
                    "number": n,
                    "hidden": False,
                    "created_at": now,
                    "last_interaction_at": now,
                }
                for n in range(start + 1, min(start + CHUNK, len(order)) + 1)
            ]
            conn.execute(insert(t.library_people), rows)
        conn.execute(
            update(t.libraries).where(t.libraries.c.id == lib["id"]).values(next_person=len(order) + 1)
        )
        ids = dict(
            conn.execute(
                t.library_people.select()
                .with_only_columns(t.library_people.c.number, t.library_people.c.id)
                .where(t.library_people.c.library_id == lib["id"])
            ).all()
        )
    for start in range(0, size, CHUNK):
        end = min(size, start + CHUNK)
        protected = key.protect(vectors[start:end])
        with ctx.write() as conn:
            first_photo = _insert_photos(conn, lib, range(start, end), "bench", now)
            conn.execute(
                insert(t.library_faces),
                [
                    _face(
                        lib,
                        first_photo + j,
                        ids[number_of[int(person[start + j])]],
                        key.seal(p, ad),
                        key.version,
                        now,
                    )
                    for j, p in enumerate(protected)
                ],
            )
    built_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with ctx.read() as conn:
        face_ids = [r[0] for r in ctx.store.library_face_rows(conn, lib["id"])]
        library_cluster.library_vectors(ctx, lib, conn, face_ids)
    wrote = library_cluster.save_snapshot(ctx, lib)
    index_s = time.perf_counter() - t0
    v.close()
    db = Path(home) / "facevault.db"
    return {
        "faces": size,
        "people": len(order),
        "store_seconds": round(built_s, 1),
        "index_and_snapshot_seconds": round(index_s, 1),
        "snapshot_written": wrote,
        "db_bytes_per_face": round(db.stat().st_size / size),
    }


def _insert_photos(conn: Any, lib: dict[str, Any], numbers: range, source: str, now: Any) -> int:
    """Photo rows, one per face, named by number (their hash) and ``source``; returns the first's id
    (the rest follow it)."""
    from sqlalchemy import insert, select

    from facevault.store import schema as t

    rows = [
        {
            "library_id": lib["id"],
            "sha256": f"{i:064x}",
            "source": f"{source}:{i}",
            "stored": False,
            "size_bytes": 0,
            "status": "done",
            "faces": 1,
            "added_at": now,
        }
        for i in numbers
    ]
    conn.execute(insert(t.library_photos), rows)
    first = select(t.library_photos.c.id).where(t.library_photos.c.sha256 == f"{numbers[0]:064x}")
    return int(conn.execute(first).scalar_one())


def _face(
    lib: dict[str, Any], photo_id: int, person_id: int, blob: bytes, version: int, now: Any
) -> dict[str, Any]:
    return {
        "library_id": lib["id"],
        "photo_id": photo_id,
        "person_id": person_id,
        "box_x1": 10.0,
        "box_y1": 10.0,
        "box_x2": 110.0,
        "box_y2": 130.0,
        "landmarks": "[[40,50],[80,50],[60,75],[45,100],[75,100]]",
        "quality": '{"overall": 0.8}',
        "det_score": 1.0,
        "vector": blob,
        "key_version": version,
        "pinned": False,
        "created_at": now,
    }


def join(home: Path, round_: int) -> dict[str, Any]:
    """One fresh process's worth: open, 1,000 new faces placed and committed, snapshot written."""
    t0 = time.perf_counter()
    from sqlalchemy import func, insert, select

    import facevault
    from facevault.clock import utcnow
    from facevault.service import library_cluster
    from facevault.store import schema as t

    real, _, _ = _held_out()
    held = np.setdiff1d(np.arange(len(real)), _held_out()[2])
    gen = GaussianFaces(real, real.shape[1], seed=100 + round_)
    new = np.concatenate(
        [real[held][: NEW // 2], gen.sample(NEW - min(len(held), NEW // 2), seed=200 + round_)]
    )
    v = facevault.open(str(home))
    ctx = v.context
    t_open = time.perf_counter() - t0
    now = utcnow()
    t1 = time.perf_counter()
    with ctx.write() as conn:
        lib = ctx.store.get_library(conn, "big")
        key = ctx.current_key(conn)
        ad = library_cluster.face_context(lib)
        last = conn.execute(select(func.max(t.library_photos.c.id))).scalar_one() or 0
        base = 10**9 + int(last)  # names no photo of the library yet, whatever ran before
        first = _insert_photos(conn, lib, range(base, base + len(new)), f"bench:new:{round_}", now)
        protected = key.protect(new.astype(np.float32))
        rows = [
            _face(lib, first + j, None, key.seal(p, ad), key.version, now) for j, p in enumerate(protected)
        ]  # type: ignore[arg-type]
        conn.execute(insert(t.library_faces), rows)
        placed = library_cluster.assign_new_faces(ctx, lib, conn)
    t_join = time.perf_counter() - t1
    t2 = time.perf_counter()
    library_cluster.save_snapshot(ctx, lib)
    t_snap = time.perf_counter() - t2
    v.close()
    return {
        "round": round_,
        "open_seconds": round(t_open, 2),
        "join_seconds": round(t_join, 2),
        "snapshot_write_seconds": round(t_snap, 2),
        "total_seconds": round(time.perf_counter() - t0, 2),
        "people_created": placed["people_created"],
        "placed": placed.get("placed"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--home", type=Path, default=Path("/tmp/fv-bench-cold"))
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--join-round", type=int, default=None, help=argparse.SUPPRESS)  # the child's job
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    if args.join_round is not None:
        print(json.dumps(join(args.home, args.join_round)))
        return
    report: dict[str, Any] = {"cores": os.cpu_count()}
    if not (args.home / "facevault.db").exists():
        report["build"] = build(args.home, args.faces)
        print(json.dumps(report["build"]), flush=True)
    report["joins"] = []
    for r in range(args.rounds):
        out = subprocess.run(
            [sys.executable, "-m", "bench.library_cold", "--home", str(args.home), "--join-round", str(r)],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        report["joins"].append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
