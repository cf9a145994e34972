"""The protocol every LLM backend implements (complete and stream chat messages), and the optional
capabilities a backend may add: bounding a whole call in time, and scoring next tokens.

Callers test a capability with ``isinstance`` (the protocols are runtime-checkable), so they never
need to know which client they hold or touch its internals.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypedDict, runtime_checkable


class ChatMessage(TypedDict):
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = 256
    temperature: float = 0.1
    top_p: float = 0.9
    repetition_penalty: float = 1.1
    stop: tuple[str, ...] = ()


@dataclass
class Completion:
    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


@runtime_checkable
class LLMClient(Protocol):
    #: Name reported in responses and traces.
    model_name: str
    #: Context window in tokens (prompt + new tokens), used for the prompt budget.
    context_window: int

    def warm_up(self) -> None:
        """Load weights / open connections once per process; idempotent."""

    def count_tokens(self, text: str) -> int:
        """Token count of ``text`` for this model (an estimate is fine for remote backends)."""

    def complete(self, messages: list[ChatMessage], params: GenerationParams) -> Completion:
        """Blocking completion; raises LLMUnavailableError / LLMTimeoutError."""

    def stream(self, messages: list[ChatMessage], params: GenerationParams) -> Generator[str, None, None]:
        """Yield text pieces as they are generated; closing the generator stops generation."""

    def close(self) -> None:
        """Release connections (idempotent); a closed client opens them again on next use."""


@runtime_checkable
class SupportsDeadline(Protocol):
    """A client that bounds a whole completion itself: queue wait, retries and generation."""

    def complete_within(self, messages: list[ChatMessage], params: GenerationParams, timeout_s: float) -> Completion:
        """``complete`` that raises ``LLMTimeoutError`` once ``timeout_s`` has passed.

        Nothing keeps running for the call afterwards (the model is free again), unlike a call that
        is merely abandoned by its caller.
        """


@runtime_checkable
class TokenScorer(Protocol):
    """A client that can read the model's next-token log-probabilities (the LLM reranker uses it)."""

    def next_token_logprobs(self, messages: list[ChatMessage], candidates: Sequence[str]) -> dict[str, float]:
        """Log-probability of each candidate as the first token of the answer to ``messages``.

        A candidate of several tokens is scored by its first token. Keys are the token texts that
        match a candidate (case and surrounding whitespace aside); a candidate the backend cannot see
        (outside a remote endpoint's top-k list) is missing.
        """
