"""Streaming plumbing: the thread bridge, one request limit for streams and blocking calls, a client disconnect."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from rag_fakes import FakeLLM, FakeRetrieval

from llm_twin.api.app import create_app
from llm_twin.api.routes.rag import _event_stream
from llm_twin.api.service import ThreadedStream
from llm_twin.rag.pipeline import RAGPipeline
from llm_twin.settings import load_settings


def counting_generator(closed: threading.Event, produced: list[int], n: int = 1000) -> Iterator[int]:
    try:
        for i in range(n):
            produced.append(i)
            yield i
            time.sleep(0.002)
    finally:
        closed.set()


def test_threaded_stream_delivers_items_then_end() -> None:
    async def main() -> list[tuple[str, object]]:
        stream = ThreadedStream(lambda: iter([1, 2, 3])).start()
        return [await stream.get(timeout=5) for _ in range(4)]

    assert asyncio.run(main()) == [("item", 1), ("item", 2), ("item", 3), ("end", None)]


def test_threaded_stream_hands_errors_to_the_consumer() -> None:
    def failing() -> Iterator[int]:
        yield 1
        raise ValueError("boom")

    async def main() -> list[tuple[str, object]]:
        stream = ThreadedStream(failing).start()
        return [await stream.get(timeout=5) for _ in range(2)]

    first, second = asyncio.run(main())
    assert first == ("item", 1)
    assert second[0] == "error" and isinstance(second[1], ValueError)


def test_closing_the_event_stream_stops_and_closes_the_generator() -> None:
    closed, produced = threading.Event(), []

    async def main() -> ThreadedStream[int]:
        stream = ThreadedStream(lambda: counting_generator(closed, produced)).start()
        events = _event_stream(stream, None)  # type: ignore[arg-type]
        stream_items = []

        async def take() -> None:
            async for _ in events:
                stream_items.append(1)
                if len(stream_items) == 3:
                    break

        with pytest.raises(TypeError):  # ints are not RAG events: encode_event refuses them
            await take()
        await events.aclose()
        return stream

    stream = asyncio.run(main())
    assert stream.stopped
    assert stream.join(5) and closed.is_set()
    assert len(produced) < 1000


def test_client_disconnect_stops_generation(live_server: tuple[str, FakeLLM]) -> None:
    url, llm = live_server
    llm.pieces = tuple(f"tok{i} " for i in range(2000))  # ~2 ms per piece: ~4 s in all
    started = time.monotonic()
    with (
        httpx.Client(timeout=10) as client,
        client.stream("POST", f"{url}/rag", json={"query": "q", "stream": True}) as response,
    ):
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(lines) == "event: sources"
        while not next(lines).startswith("event: token"):
            pass
    # leaving the block closes the connection mid-stream
    assert llm.stream_closed.wait(3), "generation kept running after the client left"
    assert time.monotonic() - started < 3.5  # well before the ~4 s the full answer takes
    with httpx.Client(timeout=10) as client:
        assert client.get(f"{url}/health").status_code == 200


@pytest.mark.parametrize("first_streams", [True, False])
def test_streamed_and_blocking_requests_share_one_limit(tmp_path, first_streams: bool) -> None:
    settings = load_settings(data_dir=tmp_path, api_workers=1)
    retrieval, llm = FakeRetrieval(), FakeLLM()
    llm.gate = threading.Event()
    finished: list[str] = []
    results: dict[str, httpx.Response] = {}

    with TestClient(create_app(settings, RAGPipeline(retrieval, llm, settings))) as client:

        def ask(query: str, stream: bool) -> None:
            results[query] = client.post("/rag", json={"query": query, "stream": stream})
            finished.append(query)

        first = threading.Thread(target=ask, args=("first", first_streams))
        second = threading.Thread(target=ask, args=("second", not first_streams))
        first.start()
        try:
            assert llm.entered.wait(10), "the first request never reached the model"
            second.start()
            time.sleep(0.3)
            # The one slot is taken: the second request has not even started retrieval.
            assert [call["query"] for call in retrieval.calls] == ["first"]
        finally:
            llm.gate.set()
        first.join(10)
        if second.ident is not None:  # started
            second.join(10)

    # Which client thread reads its response to the end first is up to the scheduler; the order the
    # pipeline served them in is what the limit decides.
    assert sorted(finished) == ["first", "second"]
    assert [call["query"] for call in retrieval.calls] == ["first", "second"]
    assert all(response.status_code == 200 for response in results.values())


def test_a_stream_stopped_while_waiting_for_a_slot_never_starts() -> None:
    started = threading.Event()

    def generator() -> Iterator[int]:
        started.set()
        yield 1

    async def main() -> ThreadedStream[int]:
        import anyio

        limiter = anyio.CapacityLimiter(1)
        await limiter.acquire()  # the one slot is taken
        stream = ThreadedStream(generator, limiter).start()
        await asyncio.sleep(0.05)
        stream.stop()  # the client left
        limiter.release()
        await asyncio.sleep(0.05)
        return stream

    stream = asyncio.run(main())
    assert stream.join(5) and not started.is_set()
