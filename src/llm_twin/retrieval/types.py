"""Typed results passed between retrieval components (Haystack-style: each ``run()`` returns one)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from llm_twin.domain.authors import Author
from llm_twin.domain.documents import EmbeddedChunk

# --- degradation codes (``degraded`` in results and answers, ``degraded`` span attributes) -----------
#: A follow-up could not be rewritten into a standalone question: searched as asked.
REWRITE_FAILED = "rewrite_failed"
#: The helper LLM failed or timed out: searched with the original query only.
EXPANSION_FAILED = "expansion_failed"
#: The helper LLM failed while looking for an author the matcher did not find: no author filter.
SELF_QUERY_HELPER_FAILED = "self_query_helper_failed"
#: The HyDE passage could not be written: searched without it.
HYDE_FAILED = "hyde_failed"
#: The reranker raised: the candidates keep the search's fused order.
RERANK_FAILED = "rerank_failed"
#: Prefix of ``collection_unavailable:<name>``: one collection failed, the others answered.
COLLECTION_UNAVAILABLE = "collection_unavailable"


def collection_unavailable(name: str) -> str:
    return f"{COLLECTION_UNAVAILABLE}:{name}"


#: matched: ``author`` is set; ambiguous: one name fits several authors (the candidates); several:
#: different authors are named (the candidates); none: nobody (candidates, if any, are the closest
#: known names, for the message).
AuthorStatus = Literal["matched", "ambiguous", "several", "none"]


@dataclass
class AuthorMatch:
    """Outcome of self-query: the author (or none) and why; ambiguous names list the candidates.

    ``reason`` is for people; code decides on ``status`` ("matched" whenever ``author`` is set).
    """

    author: Author | None
    reason: str
    candidates: list[Author] = field(default_factory=list)
    matched_text: str | None = None
    status: AuthorStatus = "none"
    #: The helper LLM was asked and failed (``SELF_QUERY_HELPER_FAILED``); ``reason`` says how.
    helper_failed: bool = False

    def __post_init__(self) -> None:
        if self.author is not None:
            self.status = "matched"


@dataclass
class ExpansionResult:
    queries: list[str]  # the original query always first
    error: str | None = None  # set when the helper LLM failed and only the original is used
    #: ``EXPANSION_FAILED`` when the helper was asked and gave nothing usable (not when none is configured).
    degraded: str | None = None


class Reranker(Protocol):
    #: Backend name reported in responses: "cross-encoder" | "llm" | "none".
    name: str
    #: The backend and its model, for logs: "cross-encoder (models/cross-encoder/x)", "none (why)".
    description: str

    def warm_up(self) -> None: ...

    def run(self, query: str, chunks: list[EmbeddedChunk], top_k: int) -> list[EmbeddedChunk]:
        """Best ``top_k`` chunks by relevance, ``score`` set to the reranker's score."""
        ...


@dataclass
class RetrievalResult:
    query: str
    author: AuthorMatch
    expanded_queries: list[str]
    chunks: list[EmbeddedChunk]
    rerank: str
    timings_ms: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    #: Codes of the stages that degraded (the constants above); ``warnings`` says the same in words.
    degraded: list[str] = field(default_factory=list)
    hypothetical_document: str | None = None  # the HyDE passage, when HyDE ran
    #: What was searched: ``expanded_queries`` without the resolved author's names (the filter does
    #: that job); the same as ``expanded_queries`` when no author was resolved.
    search_queries: list[str] = field(default_factory=list)
    #: A follow-up's standalone question (what was searched instead of ``query``); None on a first turn.
    rewritten_query: str | None = None
    #: Candidates the search handed to the reranker (None: not reported).
    rerank_candidates: int | None = None
