"""``GET /metrics``: requests, stage histograms, tokens, queues and errors, in the Prometheus text format."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from rag_fakes import FakeLLM, FakeRetrieval

from llm_twin.api.app import create_app
from llm_twin.rag.pipeline import RAGPipeline
from llm_twin.retrieval.types import RetrievalResult
from llm_twin.settings import load_settings


class DegradedRetrieval(FakeRetrieval):
    """Reports the candidates it reranked and a failed query expansion, as the real pipeline does."""

    def run(self, query: str, k: int | None = None, expand_to_n: int | None = None, author: str | None = None, **kw):
        result: RetrievalResult = super().run(query, k, expand_to_n, author, **kw)
        result.rerank_candidates = 20
        result.warnings = ["query expansion timed out (TimeoutError); searched with the original query only"]
        result.timings_ms |= {"self_query": 0.5, "expansion": 3.0, "embedding": 4.0, "rerank": 6.0}
        return result


@pytest.fixture
def client(tmp_path) -> Iterator[TestClient]:
    settings = load_settings(data_dir=tmp_path)
    with TestClient(create_app(settings, RAGPipeline(DegradedRetrieval(), FakeLLM(), settings))) as test_client:
        yield test_client


def scrape(client: TestClient) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample of /metrics: name -> {sorted labels: value}."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get(name, {}).get(tuple(sorted(labels.items())), 0.0)


def test_stage_histograms_after_a_rag_request(client: TestClient) -> None:
    assert client.post("/rag", json={"query": "pattern matching"}).status_code == 200
    assert client.post("/rag", json={"query": "pattern matching", "stream": True}).status_code == 200
    samples = scrape(client)

    stage = "llm_twin_rag_stage_duration_seconds"
    for name in ("self_query", "expansion", "embedding", "search", "rerank", "prompt", "generation", "total"):
        assert value(samples, f"{stage}_count", stage=name) == 2, name
        assert value(samples, f"{stage}_bucket", stage=name, le="60.0") == 2, name
    assert value(samples, f"{stage}_count", stage="ttft") == 1  # the streamed answer only
    # Buckets from a millisecond to a minute; a 4 ms embedding is above the 2.5 ms bucket.
    assert value(samples, f"{stage}_bucket", stage="embedding", le="0.001") == 0
    assert value(samples, f"{stage}_bucket", stage="embedding", le="0.005") == 2
    assert value(samples, f"{stage}_sum", stage="expansion") == pytest.approx(0.006)

    assert value(samples, "llm_twin_rag_answers_total", mode="blocking") == 1
    assert value(samples, "llm_twin_rag_answers_total", mode="stream") == 1
    assert value(samples, "llm_twin_llm_tokens_total", direction="prompt") > 0
    assert value(samples, "llm_twin_llm_tokens_total", direction="completion") > 0
    assert value(samples, "llm_twin_rerank_candidates_count") == 2
    assert value(samples, "llm_twin_rerank_candidates_sum") == 40
    assert value(samples, "llm_twin_rag_degradations_total", kind="expansion") == 2

    # Requests by route template and status; latency per route.
    assert value(samples, "llm_twin_http_requests_total", route="/rag", method="POST", status="200") == 2
    assert value(samples, "llm_twin_http_request_duration_seconds_count", route="/rag", method="POST") == 2
    # Queue gauges are read at scrape time.
    assert value(samples, "llm_twin_llm_queue_length") == 0
    assert value(samples, "llm_twin_api_workers_busy") == 0
    assert "llm_twin_spans_total" in samples


def test_errors_are_counted_by_code_and_unknown_paths_share_a_label(client: TestClient) -> None:
    assert client.post("/rag", json={"query": ""}).status_code == 422
    assert client.post("/rag", json={"query": "x", "k": 0}).status_code == 422
    assert client.get("/no/such/page/123").status_code == 404
    samples = scrape(client)
    assert value(samples, "llm_twin_errors_total", code="invalid_input") == 2
    assert value(samples, "llm_twin_errors_total", code="not_found") == 1
    assert value(samples, "llm_twin_http_requests_total", route="/rag", method="POST", status="422") == 2
    assert value(samples, "llm_twin_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert not any("/no/such" in str(labels) for labels in samples["llm_twin_http_requests_total"])
    # Routes that are not FastAPI's own (the static mount) are labelled by their template too.
    assert client.get("/static/style.css").status_code == 200
    assert value(scrape(client), "llm_twin_http_requests_total", route="/static", method="GET", status="200") == 1


def test_stream_errors_after_the_start_are_counted(tmp_path) -> None:
    from llm_twin.errors import LLMError

    settings = load_settings(data_dir=tmp_path)
    llm = FakeLLM()
    llm.stream_error = LLMError("boom")
    with TestClient(create_app(settings, RAGPipeline(FakeRetrieval(), llm, settings))) as client:
        response = client.post("/rag", json={"query": "pattern matching", "stream": True})
        assert response.status_code == 200 and "event: error" in response.text
        assert value(scrape(client), "llm_twin_errors_total", code="llm_error") == 1


def test_each_app_has_its_own_registry(tmp_path, client: TestClient) -> None:
    client.post("/rag", json={"query": "pattern matching"})
    settings = load_settings(data_dir=tmp_path / "other")
    with TestClient(create_app(settings, RAGPipeline(FakeRetrieval(), FakeLLM(), settings))) as other:
        samples = scrape(other)
    assert value(samples, "llm_twin_rag_answers_total", mode="blocking") == 0
    assert value(scrape(client), "llm_twin_rag_answers_total", mode="blocking") == 1


def test_answers_from_other_routes_are_counted_in_the_same_place(client: TestClient) -> None:
    messages = [{"role": "user", "content": "What about pattern matching?"}]
    assert client.post("/v1/chat/completions", json={"model": "twin", "messages": messages}).status_code == 200
    samples = scrape(client)
    assert value(samples, "llm_twin_rag_answers_total", mode="blocking") == 1
    assert value(samples, "llm_twin_rag_stage_duration_seconds_count", stage="generation") == 1
    route = "/v1/chat/completions"
    assert value(samples, "llm_twin_http_requests_total", route=route, method="POST", status="200") == 1
