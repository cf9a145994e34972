"""The request deadline: remaining time, bounds for stage timeouts, the current one per context."""

from __future__ import annotations

import contextvars
import threading
import time

import pytest

from llm_fakes import FakeLLM
from llm_twin.domain.deadline import Deadline, deadline_scope
from llm_twin.errors import DeadlineExceededError
from llm_twin.llm.base import GenerationParams
from llm_twin.llm.helper import ask_helper


def test_bound_cuts_a_stage_timeout_to_what_is_left() -> None:
    deadline = Deadline.after(10.0)
    assert 9.0 < deadline.bound(20.0) <= 10.0
    assert deadline.bound(2.0) == 2.0
    assert not deadline.expired
    deadline.check("search")  # time left: no error


def test_an_expired_deadline_refuses_the_next_stage() -> None:
    deadline = Deadline(at=time.monotonic() - 1, budget_s=5.0)
    assert deadline.expired and deadline.bound(3.0) == 0.0
    with pytest.raises(DeadlineExceededError, match="5s passed before generation") as error:
        deadline.check("generation")
    assert error.value.http_status == 504 and error.value.code == "deadline_exceeded"


def test_the_current_deadline_follows_the_context_into_worker_threads() -> None:
    assert Deadline.current() is None and Deadline.bound_current(7.0) == 7.0
    seen: list[float] = []
    with deadline_scope(Deadline.after(1.0)):
        context = contextvars.copy_context()
        thread = threading.Thread(target=context.run, args=(lambda: seen.append(Deadline.bound_current(7.0)),))
        thread.start()
        thread.join()
    assert 0 < seen[0] <= 1.0
    assert Deadline.current() is None  # reset on leaving the scope


def test_a_helper_call_gets_at_most_the_time_left_and_none_once_it_is_gone() -> None:
    helper = FakeLLM(answer="late", delay_s=2.0)
    started = time.perf_counter()
    with deadline_scope(Deadline.after(0.2)):
        result = ask_helper(helper, [{"role": "user", "content": "q"}], GenerationParams(), timeout_s=20.0)
    assert result.text is None and result.timed_out
    assert time.perf_counter() - started < 1.0  # the deadline's 0.2 s, not the helper's 20 s
    with deadline_scope(Deadline(at=time.monotonic() - 1, budget_s=1.0)):
        result = ask_helper(helper, [{"role": "user", "content": "q"}], GenerationParams(), timeout_s=20.0)
    assert result.timed_out and len(helper.calls) == 1  # no time left: not even asked
