"""Streaming plumbing: the thread bridge, and a client disconnect through a real uvicorn server."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from rag_fakes import FakeLLM

from llm_twin.api.routes.rag import _event_stream
from llm_twin.api.service import ThreadedStream


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
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", f"{url}/rag", json={"query": "q", "stream": True}) as response:
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
