"""Follow-up questions: the helper-LLM rewrite (a fake helper) and the author carried over from the conversation."""

from __future__ import annotations

import pytest

from llm_fakes import FakeLLM
from llm_twin.domain.authors import Author
from llm_twin.domain.conversation import Turn
from llm_twin.errors import LLMUnavailableError
from llm_twin.retrieval.author_resolver import AuthorResolver
from llm_twin.retrieval.conversation import (
    FollowUpResolver,
    HelperLLMQuestionRewriter,
    author_from_history,
    conversation_text,
    parse_rewrite,
)

GUIDO_TURNS = [
    Turn("user", "What did Guido van Rossum write about pattern matching?"),
    Turn("assistant", "He proposed match statements [1].\n\nSources:\n[1] PEP 634 — https://peps.python.org/pep-0634/"),
]
FOLLOW_UP = "What else did he write about typing?"


@pytest.fixture(scope="module")
def resolver() -> AuthorResolver:
    return AuthorResolver([Author.from_name(n) for n in ("Guido van Rossum", "Barry Warsaw", "Brett Cannon")])


def test_the_helper_rewrites_a_follow_up_from_the_conversation() -> None:
    llm = FakeLLM("Standalone question: What else did Guido van Rossum write about typing?\nIt is about ...")
    result = HelperLLMQuestionRewriter(llm).run(FOLLOW_UP, GUIDO_TURNS)
    assert result.question == "What else did Guido van Rossum write about typing?" and result.error is None
    (messages, params), *_ = llm.calls
    prompt = messages[-1]["content"]
    assert "User: What did Guido van Rossum write about pattern matching?" in prompt
    assert "Assistant: He proposed match statements [1]." in prompt
    assert "Sources:" not in prompt and "pep-0634" not in prompt  # references are citations, not content
    assert prompt.endswith(f"Follow-up question: {FOLLOW_UP}\nStandalone question:")
    assert params.temperature == 0.0


def test_a_first_turn_never_calls_the_helper() -> None:
    llm = FakeLLM("anything")
    assert HelperLLMQuestionRewriter(llm).run("What is PEP 8?", []).question == "What is PEP 8?"
    assert llm.calls == []


@pytest.mark.parametrize(
    ("llm", "warning"),
    [
        (None, "no helper LLM configured"),
        (FakeLLM(error=LLMUnavailableError("down")), "question rewrite failed (LLMUnavailableError: down)"),
        (FakeLLM(delay_s=1.0), "question rewrite timed out"),
        (FakeLLM("Answer: he wrote PEP 484."), "returned no usable question"),
        (FakeLLM("   "), "returned no usable question"),
    ],
)
def test_a_failed_rewrite_searches_the_follow_up_as_asked_with_a_warning(llm: FakeLLM | None, warning: str) -> None:
    result = HelperLLMQuestionRewriter(llm, timeout_s=0.2).run(FOLLOW_UP, GUIDO_TURNS)
    assert result.question == FOLLOW_UP
    assert result.error is not None and warning in result.error
    # A helper that was asked and failed is a degradation (a code); none configured is a choice.
    assert result.degraded == (None if llm is None else "rewrite_failed")


def test_parse_rewrite_strips_labels_and_quotes_and_refuses_answers() -> None:
    assert (
        parse_rewrite('"Why did Guido reject PEP 3103?"', "Why did he reject it?") == "Why did Guido reject PEP 3103?"
    )
    assert parse_rewrite("\n\nRewritten question: Why?\n", "Why?") == "Why?"
    assert parse_rewrite("A: because", "Why?") is None
    # SmolLM2's answer to a rewrite request: a statement for a question
    assert parse_rewrite("Guido van Rossum wrote about [1] for structural pattern matching.", "What else?") is None
    assert parse_rewrite("Guido's view on typing", "Guido's view on typing, please") == "Guido's view on typing"
    assert parse_rewrite("x" * 500, "Why?") is None  # a paragraph is an answer, not a rewrite


def test_conversation_text_keeps_the_latest_turns_each_cut_short() -> None:
    turns = [Turn("user", f"question {i} " + "word " * 200) for i in range(10)]
    text = conversation_text(turns, max_turns=3, max_chars=50)
    lines = text.splitlines()
    assert len(lines) == 3 and lines[0].startswith("User: question 7")
    assert all(len(line) <= len("User: ") + 50 for line in lines) and lines[0].endswith("…")


def test_the_author_of_the_latest_user_turn_carries_over(resolver: AuthorResolver) -> None:
    history = [
        Turn("user", "What did Barry Warsaw write about the PEP process?"),
        Turn("assistant", "PEPs are proposed on python-dev."),
        *GUIDO_TURNS,
        Turn("user", "And why?"),  # names nobody: the earlier mention still counts
    ]
    match = author_from_history(resolver, history)
    assert match is not None and match.author is not None and match.author.full_name == "Guido van Rossum"
    assert match.reason.startswith("carried over from the conversation")


def test_no_author_carries_over_from_an_ambiguous_or_silent_history(resolver: AuthorResolver) -> None:
    assert author_from_history(resolver, [Turn("user", "How are PEPs reviewed?")]) is None
    both = [Turn("user", "Guido van Rossum"), Turn("user", "Compare Barry Warsaw and Brett Cannon on packaging")]
    assert author_from_history(resolver, both) is None  # the latest mention is several people: no guess
    # assistant turns are the twin's own words, never where the user chose an author
    assert author_from_history(resolver, [Turn("assistant", "Guido van Rossum wrote it.")]) is None


def test_the_follow_up_resolver_rewrites_and_carries_the_author(resolver: AuthorResolver) -> None:
    followup = FollowUpResolver(HelperLLMQuestionRewriter(FakeLLM("What else did Guido write about typing?"))).run(
        FOLLOW_UP, GUIDO_TURNS, resolver
    )
    assert followup.question == "What else did Guido write about typing?" and followup.warnings == []
    assert followup.author is not None and followup.author.author.full_name == "Guido van Rossum"


def test_the_author_carries_over_when_the_helper_llm_is_down(resolver: AuthorResolver) -> None:
    rewriter = HelperLLMQuestionRewriter(FakeLLM(error=LLMUnavailableError("down")))
    followup = FollowUpResolver(rewriter).run(FOLLOW_UP, GUIDO_TURNS, resolver)
    assert followup.question == FOLLOW_UP and "question rewrite failed" in followup.warnings[0]
    assert followup.author is not None and followup.author.author.full_name == "Guido van Rossum"


def test_a_follow_up_that_names_somebody_else_does_not_carry_over(resolver: AuthorResolver) -> None:
    rewriter = HelperLLMQuestionRewriter(None)
    followup = FollowUpResolver(rewriter).run("What did Barry Warsaw write about it?", GUIDO_TURNS, resolver)
    assert followup.author is None  # self-query finds Barry in the question itself


def test_a_name_the_rewrite_invented_is_not_a_filter(resolver: AuthorResolver) -> None:
    history = [Turn("user", "How are PEPs reviewed?"), Turn("assistant", "On python-dev.")]
    followup = FollowUpResolver(HelperLLMQuestionRewriter(FakeLLM("What did Brett Cannon say?"))).run(
        "Who decides?", history, resolver
    )
    invented = resolver.run(followup.question)
    assert invented.author is not None  # the rewrite names Brett Cannon, whom nobody mentioned
    grounded = followup.grounded(invented)
    assert grounded.author is None and "not in the conversation" in grounded.reason
    named = FollowUpResolver(HelperLLMQuestionRewriter(FakeLLM("What did Brett Cannon say?"))).run(
        "Who decides?", [Turn("assistant", "Brett Cannon decides."), *history], resolver
    )
    assert named.grounded(resolver.run(named.question)).author is not None  # named in an answer: kept
