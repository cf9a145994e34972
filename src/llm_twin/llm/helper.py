"""The one way to call the helper LLM (query expansion, HyDE, self-query): bounded in time, never raising.

Retrieval treats the helper as optional: a failure or a timeout degrades one step (the caller
words the warning), it never fails the request. So ``ask_helper`` returns a ``HelperResult``
holding either the text or a short description of what went wrong.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from llm_twin.domain.deadline import Deadline
from llm_twin.errors import LLMTimeoutError
from llm_twin.llm.base import ChatMessage, GenerationParams, LLMClient, SupportsDeadline

T = TypeVar("T")


@dataclass(frozen=True)
class HelperResult:
    """The helper's answer (``text``), or why there is none (``error``, ``error_type``, ``timed_out``)."""

    text: str | None = None
    error: str | None = None  # "LLMError: boom", or the type alone when the error has no message
    error_type: str | None = None  # "LLMError"
    timed_out: bool = False

    @property
    def failure(self) -> str:
        """Either "timed out" or "failed", for the caller's warning."""
        return "timed out" if self.timed_out else "failed"


def ask_helper(llm: LLMClient, messages: list[ChatMessage], params: GenerationParams, timeout_s: float) -> HelperResult:
    """One completion from ``llm`` within ``timeout_s`` seconds, queue wait included, and never past the
    request's deadline (``Deadline.current()``): a call with no time left is not made."""
    timeout_s = Deadline.bound_current(timeout_s)
    if timeout_s <= 0:
        return HelperResult(error="request deadline passed", error_type="DeadlineExceededError", timed_out=True)
    try:
        if isinstance(llm, SupportsDeadline):
            completion = llm.complete_within(messages, params, timeout_s)
        else:
            completion = call_with_timeout(lambda: llm.complete(messages, params), timeout_s)
    except Exception as error:
        return HelperResult(
            error=f"{type(error).__name__}: {error}" if str(error) else type(error).__name__,
            error_type=type(error).__name__,
            timed_out=isinstance(error, (LLMTimeoutError, TimeoutError)),
        )
    return HelperResult(text=completion.text)


def call_with_timeout(fn: Callable[[], T], timeout_s: float) -> T:
    """``fn()`` in a daemon thread; ``LLMTimeoutError`` once ``timeout_s`` passes.

    Only for clients that cannot bound a call themselves (no ``SupportsDeadline``): the call is
    abandoned, not killed (Python cannot stop a thread), so it finishes in the background and its
    result is dropped. A daemon thread, unlike an executor's worker, never delays shutdown.
    """
    done = threading.Event()
    outcome: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(fn())
        except BaseException as error:
            failure.append(error)
        finally:
            done.set()

    threading.Thread(target=target, name="helper-llm-call", daemon=True).start()
    if not done.wait(timeout_s):
        raise LLMTimeoutError(f"helper LLM did not answer within {timeout_s:g}s")
    if failure:
        raise failure[0]
    return outcome[0]
