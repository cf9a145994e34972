"""Limits of a question (``/rag``, ``llm-twin ask``, ``llm-twin retrieve``), defined once.

The API schema and the CLI read these constants for their own declarations (OpenAPI, option help),
and ``check_request`` is the one validation: the retrieval pipeline calls it for every caller,
and the entry points call it first only so that bad input is rejected before any model or store
is touched (a 422 even while the store is down).
"""

from __future__ import annotations

from collections.abc import Sequence

from llm_twin.domain.conversation import ROLES, Turn
from llm_twin.errors import InvalidInputError

#: A question, not a document: longer input is refused, never cut silently.
MAX_QUERY_CHARS = 2000
MIN_K = 1
MAX_K = 100
MIN_EXPAND_TO_N = 1
MAX_AUTHOR_CHARS = 200
#: A conversation's earlier turns (``history``): enough for a chat, small enough that the question
#: rewrite stays one short helper-LLM call. Characters, not tokens, so the check needs no tokenizer
#: (20 turns of 16,000 characters is about 4,000 tokens in English).
MAX_HISTORY_TURNS = 20
MAX_HISTORY_CHARS = 16_000
#: ``GET /authors``: people per page (the page's author picker asks for one screenful at a time).
MAX_AUTHORS_PAGE = 200
DEFAULT_AUTHORS_PAGE = 50
#: Per-request generation overrides (``/v1/chat/completions``); the configured defaults are not bounded by these.
MAX_REQUEST_NEW_TOKENS = 4096
MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 64
#: ``POST /feedback``: a comment is a sentence or two, not a document.
MAX_FEEDBACK_COMMENT_CHARS = 2000
#: A W3C trace id: 32 lowercase hex digits.
TRACE_ID_PATTERN = r"^[0-9a-f]{32}$"


def check_request(
    query: str,
    *,
    expand_max: int,
    k: int | None = None,
    expand_to_n: int | None = None,
    author: str | None = None,
    history: Sequence[Turn] = (),
) -> str:
    """The query without surrounding whitespace, or ``InvalidInputError`` naming the first bad field.

    ``None`` means "use the configured default" and is not checked; ``expand_max`` is the
    configured ceiling (``LLM_TWIN_EXPAND_MAX``).
    """
    if not isinstance(query, str) or not query.strip():
        raise InvalidInputError("query", "must not be empty")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidInputError("query", f"must be at most {MAX_QUERY_CHARS} characters")
    if k is not None and not MIN_K <= k <= MAX_K:
        raise InvalidInputError("k", f"must be between {MIN_K} and {MAX_K}")
    if expand_to_n is not None and not MIN_EXPAND_TO_N <= expand_to_n <= expand_max:
        raise InvalidInputError(
            "expand_to_n", f"must be between {MIN_EXPAND_TO_N} and {expand_max} (LLM_TWIN_EXPAND_MAX)"
        )
    if author is not None:
        if not author.strip():
            raise InvalidInputError("author", "must not be empty")
        if len(author) > MAX_AUTHOR_CHARS:
            raise InvalidInputError("author", f"must be at most {MAX_AUTHOR_CHARS} characters")
    check_history(history)
    return query.strip()


def check_history(history: Sequence[Turn]) -> None:
    """``InvalidInputError`` on ``history`` when it has too many turns or characters, or a bad turn."""
    if len(history) > MAX_HISTORY_TURNS:
        raise InvalidInputError("history", f"must have at most {MAX_HISTORY_TURNS} turns (got {len(history)})")
    total = 0
    for i, turn in enumerate(history):
        if turn.role not in ROLES:
            raise InvalidInputError("history", f"turn {i}: role must be one of {', '.join(ROLES)}")
        if not isinstance(turn.content, str):
            raise InvalidInputError("history", f"turn {i}: content must be text")
        total += len(turn.content)
    if total > MAX_HISTORY_CHARS:
        raise InvalidInputError("history", f"must have at most {MAX_HISTORY_CHARS} characters in all (got {total})")


#: ``POST /documents`` (and ``llm-twin ingest --url``, which sends batches under both): a request
#: is written as one unit, so it is bounded in records and bytes; more is sent as more requests.
MAX_DOCUMENTS_PER_REQUEST = 1000
MAX_DOCUMENTS_BODY_BYTES = 16 * 1024 * 1024
