"""How a caller names a subject, in one syntax for the Python API, the CLI and the HTTP API (the
resolution is ``SubjectQueries.find_subject``):

- ``#12`` or ``id:12``: the subject with internal id 12, and nothing else;
- ``ext:E-12``: the subject whose external id is ``E-12``, and nothing else;
- ``name:Ann Lee``: the subject named exactly ``Ann Lee`` (refused when several are);
- anything else, a bare reference: read as an id (when it is a plain decimal number), as an external
  id and as an exact name at once; it must name exactly one subject, or it is refused as ``ambiguous``.

A malformed reference (``#x``, ``#²``, an id beyond 64 bits, nothing at all) is an input error, never a
database error: nothing that cannot be an id ever reaches a query as one.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError

MAX_ID = 2**63 - 1  # the largest id any of the stores can hold (SQLite and PostgreSQL BIGINT)
MAX_REF_CHARS = 512  # longer than any name (300) or external id (200) with its prefix
ID_PREFIXES = ("#", "id:")
EXTERNAL_PREFIX = "ext:"
NAME_PREFIX = "name:"


@dataclass(frozen=True)
class SubjectRef:
    kind: str  # "id" | "external_id" | "name" | "any" (a bare reference)
    value: str  # the id's digits, the external id, the name, or the bare reference
    subject_id: int | None  # the internal id this reference can mean, if any
    numeric_but_not_an_id: bool = False  # bare digits that no id can be (``²``, 30 digits)


def shown(ref: object) -> str:
    """A reference as an error message quotes it: repr, cut short."""
    text = repr(ref)
    return text if len(text) <= 80 else text[:77] + "…"


def is_id_text(text: str) -> bool:
    """Whether ``text`` spells an id: ASCII digits (``str.isdigit`` alone also takes ``²`` and other
    digits ``int`` refuses), 0 to MAX_ID."""
    return text.isascii() and text.isdigit() and len(text) <= 19 and int(text) <= MAX_ID


def parse_id(text: str, what: str = "subject id") -> int:
    """``text`` as an id: ASCII digits, 0 to MAX_ID. Anything else is an input error."""
    if not is_id_text(text):
        raise InputError(
            f"{shown(text)} is not a {what}: give a whole number from 0 to {MAX_ID}",
            code="invalid_subject_ref" if what == "subject id" else "invalid_id",
        )
    return int(text)


def check_id(value: int, what: str = "id") -> int:
    """An id given as an int (a path parameter, a Python argument): within what the stores hold."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ID:
        raise InputError(f"{shown(value)} is not a {what}: ids are 0 to {MAX_ID}", code="invalid_id")
    return value


def parse_subject_ref(ref: str | int) -> SubjectRef:
    """Parse ``ref`` (module docstring); an int is the internal id."""
    if isinstance(ref, int) and not isinstance(ref, bool):
        check_id(ref, "subject id")
        return SubjectRef("id", str(ref), ref)
    if not isinstance(ref, str) or not ref.strip():
        raise InputError(
            "name the subject: an id (#12), ext:<external id>, or a name", code="invalid_subject_ref"
        )
    if len(ref) > MAX_REF_CHARS:
        raise InputError(
            f"a subject reference is at most {MAX_REF_CHARS} characters, this one has {len(ref)}",
            code="invalid_subject_ref",
        )
    for prefix in ID_PREFIXES:
        if ref.startswith(prefix):
            digits = ref[len(prefix) :]
            return SubjectRef("id", digits, parse_id(digits))
    for prefix, kind in ((EXTERNAL_PREFIX, "external_id"), (NAME_PREFIX, "name")):
        if ref.startswith(prefix):
            value = ref[len(prefix) :]
            if not value:
                raise InputError(f"{shown(ref)} names nothing after {prefix!r}", code="invalid_subject_ref")
            return SubjectRef(kind, value, None)
    # A bare reference is an id only in its plain form: "012" is an external id or a name, never #12.
    fits = is_id_text(ref)
    if fits and (ref == "0" or not ref.startswith("0")):
        return SubjectRef("any", ref, int(ref))
    return SubjectRef("any", ref, None, numeric_but_not_an_id=ref.isdigit() and not fits)
