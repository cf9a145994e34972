"""``GET /authors``: the people in the registry, searchable and paginated."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from rag_fakes import FakeLLM, FakeRetrieval, write_registry

from llm_twin.api.app import create_app
from llm_twin.domain.authors import Author
from llm_twin.rag.pipeline import RAGPipeline
from llm_twin.settings import load_settings


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = load_settings(data_dir=tmp_path)
    app = create_app(settings, RAGPipeline(FakeRetrieval(), FakeLLM(), settings))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_lists_each_person_with_counts_most_documents_first(client: TestClient, tmp_path: Path) -> None:
    write_registry(tmp_path)
    response = client.get("/authors")
    assert response.status_code == 200
    page = response.json()
    assert page["total"] == 2 and page["offset"] == 0 and page["limit"] == 50 and page["q"] is None
    guido, pablo = page["authors"]
    assert guido == {
        "id": Author.from_name("Guido van Rossum").id,
        "name": "Guido van Rossum",
        "names": [],
        "documents": {"article": 4, "post": 1},
        "total_documents": 5,
    }
    assert pablo["name"] == "Pablo Galindo Salgado"
    assert pablo["names"] == [
        {"name": "Pablo Galindo", "id": Author.from_name("Pablo Galindo").id, "linked_by": "name rule"}
    ]
    assert pablo["documents"] == {"article": 1, "repository": 1}  # summed over the person's names


def test_search_matches_any_name_ignoring_case_and_accents(client: TestClient, tmp_path: Path) -> None:
    write_registry(tmp_path)
    assert [a["name"] for a in client.get("/authors", params={"q": "GUIDO"}).json()["authors"]] == ["Guido van Rossum"]
    # "galindo" is in both of Pablo's names: one person, once
    page = client.get("/authors", params={"q": "galíndo"}).json()
    assert page["total"] == 1 and page["authors"][0]["name"] == "Pablo Galindo Salgado"
    assert client.get("/authors", params={"q": "nobody"}).json() == {
        "total": 0,
        "offset": 0,
        "limit": 50,
        "q": "nobody",
        "authors": [],
    }


def test_pages(client: TestClient, tmp_path: Path) -> None:
    write_registry(tmp_path)
    first = client.get("/authors", params={"limit": 1}).json()
    second = client.get("/authors", params={"limit": 1, "offset": 1}).json()
    assert first["total"] == second["total"] == 2
    assert [a["name"] for a in first["authors"] + second["authors"]] == ["Guido van Rossum", "Pablo Galindo Salgado"]
    assert client.get("/authors", params={"offset": 5}).json()["authors"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [({"limit": 0}, "limit"), ({"limit": 201}, "limit"), ({"offset": -1}, "offset"), ({"q": "x" * 201}, "q")],
)
def test_bad_parameters_are_a_422_naming_the_field(client: TestClient, params: dict, field: str) -> None:
    response = client.get("/authors", params=params)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_input"
    assert field in response.json()["error"]["field"]


def test_without_a_registry_is_a_503(client: TestClient) -> None:
    response = client.get("/authors")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "store_unavailable"
