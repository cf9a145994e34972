"""One deadline per request, shared by its stages.

The API creates a ``Deadline`` when a request arrives (``LLM_TWIN_REQUEST_DEADLINE_S``); the RAG
pipeline makes it current for the request's stages. Helper-LLM calls take ``bound(own_timeout)``,
so a slow expansion can never use time that generation needs, and a stage that would start after
the deadline raises ``DeadlineExceededError`` (504) instead of spending a prompt evaluation.

The current deadline is a context variable, like the trace context, because the stages that read it
run behind shared protocols (``LLMClient``, ``Reranker``) and in worker threads that copy the
caller's context: threading a parameter through every backend would change all their signatures.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from llm_twin.errors import DeadlineExceededError

_current: ContextVar[Deadline | None] = ContextVar("llm_twin_deadline", default=None)


@dataclass(frozen=True)
class Deadline:
    """A point on the ``time.monotonic()`` clock, and the budget it was made from (for messages)."""

    at: float
    budget_s: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds, seconds)

    def remaining(self) -> float:
        """Seconds left; negative once passed."""
        return self.at - time.monotonic()

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0

    def bound(self, timeout_s: float) -> float:
        """A stage's own timeout, cut to what is left (never negative)."""
        return max(0.0, min(timeout_s, self.remaining()))

    def check(self, stage: str) -> None:
        """Raise ``DeadlineExceededError`` if the deadline passed before ``stage`` starts."""
        if self.expired:
            raise DeadlineExceededError(f"request deadline of {self.budget_s:g}s passed before {stage}")

    # --- the request's current deadline ------------------------------------------------------

    @staticmethod
    def current() -> Deadline | None:
        return _current.get()

    @staticmethod
    def bound_current(timeout_s: float) -> float:
        """``timeout_s`` cut to the current deadline, if there is one."""
        deadline = _current.get()
        return timeout_s if deadline is None else deadline.bound(timeout_s)

    @staticmethod
    def check_current(stage: str) -> None:
        deadline = _current.get()
        if deadline is not None:
            deadline.check(stage)


@contextmanager
def deadline_scope(deadline: Deadline | None) -> Iterator[Deadline | None]:
    """Make ``deadline`` the current one for the block (and the threads that copy this context)."""
    token = _current.set(deadline)
    try:
        yield deadline
    finally:
        _current.reset(token)
