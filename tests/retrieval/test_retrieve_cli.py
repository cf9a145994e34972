"""`llm-twin retrieve` through the CLI (its own module: the pipeline fixture elsewhere holds the store)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from llm_twin.cli import app


def test_retrieve_cli_json(ingested_settings, monkeypatch):
    monkeypatch.setenv("LLM_TWIN_DATA_DIR", str(ingested_settings.data_dir))
    monkeypatch.setenv("LLM_TWIN_HELPER_LLM_BACKEND", "none")
    monkeypatch.setenv("LLM_TWIN_RERANK_BACKEND", "none")
    result = CliRunner().invoke(
        app,
        ["retrieve", "What did Guido van Rossum write about pattern matching?", "--k", "4", "--expand", "1", "--json"],
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert {"rerank", "query", "author", "expanded_queries", "chunks", "timings_ms"} <= set(data)
    assert data["author"]["full_name"] == "Guido van Rossum"
    assert data["rerank"] == "none"
    assert all({"id", "collection", "author_full_name", "score", "content"} <= set(c) for c in data["chunks"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["retrieve", "  "], "query: must not be empty"),
        (["retrieve", "q", "--k", "0"], "--k"),
        (["retrieve", "q", "--expand", "0"], "--expand"),
        (["retrieve", "q", "--author", "Gvido van Rosum", "--expand", "1"], "closest: Guido van Rossum"),
        (["retrieve", "q", "--author", "Nobody Known", "--expand", "1"], "no author named"),
    ],
)
def test_retrieve_cli_errors(ingested_settings, monkeypatch, args, message):
    monkeypatch.setenv("LLM_TWIN_DATA_DIR", str(ingested_settings.data_dir))
    monkeypatch.setenv("LLM_TWIN_HELPER_LLM_BACKEND", "none")
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
