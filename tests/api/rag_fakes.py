"""Fakes at the boundaries (retrieval, LLM) for the fast API tests; the slow tests use the real ones."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

from llm_twin.domain.authors import Author
from llm_twin.domain.conversation import Turn
from llm_twin.domain.documents import EmbeddedChunk
from llm_twin.llm.base import ChatMessage, Completion, GenerationParams
from llm_twin.retrieval.types import AuthorMatch, RetrievalResult

GUIDO = Author.from_name("Guido van Rossum")


def make_chunk(i: int, author: str = "Guido van Rossum", content_type: str = "article") -> EmbeddedChunk:
    return EmbeddedChunk(
        id=f"chunk-{i}",
        collection={"article": "embedded_articles", "post": "embedded_posts"}.get(
            content_type, "embedded_repositories"
        ),
        content_type=content_type,  # type: ignore[arg-type]
        document_id=f"pep-{i:04d}",
        chunk_index=0,
        content=f"Structural pattern matching, part {i}: match statements and case clauses.",
        author_ids=[Author.from_name(author).id],
        author_full_name=author,
        title=f"PEP {i}",
        link=f"https://peps.python.org/pep-{i:04d}/",
        score=1.0 / i,
    )


class FakeRetrieval:
    """Returns fixed chunks; ``error`` raises from run(), ``warm_error`` from warm_up()."""

    store_backend = "embedded"
    rerank_name = "none"

    def __init__(self, chunks: list[EmbeddedChunk] | None = None) -> None:
        self.chunks = [make_chunk(i) for i in (1, 2, 3)] if chunks is None else chunks
        self.error: BaseException | None = None
        self.warm_error: BaseException | None = None
        self.calls: list[dict] = []
        self.closed = False

    def warm_up(self) -> None:
        if self.warm_error is not None:
            raise self.warm_error

    def authors(self) -> list[Author]:
        return [GUIDO]

    def run(
        self,
        query: str,
        k: int | None = None,
        expand_to_n: int | None = None,
        author: str | None = None,
        *,
        history: Sequence[Turn] = (),
    ) -> RetrievalResult:
        self.calls.append({"query": query, "k": k, "expand_to_n": expand_to_n, "author": author, "history": history})
        if self.error is not None:
            raise self.error
        match = AuthorMatch(author=GUIDO if author else None, reason="explicit" if author else "none")
        return RetrievalResult(
            query=query,
            author=match,
            expanded_queries=[query],
            chunks=list(self.chunks[: k or len(self.chunks)]),
            rerank="none",
            timings_ms={"search": 1.0, "total": 2.0},
        )

    def close(self) -> None:
        self.closed = True


class FakeLLM:
    """An ``LLMClient`` with scripted output, errors and an optional gate to hold a generation."""

    model_name = "fake-llm"
    context_window = 4096

    def __init__(self, pieces: tuple[str, ...] = ("Pattern ", "matching ", "was proposed [1].")) -> None:
        self.pieces = pieces
        self.error: BaseException | None = None
        self.stream_error: BaseException | None = None  # raised mid-stream, after stream_error_after pieces
        self.stream_error_after = 1
        self.gate: threading.Event | None = None  # generation waits for it
        self.entered = threading.Event()
        self.stream_closed = threading.Event()
        self.calls = 0

    def close(self) -> None:
        self.closed = True

    def warm_up(self) -> None:
        pass

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def _begin(self) -> None:
        self.calls += 1
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(30), "test gate never opened"
        if self.error is not None:
            raise self.error

    def complete(self, messages: list[ChatMessage], params: GenerationParams) -> Completion:
        self._begin()
        return Completion(
            text="".join(self.pieces), prompt_tokens=42, completion_tokens=len(self.pieces), finish_reason="stop"
        )

    def stream(self, messages: list[ChatMessage], params: GenerationParams) -> Iterator[str]:
        self._begin()
        try:
            for n, piece in enumerate(self.pieces):
                if self.stream_error is not None and n >= self.stream_error_after:
                    raise self.stream_error
                yield piece
                time.sleep(0.001)
        finally:
            self.stream_closed.set()
