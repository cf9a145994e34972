"""Grounded prompt assembly: numbering, ordering, the token budget, and plain-text context."""

from __future__ import annotations

import pytest

from llm_twin.domain.documents import EmbeddedChunk
from llm_twin.llm.base import ChatMessage, Completion, GenerationParams
from llm_twin.rag.prompts import (
    NO_CONTEXT_NOTE,
    TRUNCATION_MARK,
    PromptBudgetError,
    build_grounded_prompt,
    build_prompt_for_client,
    citations_only,
    compact_authors,
)


def words(text: str) -> int:
    """A deterministic stand-in tokenizer: one token per whitespace-separated word."""
    return len(text.split())


def chunk(i: int, n_words: int = 10, *, author: str = "Paul Iusztin", content_type: str = "article") -> EmbeddedChunk:
    return EmbeddedChunk(
        id=f"id-{i}",
        collection="embedded_articles",
        content_type=content_type,  # type: ignore[arg-type]
        document_id=f"doc-{i}",
        chunk_index=0,
        content=" ".join(f"w{i}x{j}" for j in range(n_words)),
        author_ids=["a1"],
        author_full_name=author,
        title=f"Title {i}",
        link=f"https://example.com/{i}",
        score=1.0 / i,
        metadata={"secret": "should-not-appear"},
    )


def total_tokens(messages: list[ChatMessage]) -> int:
    return sum(words(m["content"]) for m in messages)


def build(chunks, *, window=10_000, new=100, overhead=0, question="What is RAG?", links=False):
    return build_grounded_prompt(
        question,
        chunks,
        count_tokens=words,
        context_window=window,
        max_new_tokens=new,
        template_overhead_tokens=overhead,
        links=links,
    )


def test_all_chunks_fit_numbered_in_rank_order_with_metadata() -> None:
    chunks = [chunk(1), chunk(2), chunk(3)]
    prompt = build(chunks)
    system, user = prompt.messages
    assert system["role"] == "system" and user["role"] == "user"
    assert prompt.used_chunks == chunks and prompt.dropped == [] and not prompt.truncated
    positions = [user["content"].index(f"[{n}] type: article | title: Title {n}") for n in (1, 2, 3)]
    assert positions == sorted(positions)
    assert "author: Paul Iusztin" in user["content"]
    assert "example.com" not in user["content"]  # the sources carry links; the prompt does not pay for them
    assert "w3x9" in user["content"]  # the chunk text itself
    assert "End every sentence with the number of the block" in user["content"]
    assert user["content"].rstrip().endswith("Answer:")
    assert "Question: What is RAG?" in user["content"]


def test_links_in_the_headers_when_asked_for_and_counted_in_the_budget() -> None:
    with_links = build([chunk(1), chunk(2)], links=True)
    without = build([chunk(1), chunk(2)])
    user = with_links.messages[1]["content"]
    assert "[2] type: article | title: Title 2 | author: Paul Iusztin | link: https://example.com/2" in user
    assert with_links.prompt_tokens == without.prompt_tokens + 2 * 3  # "| link: <url>", three words per block

    # The smallest window that fits both blocks without links drops the second one with them.
    def fits_both(window: int) -> bool:
        try:
            return len(build([chunk(1), chunk(2)], window=window).used_chunks) == 2
        except PromptBudgetError:
            return False

    window = next(w for w in range(100, 1000) if fits_both(w))
    assert len(build([chunk(1), chunk(2)], window=window, links=True).used_chunks) == 1


def test_the_twins_own_blocks_do_not_repeat_their_name() -> None:
    chunks = [chunk(1, author="Maxime Labonne"), chunk(2, author="Paul Iusztin")]
    prompt = build_grounded_prompt(
        "What is RAG?", chunks, count_tokens=words, context_window=10_000, max_new_tokens=100, twin_of="Maxime Labonne"
    )
    user = prompt.messages[1]["content"]
    assert user.startswith("You are the LLM twin of Maxime Labonne.")
    assert "[1] type: article | title: Title 1\n" in user  # the twin line already names them
    assert "[2] type: article | title: Title 2 | author: Paul Iusztin\n" in user  # someone else: named


def test_a_second_block_of_a_document_points_at_the_first_instead_of_repeating_its_header() -> None:
    first, other, again = chunk(1), chunk(2), chunk(3)
    again = again.model_copy(update={"document_id": first.document_id})
    prompt = build([first, other, again])
    user = prompt.messages[1]["content"]
    assert "[1] type: article | title: Title 1 | author: Paul Iusztin\nw1x0" in user
    assert "[2] type: article | title: Title 2" in user
    assert "[3] same document as [1]\nw3x0" in user  # its own text, a three-word header
    assert prompt.used_chunks == [first, other, again]  # still its own block and its own source
    whole = build([first, other, chunk(3)])
    assert prompt.prompt_tokens < whole.prompt_tokens


@pytest.mark.parametrize(
    ("authors", "twin", "shown"),
    [
        ("Paul Iusztin", None, "Paul Iusztin"),
        ("Paul Iusztin", "Paul Iusztin", ""),
        ("Barry Warsaw, Guido van Rossum", None, "Barry Warsaw, Guido van Rossum"),
        (
            "Brandt Bucher, Daniel F Moisset, Tobias Kohn, Guido van Rossum",
            None,
            "Brandt Bucher, Daniel F Moisset and 2 others",
        ),
        (
            "Brandt Bucher, Daniel F Moisset, Tobias Kohn, Guido van Rossum",
            "guido van rossum",
            "Guido van Rossum, Brandt Bucher and 2 others",
        ),
        ("Brandt Bucher, Guido van Rossum, Talin", "Guido van Rossum", "Guido van Rossum, Brandt Bucher and 1 other"),
    ],
)
def test_author_lists_are_short_and_put_the_twin_first(authors: str, twin: str | None, shown: str) -> None:
    assert compact_authors(authors, twin) == shown


def test_system_instructions_ground_cite_and_admit_ignorance() -> None:
    system, user = (m["content"] for m in build([chunk(1, author="Maxime Labonne"), chunk(2)]).messages)
    # The twin is named in the user message: the system prompt stays the same for every request,
    # so the model's prompt cache can skip it.
    assert user.startswith("You are the LLM twin of Maxime Labonne and Paul Iusztin.")
    assert system == build([chunk(3, author="Someone Else")]).messages[0]["content"]
    assert "only from the numbered context" in system
    assert "never instructions" in system
    assert "[1]" in system
    assert "does not contain the answer" in system


def test_context_is_text_never_a_repr() -> None:
    text = "\n".join(m["content"] for m in build([chunk(1), chunk(2)]).messages)
    for leak in ("EmbeddedChunk(", "content=", "author_ids", "should-not-appear", "score"):
        assert leak not in text


def test_lowest_ranked_chunks_are_dropped_first() -> None:
    chunks = [chunk(i, n_words=50) for i in range(1, 5)]
    fixed = total_tokens(build([]).messages) - words(NO_CONTEXT_NOTE) + 1  # "Context:" line stays
    # Room for two 50-word blocks (each ~60 tokens with its header) but not three.
    prompt = build(chunks, window=fixed + 100 + 130)
    assert prompt.used_chunks == chunks[:2]
    assert prompt.dropped == chunks[2:]
    user = prompt.messages[1]["content"]
    assert "[1] " in user and "[2] " in user and "[3] " not in user
    assert "w3x0" not in user


def test_context_stays_a_prefix_of_the_ranking() -> None:
    # A small chunk after a too-big one is dropped too: the context never skips a better chunk.
    chunks = [chunk(1, 10), chunk(2, 500), chunk(3, 5)]
    prompt = build(chunks, window=300, new=100)
    assert prompt.used_chunks == [chunks[0]]
    assert prompt.dropped == chunks[1:]


def test_numbering_matches_used_chunks_for_sources() -> None:
    chunks = [chunk(i, n_words=40) for i in range(1, 6)]
    prompt = build(chunks, window=350, new=50)
    user = prompt.messages[1]["content"]
    for number, used in enumerate(prompt.used_chunks, start=1):
        assert f"[{number}] type: article | title: {used.title} |" in user
    assert f"[{len(prompt.used_chunks) + 1}] " not in user
    assert 0 < len(prompt.used_chunks) < len(chunks)


@pytest.mark.parametrize("window", [200, 260, 333, 512, 1000])
def test_prompt_plus_new_tokens_fit_the_window(window: int) -> None:
    chunks = [chunk(i, n_words=37) for i in range(1, 20)]
    prompt = build(chunks, window=window, new=64, overhead=8)
    assert total_tokens(prompt.messages) + 8 + 64 <= window
    assert prompt.prompt_tokens == total_tokens(prompt.messages) + 8
    assert prompt.used_chunks + prompt.dropped == chunks


def test_single_oversized_block_is_truncated_not_failed() -> None:
    big = chunk(1, n_words=2000)
    prompt = build([big, chunk(2)], window=400, new=100)
    assert prompt.used_chunks == [big]
    assert [c.id for c in prompt.dropped] == ["id-2"]
    assert prompt.truncated
    user = prompt.messages[1]["content"]
    assert "[1] type: article | title: Title 1" in user
    assert TRUNCATION_MARK.strip() in user
    assert "w1x0 w1x1" in user and "w1x1999" not in user  # keeps the beginning
    assert prompt.prompt_tokens + 100 <= 400
    assert prompt.prompt_tokens > 400 - 100 - 40  # and uses most of the room it had


def test_no_room_for_any_context_still_builds_a_prompt() -> None:
    fixed = total_tokens(build([]).messages)
    prompt = build([chunk(1, 500)], window=fixed + 100 + 5, new=100)
    assert prompt.used_chunks == [] and prompt.dropped[0].id == "id-1"
    assert NO_CONTEXT_NOTE in prompt.messages[1]["content"]


def test_no_chunks_says_so() -> None:
    prompt = build([])
    assert prompt.used_chunks == [] and prompt.dropped == []
    assert NO_CONTEXT_NOTE in prompt.messages[1]["content"]


def test_question_that_cannot_fit_raises_budget_error() -> None:
    with pytest.raises(PromptBudgetError, match="tokens"):
        build([chunk(1)], window=300, new=100, question="why " * 400)


class WordCountingClient:
    model_name = "fake"
    context_window = 300

    def warm_up(self) -> None: ...

    def count_tokens(self, text: str) -> int:
        return words(text)

    def complete(self, messages: list[ChatMessage], params: GenerationParams) -> Completion:
        return Completion(text="")

    def stream(self, messages, params):
        yield ""


def test_build_prompt_for_client_uses_its_window_and_tokenizer() -> None:
    chunks = [chunk(i, n_words=40) for i in range(1, 10)]
    prompt = build_prompt_for_client("What is RAG?", chunks, WordCountingClient(), max_new_tokens=60)
    assert prompt.prompt_tokens + 60 <= 300
    assert 0 < len(prompt.used_chunks) < len(chunks)


@pytest.mark.parametrize(
    ("text", "only"),
    [
        ("[1] [2][3]", True),
        (" [1]. ", True),
        ("[1], [2]", True),
        ("", False),
        ("[1] Names are short.", False),
        ("PEP 8 [1]", False),
    ],
)
def test_citations_only(text: str, only: bool) -> None:
    assert citations_only(text) is only
