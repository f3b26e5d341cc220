"""Model pack administration as use cases: what the CLI's ``models`` commands and the API's model
checks call (the edges never import ``facevault.models`` themselves)."""

from __future__ import annotations


def available_models() -> list[str]:
    """Ids of every model pack this process can load (built-in and installed)."""
    from ..models import available_models as _available

    return _available()


def check_model(model_id: str) -> None:
    """Load ``model_id``'s pack (raises a FaceVaultError when it cannot be loaded)."""
    from ..models import get_pack

    get_pack(model_id)
