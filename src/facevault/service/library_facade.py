"""The photo-library use cases of the ``Vault`` facade (service/library*.py), one line each, kept apart
so the facade stays one readable module. ``Vault.libraries`` returns them bound to its context
(composition: the facade has no base classes)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .context import ImageInput, ServiceContext


class Libraries:
    """``Vault.libraries``: the photo-library use cases, one line each, on the vault's context."""

    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def create_library(self, name: str, **options: Any) -> dict[str, Any]:
        from . import library

        return library.create_library(self._ctx, name, **options)

    def list_libraries(self) -> list[dict[str, Any]]:
        from . import library

        return library.list_libraries(self._ctx)

    def get_library(self, name: str) -> dict[str, Any]:
        from . import library

        return library.get_library(self._ctx, name)

    def library_add(self, name: str, sources: Sequence[Any], **options: Any) -> dict[str, Any]:
        from . import library_ingest

        return library_ingest.add_photos(self._ctx, name, sources, **options)

    def library_upload(self, name: str, files: Sequence[tuple[str, bytes]], **options: Any) -> dict[str, Any]:
        from . import library_uploads

        return library_uploads.add_uploads(self._ctx, name, files, **options)

    def library_photo(self, name: str, photo_id: int) -> tuple[bytes, str]:
        from . import library_photos

        return library_photos.photo_image(self._ctx, name, photo_id)

    def library_people(
        self, name: str, *, include_hidden: bool = False, limit: int | None = None, offset: int = 0
    ) -> list[dict[str, Any]]:
        from . import library

        return library.list_people(self._ctx, name, include_hidden=include_hidden, limit=limit, offset=offset)

    def library_person(self, name: str, person: str | int) -> dict[str, Any]:
        from . import library

        return library.show_person(self._ctx, name, person)

    def library_name_person(
        self, name: str, person: str | int, person_name: str, **consent: Any
    ) -> dict[str, Any]:
        from . import library

        return library.name_person(self._ctx, name, person, person_name, **consent)

    def library_merge(self, name: str, into: str | int, other: str | int) -> dict[str, Any]:
        from . import library

        return library.merge_people(self._ctx, name, into, other)

    def library_split(self, name: str, person: str | int, face_ids: list[int]) -> dict[str, Any]:
        from . import library

        return library.split_person(self._ctx, name, person, face_ids)

    def library_move_face(self, name: str, face_id: int, to: str | int) -> dict[str, Any]:
        from . import library

        return library.move_face(self._ctx, name, face_id, to)

    def library_remove_face(self, name: str, person: str | int, face_id: int) -> dict[str, Any]:
        from . import library

        return library.remove_face(self._ctx, name, person, face_id)

    def library_hide(self, name: str, person: str | int, hidden: bool = True) -> dict[str, Any]:
        from . import library

        return library.hide_person(self._ctx, name, person, hidden)

    def library_feature_face(self, name: str, person: str | int, face_id: int) -> dict[str, Any]:
        from . import library

        return library.feature_face(self._ctx, name, person, face_id)

    def library_face_crop(self, name: str, face_id: int) -> tuple[bytes, str] | None:
        from . import library

        return library.face_crop(self._ctx, name, face_id)

    def library_search(self, name: str, probe: ImageInput, **options: Any) -> dict[str, Any]:
        from . import library_search

        return library_search.search_library(self._ctx, name, probe, **options)

    def library_recluster(self, name: str) -> dict[str, Any]:
        from . import library_cluster

        return library_cluster.recluster(self._ctx, name)

    def library_erase_person(
        self, name: str, person: str | int, reason: str = "request", *, photos: str = "keep"
    ) -> dict[str, Any]:
        from . import library_erasure

        return library_erasure.erase_person(self._ctx, name, person, reason=reason, photos=photos)

    def library_retention_due(self, now: datetime | None = None) -> list[dict[str, Any]]:
        from . import library_erasure

        return library_erasure.library_retention_due(self._ctx, now)
