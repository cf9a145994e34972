"""A fake ``LLMClient`` for the helper-LLM boundary (importable from any test module)."""

from __future__ import annotations

import threading
import time

from llm_twin.llm.base import Completion, GenerationParams


class FakeLLM:
    """Answers with a fixed text, raises, or hangs; records every call's messages and params."""

    model_name = "fake"
    context_window = 2048

    def __init__(self, answer: str = "", error: Exception | None = None, delay_s: float = 0.0) -> None:
        self.answer, self.error, self.delay_s = answer, error, delay_s
        self.calls: list[tuple[list, GenerationParams]] = []
        self._lock = threading.Lock()

    def close(self) -> None:
        self.closed = True

    def warm_up(self) -> None:
        return None

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def complete(self, messages, params: GenerationParams) -> Completion:
        with self._lock:
            self.calls.append((messages, params))
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.error:
            raise self.error
        return Completion(text=self.answer)

    def stream(self, messages, params):
        yield self.complete(messages, params).text
