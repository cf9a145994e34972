"""The helper-LLM call wrapper: text or a described failure, bounded in time, never raising."""

from __future__ import annotations

import time

import pytest

from llm_fakes import FakeLLM
from llm_twin.errors import LLMError, LLMTimeoutError, LLMUnavailableError
from llm_twin.llm.base import Completion, GenerationParams, SupportsDeadline
from llm_twin.llm.helper import ask_helper, call_with_timeout

MESSAGES = [{"role": "user", "content": "Question: what is RAG?"}]
PARAMS = GenerationParams(max_new_tokens=8, temperature=0.0)


def test_answer_is_returned_as_text() -> None:
    llm = FakeLLM("an answer")
    result = ask_helper(llm, MESSAGES, PARAMS, timeout_s=5)
    assert result.text == "an answer" and result.error is None
    assert llm.calls == [(MESSAGES, PARAMS)]


@pytest.mark.parametrize(
    ("error", "described", "failure"),
    [
        (LLMError("boom"), "LLMError: boom", "failed"),
        (LLMUnavailableError(""), "LLMUnavailableError", "failed"),
        (LLMTimeoutError("queue"), "LLMTimeoutError: queue", "timed out"),
        (ValueError("bad"), "ValueError: bad", "failed"),
    ],
)
def test_failures_are_described_not_raised(error: Exception, described: str, failure: str) -> None:
    result = ask_helper(FakeLLM(error=error), MESSAGES, PARAMS, timeout_s=5)
    assert result.text is None
    assert result.error == described and result.error_type == type(error).__name__
    assert result.failure == failure


def test_a_client_that_cannot_time_out_is_abandoned_at_the_deadline() -> None:
    started = time.perf_counter()
    result = ask_helper(FakeLLM("late", delay_s=2.0), MESSAGES, PARAMS, timeout_s=0.2)
    assert time.perf_counter() - started < 1.5
    assert result.text is None and result.timed_out and result.failure == "timed out"
    assert result.error_type == "LLMTimeoutError"


class _BoundedLLM(FakeLLM):
    """A client that bounds calls itself: the wrapper must hand it the deadline, not start a thread."""

    def __init__(self, answer: str) -> None:
        super().__init__(answer)
        self.timeouts: list[float] = []

    def complete(self, messages, params: GenerationParams) -> Completion:
        raise AssertionError("complete_within is expected")

    def complete_within(self, messages, params: GenerationParams, timeout_s: float) -> Completion:
        self.timeouts.append(timeout_s)
        return Completion(text=self.answer)


def test_a_client_with_a_deadline_gets_it() -> None:
    llm = _BoundedLLM("bounded")
    assert isinstance(llm, SupportsDeadline) and not isinstance(FakeLLM(), SupportsDeadline)
    assert ask_helper(llm, MESSAGES, PARAMS, timeout_s=3.5).text == "bounded"
    assert llm.timeouts == [3.5]


def test_call_with_timeout_passes_results_and_errors() -> None:
    assert call_with_timeout(lambda: 42, 1.0) == 42
    with pytest.raises(ZeroDivisionError):
        call_with_timeout(lambda: 1 / 0, 1.0)
