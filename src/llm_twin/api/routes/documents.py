"""``/documents``: add, replace and delete writing in a running service (the live index).

Writes go through the ingest pipeline (same cleaning, chunking, idempotence) in a worker thread
of anyio's default pool, apart from the ``/rag`` limit, and one at a time (``LiveIndex``'s lock),
so questions keep being answered while documents are written.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Path, Query, Request

from llm_twin.api.deps import ServiceDep
from llm_twin.api.schemas import (
    DocumentDeletedResponse,
    DocumentsWrittenResponse,
    ErrorResponse,
    IngestProgressResponse,
)
from llm_twin.domain.documents import ContentType
from llm_twin.domain.limits import MAX_DOCUMENTS_BODY_BYTES, MAX_DOCUMENTS_PER_REQUEST
from llm_twin.errors import InvalidInputError, NotFoundError, PayloadTooLargeError
from llm_twin.ingest.progress import ProgressSnapshot
from llm_twin.ingest.reader import BadLine, RawRecord, RecordError, parse_body

router = APIRouter(tags=["documents"])

_EXAMPLE_RECORD = {
    "id": "note-1",
    "content_type": "post",
    "author": "Ada Example",
    "title": "On live indexes",
    "text": "New writing is searchable within seconds of being posted.",
}
_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": f"Records in the ingest format (as in `llm-twin ingest` files): JSONL, or a JSON array. "
        f"At most {MAX_DOCUMENTS_PER_REQUEST} records and {MAX_DOCUMENTS_BODY_BYTES // (1024 * 1024)} MiB.",
        "content": {
            "application/x-ndjson": {"schema": {"type": "string"}},
            "application/json": {
                "schema": {"type": "array", "items": {"type": "object"}},
                "example": [_EXAMPLE_RECORD],
            },
        },
    }
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No document with this id"},
    413: {"model": ErrorResponse, "description": "Body over the limit"},
    422: {"model": ErrorResponse, "description": "A bad record: the field names its line (or item) and field"},
    503: {"model": ErrorResponse, "description": "The store is unavailable"},
}


async def _read_body(request: Request) -> str:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_DOCUMENTS_BODY_BYTES:
        raise PayloadTooLargeError("body", f"must be at most {MAX_DOCUMENTS_BODY_BYTES} bytes")
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > MAX_DOCUMENTS_BODY_BYTES:
            raise PayloadTooLargeError("body", f"must be at most {MAX_DOCUMENTS_BODY_BYTES} bytes")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError("body", "not valid UTF-8") from None


def _parse(text: str) -> tuple[list[RawRecord | BadLine], str]:
    try:
        items, unit = parse_body(text)
    except RecordError as error:
        raise InvalidInputError("body", str(error)) from None
    if not items:
        raise InvalidInputError("body", "no records (send JSONL or a JSON array of records)")
    if len(items) > MAX_DOCUMENTS_PER_REQUEST:
        raise InvalidInputError("body", f"at most {MAX_DOCUMENTS_PER_REQUEST} records per request, got {len(items)}")
    return items, unit


@router.post(
    "/documents",
    response_model=DocumentsWrittenResponse,
    summary="Add or replace documents (searchable when the response arrives)",
    openapi_extra=_BODY,
    responses={k: v for k, v in _ERRORS.items() if k != 404},
)
async def add_documents(request: Request, service: ServiceDep) -> DocumentsWrittenResponse:
    items, unit = _parse(await _read_body(request))  # a 422 even while the store is down
    index = await service.require_index()
    report = await anyio.to_thread.run_sync(index.add, items, unit)
    service.index_changed()
    return DocumentsWrittenResponse.from_report(report, received=len(items))


# Before the delete route: its path template would also match /documents/progress (an OPTIONS there
# would then answer 405 with `Allow: DELETE`).
@router.get(
    "/documents/progress",
    response_model=IngestProgressResponse,
    summary="Progress of the background ingest (serve --ingest / --watch)",
)
async def ingest_progress(service: ServiceDep) -> IngestProgressResponse:
    snapshot = service.ingest_progress()
    if snapshot is None:
        snapshot = ProgressSnapshot("idle", None, 0, 0, 0, 0, 0, 0.0, None, None)
    return IngestProgressResponse.from_snapshot(snapshot)


@router.delete(
    "/documents/{document_id:path}",
    response_model=DocumentDeletedResponse,
    summary="Delete a document and all its chunks",
    responses={k: v for k, v in _ERRORS.items() if k in (404, 503)},
)
async def delete_document(
    service: ServiceDep,
    document_id: Annotated[str, Path(min_length=1, max_length=500, description="The document's id.")],
    content_type: Annotated[
        ContentType | None, Query(description="Only under this content type (ids are unique per type).")
    ] = None,
) -> DocumentDeletedResponse:
    index = await service.require_index()
    removed = await anyio.to_thread.run_sync(index.delete, document_id, content_type)
    if not removed:
        raise NotFoundError("document_id", f"no document with id {document_id!r}")
    return DocumentDeletedResponse(id=document_id, deleted=removed)
