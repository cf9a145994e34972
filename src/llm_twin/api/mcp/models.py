"""What the MCP tools return: structured content (these models; their JSON schema is the tool's
``outputSchema``) and the same content as plain text, for clients that show only text."""

from __future__ import annotations

from pydantic import BaseModel, Field

from llm_twin.api.schemas import AuthorRef, Source
from llm_twin.domain.documents import EmbeddedChunk
from llm_twin.rag.answer import RAGAnswer
from llm_twin.retrieval.types import RetrievalResult


class Passage(BaseModel):
    """One retrieved chunk, whole: an agent quotes and reasons over the text itself."""

    rank: int = Field(description="1 for the best match.")
    id: str
    title: str | None
    author: str = Field(description="All authors of the source document, comma-separated.")
    content_type: str = Field(description="article, post or repository.")
    link: str | None
    date: str | None
    score: float = Field(description="Relevance (the reranker's score when one ran, else the fused search score).")
    text: str

    @classmethod
    def from_chunk(cls, rank: int, chunk: EmbeddedChunk) -> Passage:
        return cls(
            rank=rank,
            id=chunk.id,
            title=chunk.title or chunk.name,
            author=chunk.author_full_name,
            content_type=chunk.content_type,
            link=chunk.link,
            date=chunk.date,
            score=round(float(chunk.score), 6),
            text=chunk.content,
        )

    def heading(self) -> str:
        line = f"[{self.rank}] {self.title or self.id} — {self.author} ({self.content_type}, score {self.score:.3f})"
        return line + (f"\n    {self.link}" if self.link else "")


class WritingSearch(BaseModel):
    """``search_writing``: the passages retrieval found, best first; no text is generated."""

    query: str
    author: AuthorRef | None = Field(description="The author the search was restricted to, if any.")
    passages: list[Passage]
    rerank: str = Field(description='Reranker backend used, e.g. "cross-encoder", "llm" or "none".')
    warnings: list[str] = Field(default_factory=list)

    @classmethod
    def from_retrieval(cls, result: RetrievalResult) -> WritingSearch:
        return cls(
            query=result.query,
            author=AuthorRef.from_author(result.author.author),
            passages=[Passage.from_chunk(rank, chunk) for rank, chunk in enumerate(result.chunks, start=1)],
            rerank=result.rerank,
            warnings=list(result.warnings),
        )

    def as_text(self) -> str:
        if not self.passages:
            by = f" by {self.author.full_name}" if self.author else ""
            return f"No passages{by} match this query."
        return "\n\n".join(f"{p.heading()}\n{p.text}" for p in self.passages)


class TwinAnswer(BaseModel):
    """``ask_twin``: the grounded answer; it cites ``sources[n-1]`` as ``[n]``."""

    answer: str
    sources: list[Source]
    author: AuthorRef | None = Field(description="The author the answer was restricted to, if any.")
    model: str
    warnings: list[str] = Field(default_factory=list)

    @classmethod
    def from_answer(cls, answer: RAGAnswer) -> TwinAnswer:
        return cls(
            answer=answer.answer,
            sources=[Source.from_chunk(chunk) for chunk in answer.sources],
            author=AuthorRef.from_author(answer.author),
            model=answer.model,
            warnings=list(answer.warnings),
        )

    def as_text(self) -> str:
        """The answer, then its numbered sources, so the citations resolve in a text-only client."""
        lines = [self.answer]
        if self.sources:
            lines += ["", "Sources:"]
            for number, source in enumerate(self.sources, start=1):
                line = f"[{number}] {source.title or source.snippet[:80]} — {source.author_full_name} ({source.content_type})"
                lines.append(line + (f" {source.link}" if source.link else ""))
        return "\n".join(lines)
