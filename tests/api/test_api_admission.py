"""The bounded wait queue: N admitted, ``max_queue`` waiting, 429 + Retry-After beyond; a queued
client that leaves gives up its place before its prompt is evaluated."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from rag_fakes import FakeLLM, FakeRetrieval

from llm_twin.api.admission import AdmissionLimiter, ServiceTimeMeter
from llm_twin.api.app import create_app
from llm_twin.errors import OverloadedError
from llm_twin.rag.pipeline import RAGPipeline
from llm_twin.scheduling import thread_niceness
from llm_twin.settings import load_settings


def test_meter_is_a_moving_average_of_service_times() -> None:
    meter = ServiceTimeMeter(alpha=0.5, initial_s=9.0)
    assert meter.retry_after(1, 1) == 9  # before any measurement: the initial guess
    meter.record(2.0)
    assert meter.mean_s == 2.0  # the first measurement replaces the guess
    meter.record(4.0)
    assert meter.mean_s == 3.0
    assert meter.retry_after(1, 1) == 3
    assert meter.retry_after(4, 1) == 12  # the fourth in line waits for four services
    assert meter.retry_after(4, 2) == 6  # two at a time
    meter.record(0.001)
    meter.record(0.001)
    assert meter.retry_after(1, 4) == 1  # never below one second


def test_limiter_admits_then_queues_then_refuses() -> None:
    async def main() -> tuple[OverloadedError, int]:
        limiter = AdmissionLimiter(1, max_queue=1, meter=ServiceTimeMeter(initial_s=2.0))
        await limiter.acquire()  # the one slot
        waiter_in = anyio.Event()

        async def wait_in_line() -> None:
            waiter_in.set()
            async with limiter:
                pass

        async with anyio.create_task_group() as group:
            group.start_soon(wait_in_line)
            await waiter_in.wait()
            await anyio.sleep(0.01)
            assert limiter.waiting == 1
            with pytest.raises(OverloadedError) as refused:
                await limiter.acquire()
            limiter.release()  # the waiter gets the slot and gives it back
        return refused.value, limiter.borrowed_tokens

    refused, borrowed = asyncio.run(main())
    assert refused.http_status == 429 and refused.code == "overloaded"
    assert refused.retry_after_s is not None and refused.retry_after_s >= 1
    assert borrowed == 0


def test_limiter_measures_how_long_slots_are_held() -> None:
    async def main() -> float:
        limiter = AdmissionLimiter(2, max_queue=0)
        await anyio.to_thread.run_sync(time.sleep, 0.05, limiter=limiter)
        return limiter.meter.mean_s

    assert 0.04 <= asyncio.run(main()) < 1.0


@pytest.fixture
def gated(tmp_path) -> Iterator[tuple[TestClient, FakeRetrieval, FakeLLM]]:
    """One worker, one waiting place; the LLM holds each generation until the test opens its gate."""
    settings = load_settings(data_dir=tmp_path, api_workers=1, max_queue=1)
    retrieval, llm = FakeRetrieval(), FakeLLM()
    llm.gate = threading.Event()
    with TestClient(create_app(settings, RAGPipeline(retrieval, llm, settings)), raise_server_exceptions=False) as c:
        try:
            yield c, retrieval, llm
        finally:
            llm.gate.set()


@pytest.mark.parametrize("stream", [False, True])
def test_beyond_the_queue_is_429_at_once(gated, stream: bool) -> None:
    client, retrieval, llm = gated
    results: dict[str, httpx.Response] = {}

    def ask(name: str) -> None:
        results[name] = client.post("/rag", json={"query": name, "stream": False})

    first = threading.Thread(target=ask, args=("first",))
    first.start()
    assert llm.entered.wait(10)
    second = threading.Thread(target=ask, args=("second",))
    second.start()
    deadline = time.monotonic() + 5
    while client.app.state.service.limiter.waiting < 1 and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.01)
    started = time.perf_counter()
    refused = client.post("/rag", json={"query": "third", "stream": stream})
    elapsed = time.perf_counter() - started
    llm.gate.set()
    first.join(10)
    second.join(10)

    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "overloaded"
    assert int(refused.headers["retry-after"]) >= 1
    assert elapsed < 0.5  # refused at once, not after a wait
    assert results["first"].status_code == results["second"].status_code == 200
    assert [call["query"] for call in retrieval.calls] == ["first", "second"]  # "third" never ran


@contextmanager
def serve(app) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.mark.parametrize("stream", [False, True])
def test_a_queued_client_that_leaves_gives_up_its_place(tmp_path, stream: bool) -> None:
    settings = load_settings(data_dir=tmp_path, api_workers=1, max_queue=4)
    retrieval, llm = FakeRetrieval(), FakeLLM()
    llm.gate = threading.Event()
    app = create_app(settings, RAGPipeline(retrieval, llm, settings))
    with serve(app) as url:
        first = threading.Thread(
            target=lambda: httpx.post(f"{url}/rag", json={"query": "first", "stream": False}, timeout=30)
        )
        first.start()
        try:
            assert llm.entered.wait(10)
            with pytest.raises(httpx.ReadTimeout):  # the client gives up while queued: it disconnects
                httpx.post(f"{url}/rag", json={"query": "impatient", "stream": stream}, timeout=0.5)
            limiter = app.state.service.limiter
            deadline = time.monotonic() + 5
            while limiter.waiting and time.monotonic() < deadline:
                time.sleep(0.02)
            assert limiter.waiting == 0  # it left the queue while the first request still runs
        finally:
            llm.gate.set()
        first.join(10)
        after = httpx.post(f"{url}/rag", json={"query": "after", "stream": False}, timeout=10)
    assert after.status_code == 200
    assert [call["query"] for call in retrieval.calls] == ["first", "after"]  # "impatient" never ran
    assert llm.calls == 2


def test_the_openai_api_shares_the_queue_and_gets_its_own_error_shape(gated) -> None:
    client, _, llm = gated
    chat = {"model": "twin-guido-van-rossum", "messages": [{"role": "user", "content": "pattern matching?"}]}
    first = threading.Thread(target=lambda: client.post("/rag", json={"query": "first", "stream": False}))
    first.start()
    assert llm.entered.wait(10)
    second = threading.Thread(target=lambda: client.post("/v1/chat/completions", json=chat))
    second.start()
    deadline = time.monotonic() + 5
    while client.app.state.service.limiter.waiting < 1 and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.01)
    refused = client.post("/v1/chat/completions", json={**chat, "stream": True})
    llm.gate.set()
    first.join(10)
    second.join(10)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    error = refused.json()["error"]
    assert error["code"] == "overloaded" and error["type"] == "rate_limit_error" and "param" in error


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
@pytest.mark.parametrize("stream", [False, True])
def test_answers_compute_below_the_event_loop(tmp_path, stream: bool) -> None:
    """The thread that retrieves and generates runs at LLM_TWIN_WORKER_NICENESS (the loop stays at 0)."""
    loop_niceness = thread_niceness()
    assert loop_niceness is not None
    target = min(19, loop_niceness + 7)  # the test itself may run niced (nice -n 19 pytest)
    if target == loop_niceness:
        pytest.skip("the test runs at the lowest priority already: nothing lower to check")
    settings = load_settings(data_dir=tmp_path, worker_niceness=target)
    seen: list[int | None] = []

    class NicenessLLM(FakeLLM):
        def _begin(self, messages, params) -> None:  # type: ignore[no-untyped-def]
            seen.append(thread_niceness())
            super()._begin(messages, params)

    app = create_app(settings, RAGPipeline(FakeRetrieval(), NicenessLLM(), settings))
    with TestClient(app) as client:
        response = client.post("/rag", json={"query": "pattern matching", "stream": stream})
        assert response.status_code == 200, response.text
    assert seen == [target]
