"""Fakes at the boundaries (retrieval, LLM) for the fast API tests; the slow tests use the real ones."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from llm_twin.domain.authors import Author
from llm_twin.domain.conversation import Turn
from llm_twin.domain.documents import EmbeddedChunk
from llm_twin.domain.twins import TwinCatalog
from llm_twin.llm.base import ChatMessage, Completion, GenerationParams, LLMClient
from llm_twin.retrieval.author_resolver import AuthorResolver
from llm_twin.retrieval.conversation import FollowUpResolver, HelperLLMQuestionRewriter
from llm_twin.retrieval.types import AuthorMatch, RetrievalResult
from llm_twin.settings import load_settings
from llm_twin.store.registry import AuthorRegistry

GUIDO = Author.from_name("Guido van Rossum")
BARRY = Author.from_name("Barry Warsaw")


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

    def twins(self) -> TwinCatalog:
        return TwinCatalog([GUIDO])

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


class PeopleFakeRetrieval(FakeRetrieval):
    """Fixed chunks by two people; the real author matcher and follow-up resolver (with ``helper``, a
    fake helper LLM, or none) choose whose chunks a question gets, in the order the retrieval
    pipeline decides: an explicit author, else the conversation's, else the one the question names."""

    def __init__(self, helper: LLMClient | None = None) -> None:
        super().__init__([make_chunk(1), make_chunk(2), make_chunk(3, "Barry Warsaw"), make_chunk(4, "Barry Warsaw")])
        self.resolver = AuthorResolver([GUIDO, BARRY])
        self.follow_up = FollowUpResolver(HelperLLMQuestionRewriter(helper, timeout_s=5.0))

    def twins(self) -> TwinCatalog:
        return self.resolver.twins

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
        followup = self.follow_up.run(query, history, self.resolver) if history else None
        question = followup.question if followup else query
        if author is not None:
            match = self.resolver.require(author)
        elif followup is not None and followup.author is not None:
            match = followup.author
        else:
            match = self.resolver.run(question)
        person = match.author
        chunks = [c for c in self.chunks if person is None or person.id in c.author_ids]
        return RetrievalResult(
            query=query,
            rewritten_query=question if followup else None,
            author=match,
            expanded_queries=[question],
            chunks=chunks[: k or 3],
            rerank="none",
            timings_ms={"search": 1.0, "total": 2.0},
            warnings=list(followup.warnings) if followup else [],
        )


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
        self.params: list[GenerationParams] = []  # of every call
        self.messages: list[list[ChatMessage]] = []

    def close(self) -> None:
        self.closed = True

    def warm_up(self) -> None:
        pass

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def _begin(self, messages: list[ChatMessage], params: GenerationParams) -> None:
        self.calls += 1
        self.messages.append(messages)
        self.params.append(params)
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(30), "test gate never opened"
        if self.error is not None:
            raise self.error

    def complete(self, messages: list[ChatMessage], params: GenerationParams) -> Completion:
        self._begin(messages, params)
        pieces = self.pieces[: params.max_new_tokens]
        finish = "length" if len(pieces) < len(self.pieces) else "stop"
        return Completion(text="".join(pieces), prompt_tokens=42, completion_tokens=len(pieces), finish_reason=finish)

    def stream(self, messages: list[ChatMessage], params: GenerationParams) -> Iterator[str]:
        self._begin(messages, params)
        try:
            for n, piece in enumerate(self.pieces):
                if self.stream_error is not None and n >= self.stream_error_after:
                    raise self.stream_error
                yield piece
                time.sleep(0.001)
        finally:
            self.stream_closed.set()


def write_registry(data_dir: Path) -> None:
    """Three names, two of them one person (a name rule links "Pablo Galindo" to the longer byline)."""
    names = ("Guido van Rossum", "Pablo Galindo Salgado", "Pablo Galindo")
    guido, pablo, pablo_commits = (Author.from_name(name).id for name in names)
    documents = [
        *((f"pep-{i}", "article", "h", 1, [guido]) for i in range(3)),
        ("python-dev-1", "post", "h", 1, [guido]),
        ("pep-0634", "article", "h", 1, [pablo, guido]),
        ("cpython@1", "repository", "h", 1, [pablo_commits]),
    ]
    registry = AuthorRegistry(load_settings(data_dir=data_dir).registry_path)
    try:
        registry.upsert_authors(Author.from_name(name) for name in names)
        registry.record_documents(documents)
        registry.refresh_counts()
    finally:
        registry.close()
