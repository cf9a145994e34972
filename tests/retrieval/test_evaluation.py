"""`llm-twin eval retrieval` on a tiny BEIR-format dataset built from SciFact's first documents."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from corpus_support import write_tiny_beir
from llm_twin.cli import app
from llm_twin.retrieval.evaluation import DatasetError, eval_settings, load_beir
from llm_twin.settings import load_settings


@pytest.fixture(scope="module")
def tiny_beir(tmp_path_factory):
    """12 documents; each query is a document's title, relevant to that document only."""
    return write_tiny_beir(tmp_path_factory.mktemp("tiny_beir") / "tiny")


def test_load_beir(tiny_beir):
    dataset = load_beir(tiny_beir)
    assert len(dataset.corpus) == 12 and len(dataset.queries) == 4
    assert dataset.corpus[0].title and dataset.corpus[0].content_type == "article"


def test_not_a_dataset(tmp_path):
    with pytest.raises(DatasetError, match="missing"):
        load_beir(tmp_path)


@pytest.mark.slow
def test_eval_cli_scores_titles_as_queries(tiny_beir, tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_TWIN_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    for mode in ("dense", "sparse", "hybrid"):
        result = runner.invoke(app, ["eval", "retrieval", "--dataset", str(tiny_beir), "--mode", mode, "--json"])
        assert result.exit_code == 0, result.stderr
        metrics = json.loads(result.stdout)
        assert metrics["queries"] == 4 and metrics["mode"] == mode and metrics["split"] == "test"
        assert metrics["embedding_model"].startswith("sentence-transformers/all-MiniLM-L6-v2")
        # A title finds its own abstract first: near-perfect on this easy set.
        assert metrics["ndcg@10"] >= 0.9 and metrics["recall@100"] == 1.0
    assert (tmp_path / "data" / "eval" / tiny_beir.name / "vectors").is_dir()


def test_eval_cli_bad_options(tiny_beir, tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_TWIN_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    assert "--mode" in runner.invoke(app, ["eval", "retrieval", "--mode", "fancy"]).stderr
    assert "--dataset" in runner.invoke(app, ["eval", "retrieval", "--dataset", str(tmp_path)]).stderr
    assert runner.invoke(app, ["eval", "retrieval", "--limit", "0"]).exit_code == 2


@pytest.mark.slow
def test_eval_cli_with_hyde_on_the_real_small_model(tiny_beir, tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_TWIN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LLM_TWIN_LLM_MODEL", "smollm2-135m-instruct")  # the helper shares the generation GGUF
    args = [
        "eval",
        "retrieval",
        "--dataset",
        str(tiny_beir),
        "--fusion",
        "dbsf",
        "--hyde",
        "--json",
        "--hyde-instruction",
        "Write a scientific abstract about: {query}",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["hyde"] is True and metrics["fusion"] == "dbsf" and metrics["queries"] == 4
    assert metrics["seconds"]["hyde"] > 0 and not metrics["warnings"]
    assert metrics["recall@100"] == 1.0 and metrics["ndcg@10"] >= 0.7


def test_eval_cli_hyde_without_a_helper_is_a_clear_error(tiny_beir, tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_TWIN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LLM_TWIN_HELPER_LLM_BACKEND", "none")
    result = CliRunner().invoke(app, ["eval", "retrieval", "--dataset", str(tiny_beir), "--hyde", "--limit", "1"])
    assert result.exit_code == 1
    assert "--hyde needs a helper LLM" in result.stderr


def test_another_embedder_gets_its_own_eval_store(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    default = eval_settings(settings, "scifact")
    tuned = eval_settings(settings.model_copy(update={"embedding_model": str(tmp_path / "minilm-tuned")}), "scifact")
    other = eval_settings(
        settings.model_copy(update={"embedding_model": str(tmp_path / "b" / "minilm-tuned")}), "scifact"
    )
    assert default.data_dir == tmp_path / "eval" / "scifact"
    assert tuned.data_dir.parent == default.data_dir.parent and tuned.data_dir.name.startswith("scifact@minilm-tuned-")
    assert other.data_dir != tuned.data_dir  # same folder name elsewhere: not the same store
    assert tuned.qdrant_url is None


def test_eval_cli_split_errors(tiny_beir, tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_TWIN_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    missing = runner.invoke(app, ["eval", "retrieval", "--dataset", str(tiny_beir), "--split", "dev"])
    assert missing.exit_code == 2 and "no qrels/dev.tsv (it has: test)" in " ".join(missing.stderr.split())
    odd = runner.invoke(app, ["eval", "retrieval", "--dataset", str(tiny_beir), "--split", "../test"])
    assert odd.exit_code == 2 and "--split" in odd.stderr
    assert not (tmp_path / "data").exists()  # refused before anything was ingested
