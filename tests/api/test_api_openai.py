"""The OpenAI-compatible API through the real ``openai`` SDK, against the app on a loopback port
(retrieval and the LLMs faked; the author matcher and the follow-up resolver are the real ones)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest
from rag_fakes import GUIDO, FakeLLM, PeopleFakeRetrieval

from llm_fakes import FakeLLM as FakeHelperLLM
from llm_twin.domain.limits import MAX_HISTORY_TURNS
from llm_twin.errors import LLMUnavailableError

ANSWER = "Pattern matching was proposed [1]."
REFERENCES = (
    "\n\nSources:\n[1] PEP 1 — https://peps.python.org/pep-0001/\n[2] PEP 2 — https://peps.python.org/pep-0002/"
)
REWRITE = "What else did Guido van Rossum write about packaging?"


@pytest.fixture
def helper() -> FakeHelperLLM:
    return FakeHelperLLM(REWRITE)


@pytest.fixture
def fake_retrieval(helper: FakeHelperLLM) -> PeopleFakeRetrieval:  # replaces conftest's for live_server
    return PeopleFakeRetrieval(helper)


@pytest.fixture
def client(live_server: tuple[str, FakeLLM]) -> Iterator[openai.OpenAI]:
    url, _ = live_server
    with openai.OpenAI(base_url=f"{url}/v1", api_key="not-used", max_retries=0, timeout=30) as sdk:
        yield sdk


def test_models_are_twin_and_one_per_person(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == ["twin", "twin-barry-warsaw", "twin-guido-van-rossum"]
    assert all(m.object == "model" and m.owned_by == "llm-twin" for m in models.data)
    guido = client.models.retrieve("twin-guido-van-rossum")
    assert guido.id == "twin-guido-van-rossum" and guido.author == {"id": GUIDO.id, "full_name": "Guido van Rossum"}


def test_a_chat_completion_answers_with_its_sources(
    client: openai.OpenAI, live_server: tuple[str, FakeLLM], fake_retrieval: PeopleFakeRetrieval
) -> None:
    _, llm = live_server
    completion = client.chat.completions.create(
        model="twin-guido-van-rossum",
        messages=[
            {"role": "system", "content": "You are a pirate."},  # ignored: the twin keeps its own instructions
            {"role": "user", "content": "What about pattern matching?"},
        ],
        max_tokens=50,
        temperature=0.5,
        top_p=0.8,
        stop=["END"],
    )
    assert completion.object == "chat.completion" and completion.model == "twin-guido-van-rossum"
    assert completion.id.startswith("chatcmpl-")
    (choice,) = completion.choices
    assert choice.message.role == "assistant" and choice.finish_reason == "stop"
    assert choice.message.content == ANSWER + REFERENCES  # a text-only client still shows the sources
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (
        42,
        3,
        45,
    )
    # the documented extension fields
    assert [s["link"] for s in completion.sources] == [
        "https://peps.python.org/pep-0001/",
        "https://peps.python.org/pep-0002/",
    ]
    assert completion.author["full_name"] == "Guido van Rossum" and completion.rewritten_query is None
    # the model chose the author; the request's generation parameters reached the LLM
    assert fake_retrieval.calls[-1]["author"] == GUIDO.id
    params = llm.params[-1]
    assert (params.max_new_tokens, params.temperature, params.top_p, params.stop) == (50, 0.5, 0.8, ("END",))
    assert all("pirate" not in m["content"] for m in llm.messages[-1])


def test_max_completion_tokens_cuts_the_answer_with_finish_reason_length(
    client: openai.OpenAI, live_server: tuple[str, FakeLLM]
) -> None:
    completion = client.chat.completions.create(
        model="twin", messages=[{"role": "user", "content": "pattern matching?"}], max_completion_tokens=2
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content.startswith("Pattern matching\n\nSources:")
    assert live_server[1].params[-1].max_new_tokens == 2


def test_a_streamed_completion_sends_chunks_then_done(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="twin",
            messages=[{"role": "user", "content": [{"type": "text", "text": "What did Guido write on matching?"}]}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all(c.object == "chat.completion.chunk" and c.model == "twin" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER + REFERENCES
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(final) == 1 and final[0].choices[0].finish_reason == "stop"
    assert [s["id"] for s in final[0].sources] == ["chunk-1", "chunk-2"]
    assert final[0].author["full_name"] == "Guido van Rossum"  # self-query found "Guido" in the question
    usage = chunks[-1]
    assert usage.choices == [] and usage.usage is not None and usage.usage.completion_tokens == 5


def test_a_streamed_answer_as_long_as_max_tokens_finishes_with_length(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="twin", messages=[{"role": "user", "content": "matching?"}], stream=True, max_tokens=5
        )
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    assert chunks[-1].usage is None  # usage only when stream_options asks for it


def test_a_follow_up_resolves_the_author_from_the_first_turn(
    client: openai.OpenAI, live_server: tuple[str, FakeLLM], helper: FakeHelperLLM
) -> None:
    first_question = {"role": "user", "content": "What did Guido van Rossum write about pattern matching?"}
    first = client.chat.completions.create(model="twin", messages=[first_question])
    assert first.author["full_name"] == "Guido van Rossum"
    assert helper.calls == []  # a first turn is not rewritten

    second = client.chat.completions.create(
        model="twin",
        messages=[
            first_question,
            {"role": "assistant", "content": first.choices[0].message.content},
            {"role": "user", "content": "What else did he write about packaging?"},
        ],
    )
    assert second.author["full_name"] == "Guido van Rossum"
    assert second.sources and all("Guido van Rossum" in s["authors"] for s in second.sources)
    assert second.rewritten_query == REWRITE
    # the helper saw the conversation (without the references); the answer is to the standalone question
    rewrite_prompt = helper.calls[-1][0][-1]["content"]
    assert "User: What did Guido van Rossum write about pattern matching?" in rewrite_prompt
    assert "Sources:" not in rewrite_prompt
    assert REWRITE in live_server[1].messages[-1][-1]["content"]


def test_a_follow_up_keeps_the_author_when_the_helper_llm_is_down(client: openai.OpenAI, helper: FakeHelperLLM) -> None:
    helper.error = LLMUnavailableError("down")
    follow_up = client.chat.completions.create(
        model="twin",
        messages=[
            {"role": "user", "content": "What did Barry Warsaw write about the PEP process?"},
            {"role": "assistant", "content": "PEPs are proposed on python-dev [1]."},
            {"role": "user", "content": "And what did he write about style?"},
        ],
    )
    assert follow_up.author["full_name"] == "Barry Warsaw"
    assert all("Barry Warsaw" in s["authors"] for s in follow_up.sources)
    assert follow_up.rewritten_query == "And what did he write about style?"  # searched as asked


def test_an_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 404 and info.value.code == "model_not_found" and info.value.param == "model"
    assert info.value.type == "invalid_request_error"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("twin-nobody")


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": "   "}]}, "messages"),
        ({"messages": [{"role": "user", "content": "x" * 5000}]}, "messages"),
        ({"messages": [{"role": "user", "content": "q"}] * (MAX_HISTORY_TURNS + 2)}, "messages"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            "messages[0].content",
        ),
        ({"temperature": 3.0}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"n": 2}, "n"),
    ],
)
def test_bad_input_is_a_bad_request_naming_the_param(client: openai.OpenAI, kwargs: dict, param: str) -> None:
    arguments = {"model": "twin", "messages": [{"role": "user", "content": "q"}]} | kwargs
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(**arguments)
    assert info.value.status_code == 400 and info.value.type == "invalid_request_error"
    assert info.value.param == param, info.value.message


def test_llm_failures_keep_their_status_in_the_openai_shape(
    client: openai.OpenAI, live_server: tuple[str, FakeLLM]
) -> None:
    live_server[1].error = LLMUnavailableError("connection refused to 10.0.0.1")
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="twin", messages=[{"role": "user", "content": "q"}])
    assert info.value.status_code == 503 and info.value.type == "server_error"
    assert info.value.code == "llm_unavailable" and "10.0.0.1" not in info.value.message


def test_a_failure_mid_stream_reaches_the_sdk_as_an_error(
    client: openai.OpenAI, live_server: tuple[str, FakeLLM]
) -> None:
    live_server[1].stream_error = LLMUnavailableError("gone")
    stream = client.chat.completions.create(model="twin", messages=[{"role": "user", "content": "q"}], stream=True)
    with pytest.raises(openai.APIError) as info:
        list(stream)
    assert info.value.code == "llm_unavailable"


def test_v1_errors_use_the_openai_shape_while_rag_keeps_its_own(live_server: tuple[str, FakeLLM]) -> None:
    url, _ = live_server
    v1 = httpx.post(f"{url}/v1/chat/completions", json={"model": "twin"})
    assert v1.status_code == 400
    assert v1.json() == {
        "error": {
            "message": "messages: Field required",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "invalid_input",
        }
    }
    rag = httpx.post(f"{url}/rag", json={"query": ""})
    assert rag.status_code == 422 and rag.json()["error"]["field"] == "query"
    missing = httpx.get(f"{url}/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "invalid_request_error"


def test_references_number_every_source_and_share_a_line_per_document() -> None:
    from llm_twin.api.routes.openai import references
    from llm_twin.api.schemas import Source

    def source(i: int, title: str, link: str | None) -> Source:
        return Source(
            id=f"c{i}",
            collection="embedded_articles",
            content_type="article",
            title=title,
            author_full_name="Guido van Rossum",
            authors=["Guido van Rossum"],
            link=link,
            score=1.0,
            snippet="...",
        )

    sources = [source(1, "PEP 8", "https://p/8"), source(2, "PEP 7", None), source(3, "PEP 8", "https://p/8")]
    assert references(sources) == "\n\nSources:\n[1][3] PEP 8 — https://p/8\n[2] PEP 7"
    assert references([]) == ""
