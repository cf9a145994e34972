"""Thread priority: computing threads step back so the event loop answers at once."""

from __future__ import annotations

import sys
import threading

import pytest

from llm_twin.scheduling import lower_thread_priority, niced, thread_niceness

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's"),
    # Nice values stop at 19: run niced (nice -n 19 pytest), there is no room left to step back into.
    pytest.mark.skipif((thread_niceness() or 0) > 13, reason="the tests run niced already"),
]


def in_thread(fn):
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(fn()))
    thread.start()
    thread.join(10)
    return result[0]


def test_only_the_calling_thread_steps_back_and_threads_it_starts_inherit() -> None:
    before = thread_niceness()
    assert before is not None

    def step_back() -> tuple[bool, int | None, int | None]:
        changed = lower_thread_priority(before + 3)
        return changed, thread_niceness(), in_thread(thread_niceness)  # a pool thread started afterwards

    changed, own, child = in_thread(step_back)
    assert changed and own == before + 3 and child == before + 3
    assert thread_niceness() == before  # the caller of the test is untouched


def test_never_lowers_and_zero_changes_nothing() -> None:
    base = thread_niceness()
    assert base is not None

    def twice() -> tuple[int | None, int | None]:
        lower_thread_priority(base + 6)
        lower_thread_priority(base + 2)  # a smaller value does not raise the priority again
        after_smaller = thread_niceness()
        assert lower_thread_priority(0) is False
        return after_smaller, thread_niceness()

    assert in_thread(twice) == (base + 6, base + 6)


def test_niced_runs_the_function_at_that_niceness() -> None:
    base = thread_niceness()
    assert base is not None
    assert in_thread(niced(thread_niceness, base + 4)) == base + 4
