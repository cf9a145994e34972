"""``rerank: "none"``: the search order and score, unchanged."""

from __future__ import annotations

from llm_twin.domain.documents import EmbeddedChunk


class NoopReranker:
    """Keeps the search order and the search score."""

    name = "none"

    def __init__(self, reason: str = "rerank_backend=none") -> None:
        self.reason = reason
        self.description = f"none ({reason})"

    def warm_up(self) -> None:
        return None

    def run(self, query: str, chunks: list[EmbeddedChunk], top_k: int) -> list[EmbeddedChunk]:
        return list(chunks[:top_k])
