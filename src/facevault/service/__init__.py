"""The service layer: ``Vault`` (the public facade) over one context, with one module per family of
use cases. The only code that touches store, index and audit log together; the edges (CLI, API, web)
call it and nothing below it."""

from .vault import ImageInput, Vault, open_vault

__all__ = ["ImageInput", "Vault", "open_vault"]
