"""Template protection (ISO/IEC 24745 renewable, irreversible-without-the-key templates).

Every stored template is protected twice:

1. a secret, per-deployment orthogonal transform ``Q`` (dim x dim, drawn from a seeded Gaussian and
   orthonormalised by QR): cosine similarity is preserved exactly, so search results are unchanged,
   while a template stolen from the index is useless against another deployment or after rotation;
2. authenticated encryption at rest (AES-256-GCM) of the transformed vector in the database, bound to its
   collection and model (associated data), so a copied database yields no templates at all.

Keys live outside the database: a key file written with 0600 permissions (``$FACEVAULT_KEY_FILE``,
default ``<home>/keys/facevault.key``) or the whole key ring in ``$FACEVAULT_KEYRING`` (JSON). The ring
holds one or more numbered template keys (two only while a rotation is under way) and the audit-log
key, which rotation never changes so old log entries stay verifiable.

The audit log's head (last sequence number and MAC) is also kept outside the database, next to the key
file by default (``<key file folder>/<key file stem>.audit-head.json``, or ``$FACEVAULT_AUDIT_HEAD_FILE``):
``write_private_file`` and ``locked`` below are how it (and the key file) are written. In production both
belong outside the vault folder, where whoever can edit the database cannot reach them (docs/PRIVACY.md).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .config import keyring_setting
from .errors import KeyMissingError, KeyringError, WrongKeyError

NONCE_BYTES = 12


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"))


def write_private_file(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``, mode 0600 (temp file in the same folder, fsync, rename):
    a crash leaves the old file or the new one, never a mix. The folder is not fsynced: after a power
    loss the rename may be undone, which leaves the previous complete file (for the audit head: one
    step behind, which verification accepts)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock across processes (flock on ``path``, created 0600), e.g. around a
    read-compare-write of a file next to it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


# Below this many vectors, the transform is applied without BLAS: a multi-threaded BLAS call for one vector
# waits on its thread pool, and on a busy two-core machine (a batch search's workers) that took 18 ms.
SMALL_BATCH = 64


def _times(v: np.ndarray, q: np.ndarray, spec: str) -> np.ndarray:
    if v.ndim == 1 or v.shape[0] <= SMALL_BATCH:
        return np.einsum(spec, v, q).astype(np.float32)
    return (v @ (q.T if spec.endswith("->...i") else q)).astype(np.float32)


@dataclass
class TemplateKey:
    version: int
    seed: bytes  # 32 bytes: seeds the orthogonal transform
    aead_key: bytes  # 32 bytes: AES-256-GCM
    created_at: str

    @classmethod
    def generate(cls, version: int) -> TemplateKey:
        return cls(version, secrets.token_bytes(32), secrets.token_bytes(32), datetime.now(UTC).isoformat())

    @cached_property
    def _aead(self) -> AESGCM:
        return AESGCM(self.aead_key)

    def transform(self, dim: int) -> np.ndarray:
        cache: dict[int, np.ndarray] = self.__dict__.setdefault("_transforms", {})
        q = cache.get(dim)
        if q is None:
            rng = np.random.Generator(np.random.PCG64(int.from_bytes(self.seed, "big")))
            a = rng.standard_normal((dim, dim))
            q, r = np.linalg.qr(a)
            q = (q * np.sign(np.diag(r))).astype(np.float32)  # a unique, proper draw from O(dim)
            cache[dim] = q
        return q

    def protect(self, vectors: np.ndarray) -> np.ndarray:
        """Apply the secret orthogonal transform to unit vectors (n, dim) or (dim,)."""
        v = np.asarray(vectors, dtype=np.float32)
        return _times(v, self.transform(v.shape[-1]), "...j,ij->...i")

    def unprotect(self, vectors: np.ndarray) -> np.ndarray:
        v = np.asarray(vectors, dtype=np.float32)
        return _times(v, self.transform(v.shape[-1]), "...i,ij->...j")

    def seal(self, protected: np.ndarray, context: bytes) -> bytes:
        return self.encrypt(np.asarray(protected, dtype="<f4").tobytes(), context)

    def open(self, blob: bytes, context: bytes, dim: int) -> np.ndarray:
        raw = self.decrypt(blob, context, "a stored template")
        return np.frombuffer(raw, dtype="<f4").reshape(dim)

    def encrypt(self, data: bytes, context: bytes) -> bytes:
        """AES-256-GCM with a fresh nonce (prepended); ``context`` is authenticated, not stored."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data, context)

    def decrypt(self, blob: bytes, context: bytes, what: str = "stored data") -> bytes:
        try:
            return self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], context)
        except InvalidTag as exc:
            raise WrongKeyError(
                f"template key v{self.version} cannot open {what}: wrong key or tampered data"
            ) from exc

    def to_json(self) -> dict[str, object]:
        return {
            "version": self.version,
            "seed": _b64(self.seed),
            "aead_key": _b64(self.aead_key),
            "created_at": self.created_at,
        }

    @classmethod
    def from_json(cls, d: dict[str, object]) -> TemplateKey:
        return cls(
            int(d["version"]),
            _unb64(str(d["seed"])),
            _unb64(str(d["aead_key"])),  # type: ignore[arg-type]
            str(d["created_at"]),
        )


@dataclass
class KeyRing:
    template_keys: dict[int, TemplateKey]
    audit_key: bytes
    path: Path | None = None
    from_env: bool = False
    fingerprint_salt: bytes = field(default=b"facevault-keyring")

    @classmethod
    def generate(cls, path: Path | None) -> KeyRing:
        return cls({1: TemplateKey.generate(1)}, secrets.token_bytes(32), path)

    def key(self, version: int) -> TemplateKey:
        try:
            return self.template_keys[version]
        except KeyError as exc:
            raise KeyMissingError(
                f"template key v{version} is not in the key ring ({self.location()}); restore the key file"
            ) from exc

    def newest(self) -> TemplateKey:
        return self.template_keys[max(self.template_keys)]

    def location(self) -> str:
        return "$FACEVAULT_KEYRING" if self.from_env else str(self.path)

    def to_json(self) -> dict[str, object]:
        return {
            "format": "facevault-keyring-1",
            "template_keys": [k.to_json() for _, k in sorted(self.template_keys.items())],
            "audit_key": _b64(self.audit_key),
        }

    @classmethod
    def from_json(cls, data: dict[str, object], path: Path | None, from_env: bool = False) -> KeyRing:
        if data.get("format") != "facevault-keyring-1":
            raise KeyringError("not a facevault key ring")
        keys = {k.version: k for k in (TemplateKey.from_json(d) for d in data["template_keys"])}  # type: ignore[attr-defined]
        if not keys:
            raise KeyringError("the key ring holds no template key")
        return cls(keys, _unb64(str(data["audit_key"])), path, from_env)

    def save(self) -> None:
        """Write atomically with 0600 permissions (temp file in the same folder, fsync, rename)."""
        if self.from_env or self.path is None:
            raise KeyringError("this key ring comes from $FACEVAULT_KEYRING; update that variable instead")
        write_private_file(self.path, json.dumps(self.to_json(), indent=1))


def load_keyring(path: Path, *, create: bool = False) -> KeyRing:
    env = keyring_setting()
    if env:
        try:
            return KeyRing.from_json(json.loads(env), None, from_env=True)
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyringError(f"$FACEVAULT_KEYRING is not a valid key ring: {exc}") from exc
    if not path.exists():
        if create:
            ring = KeyRing.generate(path)
            ring.save()
            return ring
        raise KeyMissingError(
            f"key file {path} is missing: stored templates cannot be used without it "
            "(restore it from your backup, or set FACEVAULT_KEY_FILE)"
        )
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyringError(f"key file {path} is readable by others (mode {oct(mode)}); run chmod 600 on it")
    try:
        return KeyRing.from_json(json.loads(path.read_text(encoding="utf-8")), path)
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyringError(f"key file {path} is damaged: {exc}") from exc
