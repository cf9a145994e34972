"""``GET /authors``: the people whose writing is indexed, searchable and paginated (the page's author picker)."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query

from llm_twin.api.deps import ServiceDep
from llm_twin.api.people import read_people, registry_reader
from llm_twin.api.schemas import AuthorsPage, AuthorSummary, ErrorResponse
from llm_twin.domain.authors import normalize_name
from llm_twin.domain.limits import DEFAULT_AUTHORS_PAGE, MAX_AUTHOR_CHARS, MAX_AUTHORS_PAGE

router = APIRouter(tags=["authors"])


def matches(row: dict[str, Any], needle: str) -> bool:
    """``needle`` (normalized) is part of the shown name or of any other name the person writes under."""
    names = [row["name"], *(alias["name"] for alias in row["names"])]
    return any(needle in normalize_name(name) for name in names)


@router.get(
    "/authors",
    response_model=AuthorsPage,
    summary="The people whose writing is indexed, with document counts",
    description="One entry per person (names linked as in `llm-twin authors`), most documents first. "
    "`q` keeps the people with a name containing it (case and accents ignored).",
    responses={
        422: {"model": ErrorResponse, "description": "Invalid input; `field` names it"},
        503: {"model": ErrorResponse, "description": "No author registry yet (nothing ingested)"},
    },
)
async def authors(
    service: ServiceDep,
    q: Annotated[str | None, Query(max_length=MAX_AUTHOR_CHARS, description="Part of a name.")] = None,
    offset: Annotated[int, Query(ge=0, description="People to skip.")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_AUTHORS_PAGE, description="People per page.")] = DEFAULT_AUTHORS_PAGE,
) -> AuthorsPage:
    rows = await anyio.to_thread.run_sync(read_people, service.settings, await registry_reader(service))
    needle = normalize_name(q).strip() if q else ""
    if needle:
        rows = [row for row in rows if matches(row, needle)]
    return AuthorsPage(
        total=len(rows),
        offset=offset,
        limit=limit,
        q=q or None,
        authors=[AuthorSummary.from_row(row) for row in rows[offset : offset + limit]],
    )
