"""The service layer: ``Vault`` (the public facade) over one context, with one module per family of
use cases. The only code that touches store, index and audit log together; the edges (CLI, API, web)
call it and nothing below it.

``Vault`` and ``open_vault`` are imported on first use, so that importing one light submodule (say
``service.packs`` for ``facevault models --help``) does not load the store and the index."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .vault import ImageInput, Vault, open_vault

__all__ = ["ImageInput", "Vault", "open_vault"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import vault

        return getattr(vault, name)
    raise AttributeError(f"module 'facevault.service' has no attribute {name!r}")
