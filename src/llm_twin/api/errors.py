"""Every error the API returns has one shape: ``{"error": {"code", "message"[, "field"]}}``, except
under ``/v1``, where OpenAI clients expect ``{"error": {"message", "type", "param", "code"}}`` and a 400
for any invalid input (their SDKs raise ``BadRequestError`` for it). Both are rendered here, from
the same ``describe_error``.

Messages are fixed per error kind (or, for invalid input, written for users): exception text and
stack traces go to the server log only.
"""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from llm_twin.api.openai_schemas import OpenAIErrorDetail, OpenAIErrorResponse
from llm_twin.api.schemas import ErrorDetail, ErrorResponse
from llm_twin.errors import LLMTwinError, UnavailableError
from llm_twin.observability.context import note_error

logger = logging.getLogger(__name__)


class ServiceNotReadyError(UnavailableError):
    """The pipeline could not be built or warmed up for a reason other than the store or the LLM."""


class ServiceStartingError(ServiceNotReadyError):
    """The models are still loading."""

    code = "starting"
    public_message = "the service is loading its models; try again shortly"


class LiveIndexUnavailableError(ServiceNotReadyError):
    """The pipeline in use cannot add documents (one built from parts without a writable store)."""

    code = "index_unavailable"
    public_message = "this service cannot add or delete documents"


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


def describe_error(error: BaseException) -> tuple[int, ErrorDetail]:
    """HTTP status and safe body for an exception (also used for SSE ``error`` events)."""
    if isinstance(error, LLMTwinError):
        return error.http_status, ErrorDetail(code=error.code, message=error.safe_message, field=error.field)
    if isinstance(error, TimeoutError):
        return 504, ErrorDetail(code="timeout", message="the request timed out")
    return 500, ErrorDetail(code="internal_error", message="internal server error")


def error_headers(error: BaseException) -> dict[str, str] | None:
    """``Retry-After`` (whole seconds, at least 1) for errors that say when to come back (429, some 503s)."""
    retry = getattr(error, "retry_after_s", None) if isinstance(error, LLMTwinError) else None
    return {"Retry-After": str(max(1, math.ceil(retry)))} if retry is not None else None


def error_response(status: int, detail: ErrorDetail, headers: dict[str, str] | None = None) -> JSONResponse:
    note_error(detail.code)  # counted by the telemetry middleware (errors by code)
    body = ErrorResponse(error=detail).model_dump(exclude_none=True)
    return JSONResponse(status_code=status, content=body, headers=headers)


# --- the OpenAI-compatible API ---------------------------------------------------------------------

OPENAI_PREFIX = "/v1"
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def is_openai_path(path: str) -> bool:
    return path == OPENAI_PREFIX or path.startswith(OPENAI_PREFIX + "/")


def openai_error(status: int, detail: ErrorDetail) -> tuple[int, OpenAIErrorResponse]:
    """The OpenAI status and body for an error: invalid input is a 400 there (422 elsewhere)."""
    note_error(detail.code)  # counted by the telemetry middleware, as in error_response
    if status == 422:
        status = 400
    kind = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return status, OpenAIErrorResponse(
        error=OpenAIErrorDetail(message=detail.message, type=kind, param=detail.field, code=detail.code)
    )


def respond(request: Request, status: int, detail: ErrorDetail, headers: dict[str, str] | None = None) -> JSONResponse:
    """The error response in the shape the request's API uses."""
    if is_openai_path(request.url.path):
        status, body = openai_error(status, detail)
        return JSONResponse(status_code=status, content=body.model_dump(), headers=headers)
    return error_response(status, detail, headers)


def _field(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"} and len(parts) > 1:
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_detail(error: RequestValidationError) -> ErrorDetail:
    """422 body naming the field(s): ``query: String should have at least 1 character``."""
    messages: list[str] = []
    fields: list[str] = []
    for item in error.errors():
        loc = tuple(item.get("loc") or ())
        if item.get("type") == "json_invalid":
            field, message = "body", "invalid JSON"
        else:
            field = _field(loc)
            message = str(item.get("msg", "invalid value")).removeprefix("Value error, ")
        if item.get("type") == "extra_forbidden":
            message = "unknown field"
        fields.append(field)
        messages.append(f"{field}: {message}")
    return ErrorDetail(
        code="invalid_input", message="; ".join(messages) or "invalid request", field=fields[0] if fields else None
    )


async def _validation_handler(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    return respond(request, 422, validation_detail(error))


async def _http_handler(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    code = _HTTP_CODES.get(error.status_code, "http_error")
    message = error.detail if isinstance(error.detail, str) else code.replace("_", " ")
    return respond(request, error.status_code, ErrorDetail(code=code, message=message), getattr(error, "headers", None))


async def _known_handler(request: Request, error: Exception) -> JSONResponse:
    status, detail = describe_error(error)
    if status >= 500:
        logger.warning(
            "%s %s -> %d %s: %s",
            request.method,
            request.url.path,
            status,
            detail.code,
            error,
            exc_info=error if not isinstance(error, LLMTwinError) else None,
        )
    return respond(request, status, detail, error_headers(error))


async def _unexpected_handler(request: Request, error: Exception) -> JSONResponse:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    status, detail = describe_error(error)
    return respond(request, status, detail)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    for kind in (LLMTwinError, TimeoutError):
        app.add_exception_handler(kind, _known_handler)
    app.add_exception_handler(Exception, _unexpected_handler)
