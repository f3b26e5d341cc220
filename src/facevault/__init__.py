"""facevault: self-hosted face search with consent, erasure and an audit trail built in.

    import facevault
    vault = facevault.open("facevault-data", create=True)
    vault.create_collection("staff")
    vault.add_subject("staff", "Ada", purpose="door access", consent_text="signed form #12")
    vault.enroll("staff", "Ada", ["ada1.jpg", "ada2.jpg"])
    result = vault.search("staff", "door-camera.jpg", purpose="door access")

Importing this package loads no model, and not even the service: ``Vault`` and ``open_vault`` are
imported on first use, so ``facevault --help`` and the CLI's own modules start fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import Settings, load_settings
from .errors import FaceVaultError

if TYPE_CHECKING:
    from .service import Vault, open_vault

__version__ = "0.1.0"


def open(home: str | None = None, *, create: bool = False, **overrides: object) -> Vault:
    """Open the vault at ``home`` (default ``$FACEVAULT_HOME`` or ``./facevault-data``)."""
    from .service import open_vault

    return open_vault(home, create=create, **overrides)


def __getattr__(name: str) -> Any:
    if name in ("Vault", "open_vault"):
        from . import service

        return getattr(service, name)
    raise AttributeError(f"module 'facevault' has no attribute {name!r}")


__all__ = ["FaceVaultError", "Settings", "Vault", "__version__", "load_settings", "open", "open_vault"]
