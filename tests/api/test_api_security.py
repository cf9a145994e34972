"""Access and request limits: API keys, the per-key rate limit, CORS and the body size limit.

Fakes at the model/store boundary; the middleware under test is the real one, in the real app.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from rag_fakes import FakeLLM, FakeRetrieval

from llm_twin.api.app import create_app
from llm_twin.api.security import KeyRing, TokenBucketLimiter, is_open_path
from llm_twin.rag.pipeline import RAGPipeline
from llm_twin.settings import load_settings

KEY, OTHER_KEY = "sk-test-1f2e3d4c", "sk-test-second-key"
QUESTION = {"query": "What did Guido van Rossum write about pattern matching?", "stream": False}


def make_client(tmp_path, **overrides: object) -> TestClient:
    settings = load_settings(data_dir=tmp_path, **overrides)
    app = create_app(settings, RAGPipeline(FakeRetrieval(), FakeLLM(), settings))
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def keyed(tmp_path) -> Iterator[TestClient]:
    with make_client(tmp_path, api_keys=f"{KEY},{OTHER_KEY}") as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# --- keys ---------------------------------------------------------------------------------------


def test_without_configured_keys_everything_is_open(tmp_path) -> None:
    with make_client(tmp_path) as client:
        assert client.post("/rag", json=QUESTION).status_code == 200


def test_a_missing_key_is_401_in_the_service_error_shape(keyed: TestClient) -> None:
    response = keyed.post("/rag", json=QUESTION)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {
        "error": {
            "code": "unauthorized",
            "message": "a valid API key is required: send it as `Authorization: Bearer <key>`",
        }
    }


@pytest.mark.parametrize(
    "header",
    [f"Bearer {KEY}x", f"Basic {KEY}", KEY, "Bearer ", f"Bearer {KEY[:-1]}", "Bearer sk-test-1f2e3d4c\u00e9"],
)
def test_a_wrong_key_or_scheme_is_401(keyed: TestClient, header: str) -> None:
    response = keyed.post("/rag", json=QUESTION, headers={"Authorization": header.encode("utf-8")})  # type: ignore[dict-item]
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("key", [KEY, OTHER_KEY])
def test_each_configured_key_is_accepted(keyed: TestClient, key: str) -> None:
    response = keyed.post("/rag", json=QUESTION, headers=bearer(key))
    assert response.status_code == 200, response.text
    assert response.json()["answer"]


def test_the_scheme_is_case_insensitive_as_http_says(keyed: TestClient) -> None:
    assert keyed.post("/rag", json=QUESTION, headers={"Authorization": f"bearer {KEY}"}).status_code == 200


def test_keys_may_be_a_json_list(tmp_path) -> None:
    with make_client(tmp_path, api_keys=f'["{KEY}"]') as client:
        assert client.post("/rag", json=QUESTION, headers=bearer(KEY)).status_code == 200
        assert client.post("/rag", json=QUESTION, headers=bearer(OTHER_KEY)).status_code == 401


@pytest.mark.parametrize("path", ["/", "/health", "/ready", "/openapi.json", "/docs", "/static/index.html", "/metrics"])
def test_open_paths_need_no_key(keyed: TestClient, path: str) -> None:
    assert keyed.get(path).status_code != 401  # /metrics may not exist here (404), but it is not refused


def test_unknown_paths_are_protected_too(keyed: TestClient) -> None:
    # Routes added later (documents, feedback, a mounted sub-app) are covered without a change here.
    for path in ("/documents", "/mcp", "/healthz", "/readyx", "/static-secrets"):
        assert keyed.get(path).status_code == 401, path


def test_metrics_can_require_a_key(tmp_path) -> None:
    assert is_open_path("/metrics") and not is_open_path("/metrics", metrics_open=False)
    with make_client(tmp_path, api_keys=KEY, metrics_require_key=True) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers=bearer(KEY)).status_code != 401
        assert client.get("/health").status_code == 200


def test_openai_paths_get_the_openai_error_shape(keyed: TestClient) -> None:
    response = keyed.post("/v1/chat/completions", json={"model": "x", "messages": []})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "invalid_api_key" and error["type"] == "authentication_error"


def test_keys_never_reach_the_logs(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with make_client(tmp_path, api_keys=KEY) as client:
        client.post("/rag", json=QUESTION, headers=bearer(KEY))
        client.post("/rag", json=QUESTION, headers=bearer(KEY + "wrong"))
    assert caplog.records  # the app did log (startup, requests)
    assert KEY not in caplog.text
    assert KEY not in repr(load_settings(api_keys=KEY))


def test_key_ring_compares_against_every_key() -> None:
    ring = KeyRing(["alpha", "beta", "beta"])
    assert ring.match("alpha") == 0 and ring.match("beta") == 1
    assert ring.match("gamma") is None and ring.match("") is None
    assert not KeyRing([])


# --- rate limit ---------------------------------------------------------------------------------


def test_rate_limit_is_per_key_with_retry_after(tmp_path) -> None:
    with make_client(tmp_path, api_keys=f"{KEY},{OTHER_KEY}", rate_limit_per_minute=2) as client:
        assert [client.post("/rag", json=QUESTION, headers=bearer(KEY)).status_code for _ in range(2)] == [200, 200]
        refused = client.post("/rag", json=QUESTION, headers=bearer(KEY))
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 30  # a token comes back every 30 s
        assert client.post("/rag", json=QUESTION, headers=bearer(OTHER_KEY)).status_code == 200  # its own bucket
        assert client.get("/health").status_code == 200  # probes are not rate limited


def test_rate_limit_without_keys_is_per_client_address(tmp_path) -> None:
    with make_client(tmp_path, rate_limit_per_minute=1) as client:
        assert client.post("/rag", json=QUESTION).status_code == 200
        assert client.post("/rag", json=QUESTION).status_code == 429


def test_token_bucket_refills_at_the_configured_rate() -> None:
    now = [0.0]
    bucket = TokenBucketLimiter(per_minute=6, clock=lambda: now[0])  # one token every 10 s, bursts of 6
    assert all(bucket.take("a") == 0 for _ in range(6))
    assert bucket.take("a") == pytest.approx(10.0)
    now[0] = 5.0
    assert bucket.take("a") == pytest.approx(5.0)
    now[0] = 10.0
    assert bucket.take("a") == 0
    assert bucket.take("b") == 0  # another client, another bucket


# --- CORS -----------------------------------------------------------------------------------------


def test_cors_is_off_by_default(keyed: TestClient) -> None:
    response = keyed.get("/health", headers={"Origin": "https://example.org"})
    assert "access-control-allow-origin" not in response.headers


def test_cors_origins_allow_preflight_without_a_key(tmp_path) -> None:
    with make_client(tmp_path, api_keys=KEY, cors_origins="https://twin.example.org") as client:
        preflight = client.options(
            "/rag",
            headers={
                "Origin": "https://twin.example.org",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://twin.example.org"
        refused = client.post("/rag", json=QUESTION, headers={"Origin": "https://twin.example.org"})
        assert refused.status_code == 401  # the browser sees the refusal: it carries the CORS headers
        assert refused.headers["access-control-allow-origin"] == "https://twin.example.org"
        other = client.options(
            "/rag", headers={"Origin": "https://evil.example.com", "Access-Control-Request-Method": "POST"}
        )
        assert other.status_code == 400


# --- body size ------------------------------------------------------------------------------------


def test_a_large_declared_body_is_413_before_it_is_read(tmp_path) -> None:
    with make_client(tmp_path) as client:
        started = time.perf_counter()
        response = client.post(
            "/rag", content=b'{"query": "' + b"a" * 1_000_000 + b'"}', headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
        assert time.perf_counter() - started < 2


def test_a_large_body_without_a_length_is_counted_as_it_arrives(tmp_path) -> None:
    sent = []

    def chunks() -> Iterator[bytes]:
        for _ in range(64):  # 64 x 16 KiB = 1 MiB, in pieces, with no Content-Length
            sent.append(1)
            yield b"a" * 16384

    with make_client(tmp_path) as client:
        response = client.post("/rag", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_the_body_limit_is_configurable_and_bodies_under_it_pass(tmp_path) -> None:
    with make_client(tmp_path, max_body_bytes=2048) as client:
        assert client.post("/rag", json=QUESTION).status_code == 200
        big = {"query": "x" * 1900, "stream": False, "author": "y" * 190}
        assert client.post("/rag", json=big).status_code == 413
        assert client.post("/v1/chat/completions", content=b"x" * 4096).json()["error"]["code"] == "payload_too_large"


def test_documents_have_their_own_larger_body_limit(tmp_path) -> None:
    with make_client(tmp_path, max_body_bytes=2048) as client:
        bulk = b'{"id": "a", "text": "' + b"x" * 100_000 + b'"}\n'
        response = client.post("/documents", content=bulk, headers={"Content-Type": "application/x-ndjson"})
        assert response.status_code != 413  # the live index decides on it (here: no writable store), not the limit
        assert client.post("/rag", content=bulk, headers={"Content-Type": "application/json"}).status_code == 413
