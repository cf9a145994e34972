"""RAGPipeline: sources are exactly the prompt's chunks, timings, event order, early close, no-context path.

Retrieval is faked at its boundary (it has its own tests); the slow test runs the real SmolLM2 GGUF.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import fields

import pytest

from llm_twin.domain.authors import Author
from llm_twin.domain.documents import EmbeddedChunk
from llm_twin.errors import InvalidInputError, LLMTimeoutError
from llm_twin.llm.base import ChatMessage, Completion, GenerationParams
from llm_twin.rag.answer import AnswerContext, DoneEvent, SourcesEvent, TokenEvent
from llm_twin.rag.pipeline import RAGPipeline
from llm_twin.rag.prompts import SENTENCES_PLEASE
from llm_twin.retrieval.types import AuthorMatch, RetrievalResult
from llm_twin.settings import load_settings

GUIDO = Author.from_name("Guido van Rossum")


def chunk(i: int, words: int = 20) -> EmbeddedChunk:
    return EmbeddedChunk(
        id=f"c{i}",
        collection="embedded_articles",
        content_type="article",
        document_id=f"pep-{i}",
        chunk_index=0,
        content=" ".join(f"w{i}_{j}" for j in range(words)),
        author_ids=[GUIDO.id],
        author_full_name="Guido van Rossum",
        title=f"PEP {i}",
        score=1.0 / i,
    )


class Retrieval:
    def __init__(self, chunks: list[EmbeddedChunk], author: Author | None = None) -> None:
        self.chunks, self.author = chunks, author
        self.warmed = self.closed = False

    def warm_up(self) -> None:
        self.warmed = True

    def run(self, query, k=None, expand_to_n=None, author=None, *, history=()) -> RetrievalResult:
        return RetrievalResult(
            query=query,
            author=AuthorMatch(author=self.author, reason="test"),
            expanded_queries=[query, query + " (variant)"],
            chunks=list(self.chunks),
            rerank="none",
            timings_ms={"self_query": 1.0, "expansion": 2.0, "search": 3.0, "rerank": 0.5, "total": 7.0},
            warnings=["expansion skipped"],
        )

    def close(self) -> None:
        self.closed = True


class WordLLM:
    """One token per word; records the messages it was given."""

    model_name = "word-llm"

    def __init__(self, context_window: int = 4096, pieces: tuple[str, ...] = ("See ", "[1] ", "and ", "[2].")) -> None:
        self.context_window = context_window
        self.pieces = pieces
        self.messages: list[ChatMessage] | None = None
        self.closed = threading.Event()
        self.error: Exception | None = None

    def close(self) -> None:
        self.closed = True

    def warm_up(self) -> None:
        pass

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def complete(self, messages: list[ChatMessage], params: GenerationParams) -> Completion:
        self.messages = messages
        if self.error:
            raise self.error
        return Completion(
            text=" " + "".join(self.pieces) + " ",
            prompt_tokens=100,
            completion_tokens=4,
            finish_reason="stop",
            extra={"generation_seconds": 0.0},
        )

    def stream(self, messages: list[ChatMessage], params: GenerationParams) -> Iterator[str]:
        self.messages = messages
        if self.error:
            raise self.error
        try:
            yield from self.pieces
        finally:
            self.closed.set()


@pytest.fixture
def settings(tmp_path):
    return load_settings(data_dir=tmp_path, max_new_tokens=50)


def test_run_answers_with_the_prompt_chunks_as_sources(settings) -> None:
    # Window for ~2 of the 4 chunks: the sources must be exactly what the model saw.
    llm = WordLLM(context_window=320)
    pipeline = RAGPipeline(Retrieval([chunk(i, words=40) for i in (1, 2, 3, 4)], GUIDO), llm, settings)
    answer = pipeline.run("What about pattern matching?")
    assert answer.answer == "See [1] and [2]."
    assert 1 < len(answer.sources) < 4
    assert [c.id for c in answer.sources] == [f"c{i}" for i in range(1, len(answer.sources) + 1)]
    user = llm.messages[1]["content"]
    assert all(c.content in user for c in answer.sources)
    assert "c4" not in [c.id for c in answer.sources] and "w4_0" not in user
    assert "twin of Guido van Rossum" in user  # the twin speaks as the matched author
    assert answer.author == GUIDO and answer.model == "word-llm" and answer.rerank == "none"
    assert answer.expanded_queries == ["What about pattern matching?", "What about pattern matching? (variant)"]
    assert answer.warnings == ["expansion skipped"]
    assert answer.prompt_tokens == 100 and answer.completion_tokens == 4
    timings = answer.timings_ms
    assert {
        "self_query",
        "expansion",
        "search",
        "rerank",
        "retrieval",
        "prompt",
        "generation",
        "llm_queue",
        "total",
    } <= set(timings)
    assert timings["total"] >= timings["retrieval"]


def test_stream_yields_sources_tokens_done(settings) -> None:
    llm = WordLLM()
    pipeline = RAGPipeline(Retrieval([chunk(1), chunk(2)]), llm, settings)
    events = list(pipeline.stream("q"))
    assert isinstance(events[0], SourcesEvent) and isinstance(events[-1], DoneEvent)
    assert all(isinstance(e, TokenEvent) for e in events[1:-1])
    assert [e.kind for e in events] == ["sources", "token", "token", "token", "token", "done"]
    assert [c.id for c in events[0].sources] == ["c1", "c2"]
    done = events[-1].answer
    assert done.answer == "See [1] and [2]." == "".join(e.text for e in events[1:-1])
    assert done.completion_tokens == 4
    assert {"ttft", "generation", "total"} <= set(done.timings_ms)
    assert done.timings_ms["ttft"] <= done.timings_ms["total"]
    assert events[0].timings_ms["retrieval"] == done.timings_ms["retrieval"]


def test_run_and_stream_give_one_answer_whose_context_is_the_sources_event(settings) -> None:
    pipeline = RAGPipeline(Retrieval([chunk(1), chunk(2)], GUIDO), WordLLM(), settings)
    blocking = pipeline.run("q")
    events = list(pipeline.stream("q"))
    sources, streamed = events[0], events[-1].answer
    context_fields = [f.name for f in fields(AnswerContext) if f.name != "timings_ms"]
    for name in context_fields:
        assert getattr(sources, name) == getattr(streamed, name) == getattr(blocking, name), name
    assert streamed.answer == blocking.answer
    # complete() reports it; a stream's is inferred from its length against the budget
    assert blocking.finish_reason == "stop" and streamed.finish_reason == "stop"
    assert "ttft" in streamed.timings_ms and "ttft" not in blocking.timings_ms
    assert set(sources.timings_ms) < set(streamed.timings_ms)  # a snapshot taken before generation


def test_closing_the_stream_early_closes_the_llm_stream(settings) -> None:
    llm = WordLLM()
    stream = RAGPipeline(Retrieval([chunk(1)]), llm, settings).stream("q")
    assert next(stream).kind == "sources"
    assert next(stream).kind == "token"
    stream.close()
    assert llm.closed.is_set()


def test_no_chunks_answers_without_the_llm(settings) -> None:
    llm = WordLLM()
    pipeline = RAGPipeline(Retrieval([], GUIDO), llm, settings)
    answer = pipeline.run("q")
    assert answer.sources == [] and "by Guido van Rossum" in answer.answer
    assert llm.messages is None
    events = list(pipeline.stream("q"))
    assert [e.kind for e in events] == ["sources", "token", "done"]
    assert llm.messages is None


def test_query_that_cannot_fit_the_window_is_invalid_input(settings) -> None:
    pipeline = RAGPipeline(Retrieval([chunk(1)]), WordLLM(context_window=120), settings)
    with pytest.raises(InvalidInputError) as info:
        pipeline.run("word " * 200)
    assert info.value.field == "query"


def test_blank_query_is_rejected_before_retrieval(settings) -> None:
    retrieval = Retrieval([chunk(1)])
    with pytest.raises(InvalidInputError):
        RAGPipeline(retrieval, WordLLM(), settings).run("   ")


def test_llm_errors_propagate_from_run_and_stream(settings) -> None:
    llm = WordLLM()
    llm.error = LLMTimeoutError("queue full")
    pipeline = RAGPipeline(Retrieval([chunk(1)]), llm, settings)
    with pytest.raises(LLMTimeoutError):
        pipeline.run("q")
    stream = pipeline.stream("q")
    assert next(stream).kind == "sources"  # retrieval done; the failure comes with generation
    with pytest.raises(LLMTimeoutError):
        next(stream)


def test_generation_params_come_from_settings(tmp_path) -> None:
    settings = load_settings(data_dir=tmp_path, max_new_tokens=17, temperature=0.3, top_p=0.5, repetition_penalty=1.2)
    params = RAGPipeline(Retrieval([]), WordLLM(), settings).params
    assert (params.max_new_tokens, params.temperature, params.top_p, params.repetition_penalty) == (17, 0.3, 0.5, 1.2)


def test_warm_up_and_close_reach_the_components(settings) -> None:
    retrieval = Retrieval([])
    pipeline = RAGPipeline(retrieval, WordLLM(), settings)
    assert not pipeline.ready
    pipeline.warm_up()
    assert pipeline.ready and retrieval.warmed
    pipeline.close()
    assert retrieval.closed


@pytest.mark.slow
def test_real_smollm2_answers_and_streams_the_same_way(tmp_path) -> None:
    from llm_twin.llm.llama_cpp import LlamaCppClient

    settings = load_settings(
        data_dir=tmp_path, llm_model="smollm2-135m-instruct", llm_n_ctx=2048, max_new_tokens=24, temperature=0.0
    )
    llm = LlamaCppClient.from_settings(settings)
    pipeline = RAGPipeline(Retrieval([chunk(1), chunk(2)], GUIDO), llm, settings)
    pipeline.warm_up()
    answer = pipeline.run("What is in PEP 1?")
    assert answer.answer.strip() and answer.model == "smollm2-135m-instruct"
    assert answer.prompt_tokens and answer.completion_tokens
    events = list(pipeline.stream("What is in PEP 1?"))
    tokens = [e.text for e in events if isinstance(e, TokenEvent)]
    assert len(tokens) > 1 and events[-1].kind == "done"
    assert events[-1].answer.answer == "".join(tokens).strip()
    assert 0 < events[-1].answer.timings_ms["ttft"] <= events[-1].answer.timings_ms["total"]


class ScriptedLLM(WordLLM):
    """Answers each call with the next pieces of a script; records every call's messages."""

    def __init__(self, *answers: tuple[str, ...]) -> None:
        super().__init__()
        self.answers = list(answers)
        self.calls: list[list[ChatMessage]] = []

    def complete(self, messages: list[ChatMessage], params: GenerationParams) -> Completion:
        self.pieces = self.answers[len(self.calls)]
        self.calls.append(messages)
        return super().complete(messages, params)

    def stream(self, messages: list[ChatMessage], params: GenerationParams) -> Iterator[str]:
        self.pieces = self.answers[len(self.calls)]
        self.calls.append(messages)
        return super().stream(messages, params)


CITATIONS = ("[1]", " [2]", "[3]")
SENTENCE = ("Patterns ", "match values ", "[1].")


@pytest.mark.parametrize("streamed", [True, False])
def test_an_answer_of_block_numbers_alone_is_asked_again_for_sentences(settings, streamed: bool) -> None:
    llm = ScriptedLLM(CITATIONS, SENTENCE)
    pipeline = RAGPipeline(Retrieval([chunk(1), chunk(2), chunk(3)], GUIDO), llm, settings)
    if streamed:
        events = list(pipeline.stream("What about pattern matching?"))
        tokens = "".join(e.text for e in events if isinstance(e, TokenEvent))
        assert tokens == "Patterns match values [1]."  # the discarded attempt never reached the client
        answer = events[-1].answer
    else:
        answer = pipeline.run("What about pattern matching?")
    assert answer.answer == "Patterns match values [1]."
    assert len(llm.calls) == 2
    first, retry = (call[-1]["content"] for call in llm.calls)
    assert retry == first + SENTENCES_PLEASE  # same prompt, the request added at its very end
    assert llm.calls[0][0] == llm.calls[1][0]  # same system prompt


def test_the_retry_is_asked_once_and_its_answer_is_sent_whatever_it_is(settings) -> None:
    llm = ScriptedLLM(CITATIONS, ("[2]",))
    events = list(RAGPipeline(Retrieval([chunk(1), chunk(2)], GUIDO), llm, settings).stream("q"))
    assert [e.text for e in events if isinstance(e, TokenEvent)] == ["[2]"]
    assert events[-1].answer.answer == "[2]" and len(llm.calls) == 2
    assert "ttft" in events[-1].answer.timings_ms


def test_a_leading_block_number_is_held_only_until_words_follow(settings) -> None:
    llm = ScriptedLLM(("[1]", " Names", " are short."))
    events = list(RAGPipeline(Retrieval([chunk(1)], GUIDO), llm, settings).stream("q"))
    assert [e.text for e in events if isinstance(e, TokenEvent)] == ["[1] Names", " are short."]
    assert len(llm.calls) == 1
