"""Query expansion: the reformulation parser, and the expander against a fake LLM at the boundary."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from llm_fakes import FakeLLM
from llm_twin.errors import LLMError, LLMTimeoutError
from llm_twin.retrieval.expansion import QueryExpander, parse_reformulations

ORIGINAL = "What did Guido van Rossum write about pattern matching?"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "1. How does Guido describe match statements?\n2. Guido van Rossum on structural pattern matching",
            ["How does Guido describe match statements?", "Guido van Rossum on structural pattern matching"],
        ),
        ("1) First question?\n\n\n2) Second question?", ["First question?", "Second question?"]),
        ("- First question?\n* Second question?\n• Third question?", ["First question?", "Second question?"]),
        ('["First question?", "Second question?", "Third?"]', ["First question?", "Second question?"]),
        (
            '```json\n{"questions": ["First question?", "Second question?"]}\n```',
            ["First question?", "Second question?"],
        ),
        (
            '[{"question": "First question?"}, {"question": "Second question?"}]',
            ["First question?", "Second question?"],
        ),
        ("First question? #next-question# Second question?", ["First question?", "Second question?"]),
        ("First question?#Second question?", ["First question?", "Second question?"]),
        (
            "Here are 2 alternative questions:\n1. \"First question?\"\n2. 'Second question?'",
            ["First question?", "Second question?"],
        ),
        ("Sure! First question?\nSecond question?", ["First question?", "Second question?"]),
        ("Q1: First question?\nQuestion 2: Second question?", ["First question?", "Second question?"]),
        # duplicates (case, punctuation) and copies of the original are dropped
        (
            f"1. {ORIGINAL.upper()}\n2. First question?\n3. first question\n4. Second question?",
            ["First question?", "Second question?"],
        ),
        (
            "How is C# pattern matching different?\nSecond question?",
            ["How is C# pattern matching different?", "Second question?"],
        ),
        ("A: Pattern matching was added in 3.10.\nFirst question?", ["First question?"]),  # answers dropped
        ("First question?\n" + "This is an essay, not a query. " * 20, ["First question?"]),
        ("", []),
        ("   \n\n", []),
        ("1.\n2.\n-", []),
    ],
)
def test_parse_reformulations(text: str, expected: list[str]) -> None:
    assert parse_reformulations(text, ORIGINAL, want=2) == expected


def test_parse_reformulations_respects_want() -> None:
    text = "\n".join(f"{i}. Question number {i}?" for i in range(1, 8))
    assert len(parse_reformulations(text, ORIGINAL, want=4)) == 4
    assert parse_reformulations(text, ORIGINAL, want=0) == []


def test_expander_keeps_the_original_first() -> None:
    llm = FakeLLM(
        "1. How does Guido describe match statements?\n2. PEP 634 structural pattern matching rationale\n3. extra"
    )
    result = QueryExpander(llm, max_n=5, timeout_s=5).run(ORIGINAL, n=3)
    assert result.error is None
    assert result.queries == [
        ORIGINAL,
        "How does Guido describe match statements?",
        "PEP 634 structural pattern matching rationale",
    ]
    messages, _params = llm.calls[0]
    assert messages[-1]["content"] == f"Question: {ORIGINAL}"
    # One more than needed is asked for: small models often echo the question first.
    assert "exactly 3 lines" in messages[0]["content"]


def test_expander_caps_n_and_skips_the_llm_for_one_query() -> None:
    llm = FakeLLM("\n".join(f"Question {i}?" for i in range(10)))
    assert QueryExpander(llm, max_n=3).run(ORIGINAL, n=10).queries == [ORIGINAL, "Question 0?", "Question 1?"]
    calls = len(llm.calls)
    result = QueryExpander(llm, max_n=3).run(ORIGINAL, n=1)
    assert result.queries == [ORIGINAL] and result.error is None
    assert QueryExpander(llm, max_n=3).run(ORIGINAL, n=0).queries == [ORIGINAL]
    assert len(llm.calls) == calls


def test_expander_without_llm_reports_it() -> None:
    result = QueryExpander(None, max_n=3).run(ORIGINAL, n=3)
    assert result.queries == [ORIGINAL]
    assert result.error and "no helper LLM" in result.error


def test_expander_garbage_output_falls_back() -> None:
    for garbage in ("", "   ", ORIGINAL, "1.\n2.\n", "Here are the questions:"):
        result = QueryExpander(FakeLLM(garbage), max_n=3).run(ORIGINAL, n=3)
        assert result.queries == [ORIGINAL]
        assert result.error and "no usable reformulation" in result.error


def test_expander_llm_error_falls_back() -> None:
    result = QueryExpander(FakeLLM(error=LLMError("boom")), max_n=3).run(ORIGINAL, n=3)
    assert result.queries == [ORIGINAL]
    assert result.error and "failed (LLMError: boom)" in result.error
    result = QueryExpander(FakeLLM(error=LLMTimeoutError("queue")), max_n=3).run(ORIGINAL, n=3)
    assert result.error and "timed out" in result.error


def test_expander_timeout_falls_back_quickly() -> None:
    llm = FakeLLM("1. never used?", delay_s=2.0)
    started = time.perf_counter()
    result = QueryExpander(llm, max_n=3, timeout_s=0.2).run(ORIGINAL, n=3)
    assert time.perf_counter() - started < 1.5
    assert result.queries == [ORIGINAL]
    assert result.error and "timed out" in result.error


def test_expander_is_thread_safe() -> None:
    llm = FakeLLM("1. First question?\n2. Second question?", delay_s=0.01)
    expander = QueryExpander(llm, max_n=3, timeout_s=5)
    results: list[list[str]] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        queries = expander.run(f"question {i}", n=3).queries
        with lock:
            results.append(queries)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r[0] for r in results) == sorted(f"question {i}" for i in range(16))
    assert all(r[1:] == ["First question?", "Second question?"] for r in results)


@pytest.mark.slow
def test_expander_with_real_smollm2(tmp_path: Path) -> None:
    llama_cpp = pytest.importorskip("llm_twin.llm.llama_cpp")
    from llm_twin.models import ModelNotFoundError, resolve_gguf

    try:
        resolve_gguf("smollm2-135m-instruct", tmp_path)
    except ModelNotFoundError as error:
        pytest.skip(f"SmolLM2 GGUF not installed: {error}")
    client = llama_cpp.LlamaCppClient("smollm2-135m-instruct", models_dir=tmp_path, n_ctx=2048, n_threads=2)
    result = QueryExpander(client, max_n=5, timeout_s=120).run(ORIGINAL, n=3)
    assert result.queries[0] == ORIGINAL
    # A 135M model may produce nothing usable; then the error must say so. Either way, no crash.
    if result.error is None:
        assert 2 <= len(result.queries) <= 3
        assert len({q.casefold() for q in result.queries}) == len(result.queries)
    else:
        assert "no usable reformulation" in result.error
