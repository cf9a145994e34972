"""The Qdrant server client retries connection errors and 5xx a bounded number of times, with
backoff, never past the request's deadline; a 4xx or a missing collection is not retried."""

from __future__ import annotations

import time

import httpx
import pytest
from qdrant_client import QdrantClient
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from llm_twin.domain.deadline import Deadline, deadline_scope
from llm_twin.errors import StoreUnavailableError
from llm_twin.store.qdrant_server import QdrantServerStore


def http_error(status: int) -> UnexpectedResponse:
    return UnexpectedResponse(status, "error", b"{}", httpx.Headers())


class Flaky:
    def __init__(self, *errors: Exception) -> None:
        self.errors, self.calls = list(errors), 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


@pytest.fixture
def store() -> QdrantServerStore:
    return QdrantServerStore(QdrantClient(location=":memory:"), "none", max_retries=2, backoff_s=0.01)


def test_connection_errors_and_5xx_are_retried(store: QdrantServerStore) -> None:
    flaky = Flaky(ResponseHandlingException(ConnectionError("refused")), http_error(503))
    assert store._call(flaky) == "ok" and flaky.calls == 3


def test_retries_are_bounded(store: QdrantServerStore) -> None:
    flaky = Flaky(*[ResponseHandlingException(ConnectionError("refused"))] * 5)
    with pytest.raises(StoreUnavailableError, match="unavailable"):
        store._call(flaky)
    assert flaky.calls == 3


@pytest.mark.parametrize(("status", "message"), [(400, "HTTP 400"), (404, "collection missing")])
def test_client_errors_are_not_retried(store: QdrantServerStore, status: int, message: str) -> None:
    flaky = Flaky(http_error(status))
    with pytest.raises(StoreUnavailableError, match=message):
        store._call(flaky)
    assert flaky.calls == 1


def test_no_backoff_sleeps_past_the_deadline() -> None:
    store = QdrantServerStore(QdrantClient(location=":memory:"), "none", max_retries=5, backoff_s=5.0)
    flaky = Flaky(*[ResponseHandlingException(ConnectionError("refused"))] * 6)
    started = time.perf_counter()
    with deadline_scope(Deadline.after(2.0)), pytest.raises(StoreUnavailableError):
        store._call(flaky)
    assert flaky.calls == 1 and time.perf_counter() - started < 1.0
