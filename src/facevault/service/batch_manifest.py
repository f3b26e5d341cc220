"""The manifest of ``facevault enroll-batch`` and its per-row report: ``read_manifest`` parses one
(``ManifestRow``), ``write_report`` writes the report rows (``REPORT_FIELDS``) as CSV or JSON Lines.

Manifest: CSV with a header, or JSON Lines (``.jsonl``/``.ndjson``), one image per row. Columns:

- ``collection`` (required; the collection must exist)
- ``subject`` (a name) and/or ``external_id``: the subject is found by external id if given, else by
  exact name; if missing it is created, which needs consent: ``purpose`` and exactly one of
  ``consent_text`` or ``consent_file`` (optional ``consent_by``, ``consent_expires``)
- ``image``: a path; relative paths (and relative consent files) are relative to the manifest's folder
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import imaging
from ..errors import InputError

COLUMNS = (
    "collection",
    "subject",
    "external_id",
    "purpose",
    "consent_text",
    "consent_file",
    "consent_by",
    "consent_expires",
    "image",
)
REPORT_FIELDS = (
    "row",
    "status",
    "reason",
    "message",
    "collection",
    "subject",
    "external_id",
    "subject_id",
    "image",
    "image_sha256",
    "sample_id",
)


# ---- the manifest ------------------------------------------------------------------------------------
@dataclass
class ManifestRow:
    number: int  # 1-based data row (CSV header not counted; JSONL: line number)
    values: dict[str, str]
    image: str = ""  # resolved path
    problem: str | None = None  # why the row cannot be used at all

    def get(self, key: str) -> str:
        return (self.values.get(key) or "").strip()


MAX_MANIFEST_BYTES = 2 * 1024**3


def read_manifest(path: str | Path) -> tuple[str, list[ManifestRow]]:
    """(SHA-256 of the manifest file, its rows). Unusable rows carry a ``problem`` instead of raising."""
    path = Path(path)
    try:
        # Only a regular file, and at most MAX_MANIFEST_BYTES: a FIFO or a device never blocks the batch.
        data = imaging.read_file_bytes(path, max_bytes=MAX_MANIFEST_BYTES)
    except OSError as exc:
        raise InputError(f"cannot read manifest {path}: {exc.strerror or exc}") from exc
    sha = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"manifest {path} is not UTF-8 text") from exc
    rows: list[ManifestRow] = []
    if path.suffix.lower() in {".jsonl", ".ndjson"}:
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("not an object")
                rows.append(ManifestRow(i, {str(k): "" if v is None else str(v) for k, v in obj.items()}))
            except ValueError as exc:
                rows.append(ManifestRow(i, {}, problem=f"line {i} is not a JSON object ({exc})"))
    else:
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or "image" not in reader.fieldnames:
            raise InputError(f"manifest {path}: the CSV header must name at least collection and image")
        for i, rec in enumerate(reader, 1):
            rows.append(ManifestRow(i, {k: v or "" for k, v in rec.items() if k is not None}))
    base = path.resolve().parent
    for row in rows:
        if row.problem:
            continue
        missing = [k for k in ("collection", "image") if not row.get(k)]
        if not row.get("subject") and not row.get("external_id"):
            missing.append("subject or external_id")
        if missing:
            row.problem = f"missing {', '.join(missing)}"
            continue
        row.image = str(base / Path(row.get("image")).expanduser())
    return sha, rows


# ---- the report ----------------------------------------------------------------------------------------
def write_report(rows: list[dict[str, Any]], path: str | Path) -> None:
    """CSV, or JSON Lines when the name ends in .jsonl/.ndjson/.json."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        if path.suffix.lower() in {".jsonl", ".ndjson", ".json"}:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        else:
            writer = csv.DictWriter(fh, fieldnames=REPORT_FIELDS)
            writer.writeheader()
            for r in rows:
                writer.writerow({k: "" if r.get(k) is None else r[k] for k in REPORT_FIELDS})
