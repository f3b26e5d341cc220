"""The opt-out check of enrollment: does a face match someone who opted out of this collection?

Opt-out templates are made by the model packs of the collections in scope at the time of the opt-out.
A collection migrated to another pack since then is still covered by the older templates: for those,
the enrollment photo is embedded again with the pack that made them (``reembed.embed_at`` at the
enrolled face's box) and compared at that pack's strict threshold. When that pack is no longer
available the check cannot be made, and enrollment is refused rather than done unchecked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ModelError
from ..protection import TemplateKey
from ..reembed import embed_at

if TYPE_CHECKING:
    from ..pipeline import Pipeline


@dataclass(frozen=True)
class OptoutSet:
    model_id: str
    vectors: np.ndarray  # (n, dim), protected under the guard's key
    threshold: float  # the model's strict (opt-out) threshold


@dataclass
class OptoutGuard:
    """The opt-out templates that apply to one collection, by the model that made them."""

    key: TemplateKey
    own: OptoutSet | None  # made by the collection's model: compared with the enrollment vector itself
    foreign: list[OptoutSet] = field(default_factory=list)  # made by packs the collection used before

    def blocks(
        self,
        protected: np.ndarray,
        box: tuple[float, float, float, float],
        pixels: np.ndarray | Callable[[], np.ndarray],
        pipeline: Callable[[str], Pipeline],
    ) -> bool:
        """Whether the face (``protected``: its protected embedding by the collection's model; ``box``:
        where it is in the photo: its pixels, or a function that loads them, called only when needed) matches
        an opt-out."""
        if self.own is not None and float((self.own.vectors @ protected).max()) >= self.own.threshold:
            return True
        if not self.foreign:
            return False
        photo = pixels() if callable(pixels) else pixels
        for s in self.foreign:
            try:
                found = embed_at(pipeline(s.model_id), photo, box)
            except ValueError as exc:
                raise ModelError(
                    f"model {s.model_id!r}, which made opt-out templates for this collection, could not "
                    f"embed the photo to check it against them ({exc})"
                ) from exc
            vec = self.key.protect(found.face.embedding)
            if float((s.vectors @ vec).max()) >= s.threshold:
                return True
        return False
