"""The embedded llama.cpp client against the real SmolLM2-135M GGUF, and its FIFO queue."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import pytest

from llm_twin.domain.documents import EmbeddedChunk
from llm_twin.errors import LLMTimeoutError, LLMUnavailableError
from llm_twin.llm.base import GenerationParams, LLMClient, SupportsDeadline, TokenScorer
from llm_twin.llm.factory import build_helper_llm, build_llm
from llm_twin.llm.llama_cpp import FairLock, LlamaCppClient, get_llama
from llm_twin.models import ModelNotFoundError, resolve_gguf
from llm_twin.rag.prompts import build_prompt_for_client
from llm_twin.settings import load_settings

TINY = "smollm2-135m-instruct"
N_CTX = 1024
QUESTION = [{"role": "user", "content": "Name one planet of the solar system."}]
SHORT = GenerationParams(max_new_tokens=8, temperature=0.0)


# --- FairLock: pure threading, no model ----------------------------------------------------------


def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.001)


def test_fair_lock_serves_waiters_in_arrival_order() -> None:
    lock = FairLock()
    assert lock.acquire(timeout=0)
    order: list[int] = []

    def worker(n: int) -> None:
        assert lock.acquire(timeout=5)
        order.append(n)
        lock.release()

    threads = []
    for n in range(6):
        thread = threading.Thread(target=worker, args=(n,))
        thread.start()
        wait_for(lambda n=n: lock.queue_length == n + 1)  # each is queued before the next arrives
        threads.append(thread)
    lock.release()
    for thread in threads:
        thread.join(5)
    assert order == list(range(6))
    assert not lock.locked()


def test_fair_lock_timeout_leaves_the_queue_clean() -> None:
    lock = FairLock()
    assert lock.acquire()
    started = time.monotonic()
    assert not lock.acquire(timeout=0.05)
    assert time.monotonic() - started >= 0.05
    assert lock.queue_length == 0
    lock.release()
    assert lock.acquire(timeout=0)  # free again: the timed-out waiter did not keep a turn
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()


# --- the real model -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("llama_cpp")
    try:
        return resolve_gguf(TINY, tmp_path_factory.mktemp("models"))
    except ModelNotFoundError as error:
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def client(tiny_path: Path) -> LlamaCppClient:
    # One thread: llama.cpp's threads spin at barriers, so on a busy 2-core box one is faster.
    llm = LlamaCppClient(str(tiny_path), models_dir=tiny_path.parent, n_ctx=N_CTX, n_threads=1, queue_timeout_s=60)
    llm.warm_up()
    return llm


@pytest.mark.slow
def test_complete_returns_text_and_usage(client: LlamaCppClient) -> None:
    assert isinstance(client, LLMClient)
    result = client.complete(QUESTION, SHORT)
    assert result.text.strip()
    assert result.completion_tokens is not None and 0 < result.completion_tokens <= 8
    assert result.prompt_tokens is not None and result.prompt_tokens > client.count_tokens(QUESTION[0]["content"])
    assert result.finish_reason in {"stop", "length"}


@pytest.mark.slow
def test_stop_sequences_end_generation(client: LlamaCppClient) -> None:
    result = client.complete(
        [{"role": "user", "content": "Count from 1 to 20, one number per line."}],
        GenerationParams(max_new_tokens=40, temperature=0.0, stop=("\n",)),
    )
    assert result.text.strip() and "\n" not in result.text
    assert result.finish_reason == "stop"


@pytest.mark.slow
def test_stream_yields_pieces(client: LlamaCppClient) -> None:
    pieces = list(client.stream(QUESTION, SHORT))
    assert len(pieces) > 1
    assert all(isinstance(p, str) and p for p in pieces)
    assert "".join(pieces).strip()
    assert not client.shared.lock.locked()  # released when the stream ended


@pytest.mark.slow
def test_count_tokens_uses_the_model_tokenizer(client: LlamaCppClient) -> None:
    text = "Retrieval-augmented generation grounds answers in documents."
    expected = client.shared.llama.tokenize(text.encode(), add_bos=False)
    assert client.count_tokens(text) == len(expected) > 5
    assert client.count_tokens("") == 0
    assert client.count_tokens(text * 3) > client.count_tokens(text)


@pytest.mark.slow
def test_concurrent_callers_all_succeed_in_arrival_order(client: LlamaCppClient) -> None:
    lock = client.shared.lock
    holder = client.stream(QUESTION, GenerationParams(max_new_tokens=32, temperature=0.0))
    next(holder)  # keeps the model busy so every worker below has to queue
    finished: list[int] = []
    errors: list[BaseException] = []

    def ask(n: int) -> None:
        try:
            result = client.complete(QUESTION, GenerationParams(max_new_tokens=4, temperature=0.0))
            assert result.text
            finished.append(n)
        except BaseException as error:  # surfaced below; a thread cannot fail the test itself
            errors.append(error)

    threads = []
    for n in range(4):
        thread = threading.Thread(target=ask, args=(n,))
        thread.start()
        wait_for(lambda n=n: lock.queue_length == n + 1)
        threads.append(thread)
    holder.close()  # releases the model to the first waiter
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert finished == [0, 1, 2, 3]
    assert not lock.locked()


@pytest.mark.slow
def test_queue_timeout_raises_llm_timeout(client: LlamaCppClient, tiny_path: Path) -> None:
    impatient = LlamaCppClient(str(tiny_path), models_dir=tiny_path.parent, n_ctx=N_CTX, queue_timeout_s=0.2)
    impatient.warm_up()
    assert impatient.shared is client.shared  # same file + n_ctx: one model, one queue
    holder = client.stream(QUESTION, GenerationParams(max_new_tokens=32, temperature=0.0))
    next(holder)
    try:
        started = time.monotonic()
        with pytest.raises(LLMTimeoutError, match="busy"):
            impatient.complete(QUESTION, SHORT)
        assert 0.2 <= time.monotonic() - started < 5
        with pytest.raises(LLMTimeoutError):
            next(impatient.stream(QUESTION, SHORT))
    finally:
        holder.close()
    assert impatient.complete(QUESTION, SHORT).text  # and works once the model is free


@pytest.mark.slow
def test_complete_within_matches_complete_and_frees_the_model_at_the_deadline(client: LlamaCppClient) -> None:
    assert isinstance(client, SupportsDeadline)
    assert client.complete_within(QUESTION, SHORT, timeout_s=60).text == client.complete(QUESTION, SHORT).text
    with pytest.raises(LLMTimeoutError, match="did not answer"):
        client.complete_within(QUESTION, GenerationParams(max_new_tokens=64, temperature=0.0), timeout_s=0.001)
    assert not client.shared.lock.locked()  # generation stopped at the deadline, not abandoned
    holder = client.stream(QUESTION, GenerationParams(max_new_tokens=32, temperature=0.0))
    next(holder)
    try:
        started = time.monotonic()
        with pytest.raises(LLMTimeoutError, match="busy"):
            client.complete_within(QUESTION, SHORT, timeout_s=0.2)  # waits no longer than the deadline
        assert time.monotonic() - started < 5
    finally:
        holder.close()


@pytest.mark.slow
def test_next_token_logprobs_are_log_probabilities(client: LlamaCppClient) -> None:
    assert isinstance(client, TokenScorer)
    messages = [{"role": "user", "content": "Is Paris the capital of France? Answer Yes or No."}]
    scores = client.next_token_logprobs(messages, ["Yes", "No"])
    assert set(scores) == {"Yes", "No"}
    assert all(v < 0 for v in scores.values()) and sum(math.exp(v) for v in scores.values()) <= 1 + 1e-6
    assert not client.shared.lock.locked()
    client.complete(QUESTION, SHORT)  # the model state is reset before each evaluation
    assert client.next_token_logprobs(messages, ["Yes", "No"]) == pytest.approx(scores, abs=1e-4)


@pytest.mark.slow
def test_get_llama_shares_one_model_per_path_and_context(client: LlamaCppClient, tiny_path: Path) -> None:
    assert get_llama(tiny_path, N_CTX) is client.shared
    assert get_llama(str(tiny_path), N_CTX).llama is client.shared.llama


@pytest.mark.slow
def test_factory_helper_reuses_the_generation_model(tiny_path: Path) -> None:
    settings = load_settings(
        llm_backend="llama-cpp",
        llm_model=str(tiny_path),
        llm_n_ctx=N_CTX,
        helper_llm_backend="llama-cpp",
        helper_llm_timeout_s=7,
    )
    generator, helper = build_llm(settings), build_helper_llm(settings)
    assert isinstance(generator, LlamaCppClient) and isinstance(helper, LlamaCppClient)
    generator.warm_up()
    helper.warm_up()
    assert helper.shared.llama is generator.shared.llama
    assert build_helper_llm(load_settings(helper_llm_backend="none")) is None


@pytest.mark.slow
def test_grounded_prompt_fits_the_real_context_window(tiny_path: Path) -> None:
    small = LlamaCppClient(str(tiny_path), models_dir=tiny_path.parent, n_ctx=512, n_threads=1)
    chunks = [
        EmbeddedChunk(
            id=f"c{i}",
            collection="embedded_posts",
            content_type="post",
            document_id=f"d{i}",
            chunk_index=0,
            content=("Retrieval augmented generation retrieves chunks before generating. " * 15),
            author_ids=["a"],
            author_full_name="Paul Iusztin",
            title=f"Post {i}",
        )
        for i in range(10)
    ]
    prompt = build_prompt_for_client("What is RAG?", chunks, small, max_new_tokens=16)
    assert 0 < len(prompt.used_chunks) < len(chunks)
    result = small.complete(prompt.messages, GenerationParams(max_new_tokens=16, temperature=0.0))
    # The real templated prompt (as counted by llama.cpp) plus the new tokens fits the window.
    assert result.prompt_tokens is not None and result.prompt_tokens + 16 <= 512
    assert result.prompt_tokens <= prompt.prompt_tokens


def test_unknown_model_is_unavailable(tmp_path: Path) -> None:
    llm = LlamaCppClient("no-such-model", models_dir=tmp_path)
    with pytest.raises(LLMUnavailableError, match="no-such-model"):
        llm.warm_up()


def test_corrupt_gguf_is_unavailable(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    llm = LlamaCppClient(str(bad), models_dir=tmp_path, n_ctx=512)
    with pytest.raises(LLMUnavailableError, match=r"broken\.gguf"):
        llm.warm_up()
    assert llm.model_name == "broken"
