"""Request bodies. Endpoints that take images accept either multipart/form-data (file parts) or
JSON with base64 images; both are validated by the same models."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile

from ..config import MAX_RETENTION_DAYS, MIN_RETENTION_DAYS, ROLES
from ..errors import InputError
from ..service.collections import MAX_NAME_LENGTH
from ..service.packs import available_models
from .errors import ApiError

# The service checks names (one rule for every edge); the length is repeated here for the OpenAPI document.
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)]
Purpose = Annotated[str, Field(min_length=1, max_length=500, description="Why this is done (recorded).")]
CaseId = Annotated[
    str | None, Field(default=None, max_length=200, description="Case or ticket id (recorded).")
]
Fmr = Annotated[
    float | None,
    Field(
        default=None,
        gt=0,
        le=1,
        description="Target false-match rate per comparison. In a search, keys below admin may go no "
        "looser than the vault's search_loosest_fmr (1e-2 by default): threshold_too_loose (audited).",
    ),
]
Threshold = Annotated[
    float | None,
    Field(
        default=None,
        ge=-1,
        le=1,
        description="Similarity threshold (give it or fmr, not both). In a search, keys below admin may "
        "go no lower than the similarity at search_loosest_fmr: threshold_too_loose (audited).",
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CollectionCreate(_Strict):
    # Checked by the service, the same way for every edge (invalid_name), not here.
    name: Annotated[
        str,
        Field(
            description=f"1 to {MAX_NAME_LENGTH} characters; no / or \\, not . or .., no control "
            "characters (the name is a URL path segment)."
        ),
    ]
    model: Annotated[str | None, Field(default=None, max_length=100)] = None
    detector: Annotated[
        str | None,
        Field(
            default=None,
            max_length=100,
            description="Find faces with this detector instead of the model's own (e.g. dlib-mmod, yunet).",
        ),
    ] = None
    keep_crops: Annotated[
        bool,
        Field(
            description="Keep an encrypted face crop per sample so the collection can move to another "
            "model pack later (off by default)."
        ),
    ] = False


class KeepCropsSet(_Strict):
    keep_crops: Annotated[bool, Field(description="false deletes every crop the collection holds (audited).")]


class SubjectCreate(_Strict):
    name: Name
    purpose: Purpose
    consent_text: Annotated[str | None, Field(default=None, max_length=20000)] = None
    consent_by: Annotated[str | None, Field(default=None, max_length=200)] = None
    expires: date | None = None
    external_id: Annotated[str | None, Field(default=None, max_length=200)] = None


class EnrollParams(_Strict):
    largest: bool = False


class SearchParams(_Strict):
    purpose: Purpose
    case_id: CaseId = None
    top: Annotated[
        int,
        Field(
            ge=1,
            le=2**31,
            description="Candidates per face. Keys below admin may ask for at most the vault's "
            "search_max_top (20 by default): more is refused as top_too_large (audited).",
        ),
    ] = 5
    fmr: Fmr = None
    threshold: Threshold = None


class SearchJSON(SearchParams):
    image_base64: str = Field(description="The probe photo, base64 (a data: URL is accepted too).")


class VerifyParams(_Strict):
    purpose: Purpose
    case_id: CaseId = None
    model: Annotated[str | None, Field(default=None, max_length=100)] = None
    fmr: Fmr = None
    threshold: Threshold = None


class VerifyJSON(VerifyParams):
    image_a_base64: str
    image_b_base64: str


class OptoutParams(_Strict):
    collection: Annotated[
        str | None,
        Field(default=None, max_length=200, description="Only this collection (default: every collection)."),
    ] = None


class OptoutJSON(OptoutParams):
    image_base64: str = Field(description="The selfie, base64 (a data: URL is accepted too).")


class ReviewDecision(_Strict):
    candidate: Annotated[
        int, Field(ge=1, le=2**62, description="A candidate id (or a candidate's subject id).")
    ]
    decision: Literal["confirm", "reject"]
    note: Annotated[str | None, Field(default=None, max_length=2000)] = None


class RetentionSet(_Strict):
    days: Annotated[
        int,
        Field(
            ge=MIN_RETENTION_DAYS,
            le=MAX_RETENTION_DAYS,
            description="Days after the last interaction (max 3 years).",
        ),
    ]


class KeyCreate(_Strict):
    name: Name
    role: Literal[ROLES]  # type: ignore[valid-type]  # one definition of the roles: facevault.config


M = TypeVar("M", bound=BaseModel)
Files = dict[str, list[UploadFile]]


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_input=False, include_context=False)) from None


async def parse_body(
    request: Request, json_model: type[M], form_model: type[BaseModel] | None = None, *, max_files: int = 50
) -> tuple[M, Files]:
    """Validate a JSON body with ``json_model`` or a multipart body (text fields, with file parts
    returned separately) with ``form_model``. Empty text fields count as absent."""
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype == "application/json" or (ctype.endswith("+json") and ctype.startswith("application/")):
        try:
            raw = await request.json()
        except ValueError:
            raise InputError("the body is not valid JSON", code="invalid_json") from None
        if not isinstance(raw, dict):
            raise InputError("the JSON body must be an object", code="invalid_json")
        return validate(json_model, raw), {}
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = await request.form(max_files=max_files, max_fields=100)
        values: dict[str, Any] = {}
        files: Files = {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                files.setdefault(key, []).append(value)
            elif value != "":
                values[key] = value
        model = form_model or json_model
        return validate(model, values), files  # type: ignore[return-value]
    raise ApiError(415, "unsupported_media_type", "send multipart/form-data or application/json")


def _form_schema(model: type[BaseModel], files: dict[str, str]) -> dict[str, Any]:
    """An OpenAPI multipart schema: the model's fields as text, plus file parts, each "one", "many"
    or "optional"."""
    schema = model.model_json_schema()
    props = dict(schema.get("properties", {}))
    for name, kind in files.items():
        one = {"type": "string", "format": "binary"}
        props[name] = {"type": "array", "items": one, "minItems": 1} if kind == "many" else one
    required = [*schema.get("required", []), *(n for n, k in files.items() if k != "optional")]
    return {"type": "object", "properties": props, "required": required}


def body_doc(
    json_model: type[BaseModel] | None, form_model: type[BaseModel], files: dict[str, str]
) -> dict[str, Any]:
    """``openapi_extra`` describing a body parsed by :func:`parse_body`."""
    content: dict[str, Any] = {"multipart/form-data": {"schema": _form_schema(form_model, files)}}
    if json_model is not None:
        content["application/json"] = {"schema": json_model.model_json_schema()}
    return {"requestBody": {"required": True, "content": content}}


def known_model(model_id: str | None) -> str | None:
    """Refuse an unknown model id as bad input (the engine's ModelError means "cannot load", a 503)."""
    if model_id is not None:
        known = available_models()
        if model_id not in known:
            raise InputError(
                f"unknown model {model_id!r}; available: {', '.join(known)}", code="unknown_model"
            )
    return model_id
