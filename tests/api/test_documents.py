"""The live index through HTTP: documents posted to a running app (real embedded store, ONNX
embedder, SmolLM2) are searchable in the next request, replaced when changed, deleted on request.

The app starts on an empty data dir: the first POST creates the collections and the next /rag
starts the search path that could not open them before.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conftest import slow_settings
from llm_twin.api.app import create_app
from llm_twin.domain.limits import MAX_DOCUMENTS_PER_REQUEST
from llm_twin.store.registry import AuthorRegistry

pytestmark = pytest.mark.slow

GRACE = "Grace Testington"
BREAD = (
    "Sourdough bread rises because wild yeast and lactic acid bacteria ferment the dough. "
    "A long cold fermentation overnight in the fridge gives the crumb its sour taste and open holes. "
    "Feed the starter with equal weights of flour and water the evening before baking."
)


def record(doc_id: str, text: str, author: str = GRACE, content_type: str = "post", **extra: str) -> dict:
    return {"id": doc_id, "content_type": content_type, "author": author, "text": text, **extra}


def jsonl(*records: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("live") / "data"


@pytest.fixture(scope="module")
def client(data_dir: Path, small_corpus: list[Path]) -> Iterator[TestClient]:
    app = create_app(slow_settings(data_dir, evidence_floor=0.0))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        assert test_client.get("/ready").json()["error"]["code"] == "store_unavailable"  # empty data dir
        body = "".join(path.read_text(encoding="utf-8") for path in small_corpus)
        posted = test_client.post("/documents", content=body, headers={"content-type": "application/x-ndjson"})
        assert posted.status_code == 200, posted.text
        assert posted.json()["written"] == 26
        yield test_client


def ask(client: TestClient, query: str) -> dict:
    response = client.post("/rag", json={"query": query})
    assert response.status_code == 200, response.text
    return response.json()


def source_ids(answer: dict) -> set[str]:
    return {source["id"].split(":", 1)[0] for source in answer["sources"]}


def documents_in_sources(answer: dict) -> set[str]:
    return {source["title"] or "" for source in answer["sources"]}


def ledger(data_dir: Path, content_type: str, doc_id: str) -> int:
    registry = AuthorRegistry(data_dir / "authors.sqlite", read_only=True)
    try:
        return registry.document_chunks(content_type, doc_id)
    finally:
        registry.close()


def test_a_posted_document_and_its_new_author_are_found_by_the_next_request(client: TestClient) -> None:
    posted = client.post("/documents", content=jsonl(record("bread-1", BREAD, title="Baking sourdough")))
    assert posted.status_code == 200, posted.text
    assert posted.json()["written"] == 1 and posted.json()["chunks_written"] >= 1
    answer = ask(client, f"What did {GRACE} write about sourdough fermentation?")
    assert answer["author"]["full_name"] == GRACE  # self-query knows the author at once
    assert [s["title"] for s in answer["sources"]] == ["Baking sourdough"]
    assert ready_ok(client)


def ready_ok(client: TestClient) -> bool:
    return client.get("/ready").status_code == 200


def test_a_changed_document_replaces_its_chunks_and_an_unchanged_one_is_skipped(
    client: TestClient, data_dir: Path
) -> None:
    long_text = "\n\n".join(f"Paragraph {i} about kayak paddling technique and river currents. " * 12 for i in range(8))
    first = client.post("/documents", json=[record("kayak-1", long_text, title="Kayak notes, long")])
    assert first.status_code == 200, first.text
    chunks_before = first.json()["counts"]["chunks"]
    assert ledger(data_dir, "post", "kayak-1") > 1
    changed = client.post("/documents", json=[record("kayak-1", "Kayaks are short now.", title="Kayak notes, short")])
    assert changed.json()["written"] == 1
    assert ledger(data_dir, "post", "kayak-1") == 1
    assert changed.json()["counts"]["chunks"] == chunks_before - first.json()["chunks_written"] + 1
    again = client.post("/documents", json=[record("kayak-1", "Kayaks are short now.", title="Kayak notes, short")])
    assert again.json()["written"] == 0 and again.json()["skipped"] == 1
    titles = {s["title"] for s in ask(client, f"What did {GRACE} write about kayaks?")["sources"]}
    assert "Kayak notes, short" in titles and "Kayak notes, long" not in titles


def test_a_bad_line_is_422_naming_line_and_field_and_nothing_is_written(client: TestClient, data_dir: Path) -> None:
    body = jsonl(record("ok-1", "Fine text about gardening."), {"id": "bad-1", "content_type": "post", "author": "X"})
    response = client.post("/documents", content=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input" and error["field"] == "line 2.text"
    assert "line 2" in error["message"] and "nothing was written" in error["message"]
    assert ledger(data_dir, "post", "ok-1") == 0  # the good line before it was not written either
    broken = client.post("/documents", content='{"id": "x"\n')
    assert broken.status_code == 422 and broken.json()["error"]["field"] == "line 1"
    item = client.post("/documents", json=[record("ok-2", "Fine."), record("bad-2", "t", content_type="tweet")])
    assert item.status_code == 422 and item.json()["error"]["field"].startswith("item 2")


def test_body_limits(client: TestClient) -> None:
    many = [record(f"n{i}", "x") for i in range(MAX_DOCUMENTS_PER_REQUEST + 1)]
    too_many = client.post("/documents", json=many)
    assert too_many.status_code == 422 and too_many.json()["error"]["field"] == "body"
    assert client.post("/documents", content="").status_code == 422
    huge = client.post("/documents", content=b"x", headers={"content-length": str(10**9)})
    assert huge.status_code == 413


def test_delete_removes_the_document_and_unknown_ids_are_404(client: TestClient, data_dir: Path) -> None:
    posted = client.post("/documents", json=[record("tea-1", "Green tea is steeped at 80 degrees.", title="Tea")])
    assert posted.status_code == 200
    deleted = client.delete("/documents/tea-1")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"id": "tea-1", "deleted": {"post": 1}}
    assert ledger(data_dir, "post", "tea-1") == 0
    assert "Tea" not in {s["title"] for s in ask(client, f"What did {GRACE} write about green tea?")["sources"]}
    missing = client.delete("/documents/tea-1")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_progress_is_idle_without_a_background_ingest(client: TestClient) -> None:
    progress = client.get("/documents/progress")
    assert progress.status_code == 200 and progress.json()["state"] == "idle"
    assert client.get("/ready").json().get("ingest") is None
