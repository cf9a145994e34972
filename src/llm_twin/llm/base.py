"""The one protocol every LLM backend implements: complete and stream chat messages."""

from __future__ import annotations

from collections.abc import Iterator
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

    def stream(self, messages: list[ChatMessage], params: GenerationParams) -> Iterator[str]:
        """Yield text pieces as they are generated."""
