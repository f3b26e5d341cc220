"""One exception tree. Every error carries a stable ``code`` (used in JSON output and HTTP replies)
and an ``exit_code`` used by the CLI."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class FaceVaultError(Exception):
    code = "error"
    exit_code = 1

    def __init__(
        self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details  # structured facts for JSON output (e.g. the ids concerned), if any
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            out["details"] = self.details
        return out


class ConfigError(FaceVaultError):
    code = "config_error"
    exit_code = 2


class InputError(FaceVaultError):
    """The caller gave something unusable (bad argument, missing file, unreadable image)."""

    code = "invalid_input"
    exit_code = 3


class ImageError(InputError):
    code = "unreadable_image"


class ImageTooLargeError(ImageError):
    code = "image_too_large"


class NoFaceError(InputError):
    code = "no_face"


class NotFoundError(FaceVaultError):
    code = "not_found"
    exit_code = 4


class ConflictError(FaceVaultError):
    code = "conflict"
    exit_code = 5


class ModelMismatchError(FaceVaultError):
    """Vectors of two different embedding models must never be compared."""

    code = "model_mismatch"
    exit_code = 6


class MigrationError(ConflictError):
    """A collection cannot move to another model pack now; nothing was changed."""

    code = "migration_refused"

    def __init__(self, message: str, *, code: str | None = None, sample_ids: Sequence[int] = ()) -> None:
        ids = [int(i) for i in sample_ids]
        super().__init__(message, code=code, details={"sample_ids": ids} if ids else None)
        self.sample_ids = ids


class ConsentError(FaceVaultError):
    code = "consent_required"
    exit_code = 7


class PurposeRequiredError(FaceVaultError):
    code = "purpose_required"
    exit_code = 7


class IntegrityError(FaceVaultError):
    """Store and index disagree, or a log chain is broken."""

    code = "integrity_error"
    exit_code = 8


class ModelError(FaceVaultError):
    code = "model_unavailable"
    exit_code = 9


class KeyringError(FaceVaultError):
    """Template-protection or audit keys are missing, damaged or wrong."""

    code = "key_error"
    exit_code = 11


class KeyMissingError(KeyringError):
    code = "key_missing"


class WrongKeyError(KeyringError):
    code = "wrong_key"
