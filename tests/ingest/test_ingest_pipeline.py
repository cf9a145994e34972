"""The ingest pipeline on a slice of the demo corpus: counts, idempotence, resume, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from corpus_support import write_small_corpus
from llm_twin.cli import app
from llm_twin.domain.authors import author_id
from llm_twin.ingest import pipeline as pipeline_module
from llm_twin.ingest.pipeline import IngestPipeline
from llm_twin.settings import load_settings
from llm_twin.store.registry import AuthorRegistry


def _settings(tmp_path):
    return load_settings(data_dir=tmp_path / "data")


def _ingest(settings, paths):
    pipeline = IngestPipeline(settings)
    try:
        return pipeline.run(paths)
    finally:
        pipeline.close()


def test_counts_and_second_run_changes_nothing(ingested_settings, small_corpus):
    registry = AuthorRegistry(ingested_settings.registry_path, read_only=True)
    counts = registry.counts()
    registry.close()
    assert (counts["articles"], counts["posts"], counts["repositories"]) == (5, 18, 3)
    report = _ingest(ingested_settings, small_corpus)
    assert report.documents_written == 0 and report.documents_skipped == 26
    assert report.counts["chunks"] == counts["chunks"]
    assert report.counts["chunks"] > 26  # the shortened PEPs still need several chunks each


def test_registry_links_handles_and_counts(ingested_settings):
    registry = AuthorRegistry(ingested_settings.registry_path, read_only=True)
    larry = registry.find_by_name("Larry Hastings")
    guido = registry.get(author_id("Guido van Rossum"))
    names = {a.full_name for a in registry.authors()}
    registry.close()
    assert larry is not None and "larryhastings" in larry.aliases
    assert "larryhastings" not in names  # an alias, not a second author
    assert guido is not None and guido.counts["post"] == 6 and guido.counts["article"] >= 3


def test_payload_fields(ingested_settings):
    from llm_twin.embedding.onnx_embedder import OnnxSentenceEmbedder
    from llm_twin.store.base import SearchRequest
    from llm_twin.store.edge import EdgeVectorStore

    store = EdgeVectorStore(ingested_settings.vectors_dir)
    vector = OnnxSentenceEmbedder().embed(["structural pattern matching"])[0].tolist()
    hits = store.query_batch("embedded_articles", [SearchRequest(limit=3, mode="dense", dense=vector)])[0]
    store.close()
    payload = hits[0].payload
    assert payload["document_id"] == "pep-0634"
    assert author_id("Guido van Rossum") in payload["author_id"]
    assert "Guido van Rossum" in payload["author_full_name"]
    assert payload["title"].startswith("Structural Pattern Matching")
    assert payload["link"] == "https://peps.python.org/pep-0634/"
    assert payload["metadata"]["embedding_model"] == "sentence-transformers/all-MiniLM-L6-v2@int8-dynamic"
    assert payload["metadata"]["embedding_size"] == 384
    assert "\n" in payload["content"]  # structure kept


def test_changed_document_replaces_its_chunks(tmp_path):
    paths = write_small_corpus(tmp_path / "corpus")
    settings = _settings(tmp_path)
    first = _ingest(settings, paths)
    lines = paths[0].read_text(encoding="utf-8").splitlines()
    record = json.loads(lines[0])
    record["text"] = "A much shorter text now."
    lines[0] = json.dumps(record)
    paths[0].write_text("\n".join(lines) + "\n", encoding="utf-8")
    second = _ingest(settings, paths)
    assert second.documents_written == 1
    registry = AuthorRegistry(settings.registry_path, read_only=True)
    assert registry.document_chunks("article", record["id"]) == 1
    registry.close()
    removed = second.counts["chunks"] - first.counts["chunks"]
    assert removed < 0 and second.counts["articles"] == first.counts["articles"]


def test_crash_midway_then_rerun_completes_without_duplicates(tmp_path, monkeypatch):
    paths = write_small_corpus(tmp_path / "corpus")
    reference = _ingest(_settings(tmp_path / "ref"), paths).counts

    settings = _settings(tmp_path)
    monkeypatch.setattr(pipeline_module, "GROUP_CHUNKS", 8)
    pipeline = IngestPipeline(settings)
    real_upsert, calls = pipeline.store.upsert, {"n": 0}

    def crashing_upsert(collection, points):
        calls["n"] += 1
        if calls["n"] == 3:
            real_upsert(collection, points[: len(points) // 2])  # half a group written, then the crash
            raise RuntimeError("simulated crash")
        real_upsert(collection, points)

    monkeypatch.setattr(pipeline.store, "upsert", crashing_upsert)
    with pytest.raises(RuntimeError, match="simulated crash"):
        pipeline.run(paths)
    pipeline.close()
    monkeypatch.setattr(pipeline_module, "GROUP_CHUNKS", 1024)
    assert _ingest(settings, paths).counts == reference


def test_cli_json_bad_lines_and_skip_bad(tmp_path, monkeypatch, small_corpus):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"id": "x1", "content_type": "post", "author": "Ann Example", "text": "Fine post."}\n'
        "{not json\n"
        '{"id": "x2", "content_type": "tweet", "author": "A", "text": "t"}\n'
        '{"id": "x3", "content_type": "post", "text": "no author"}\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("LLM_TWIN_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", str(bad), "--json"])
    assert result.exit_code == 1
    assert f"{bad}:2: invalid JSON" in result.stderr
    assert f"{bad}:3: content_type must be one of" in result.stderr
    assert f"{bad}:4: missing field 'authors'" in result.stderr
    metrics = tmp_path / "ingest.prom"
    result = runner.invoke(app, ["ingest", str(bad), "--json", "--skip-bad", "--metrics-file", str(metrics)])
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert list(summary) == ["articles", "posts", "repositories", "authors", "chunks", "seconds"]
    assert (summary["posts"], summary["authors"], summary["chunks"]) == (1, 1, 1)
    # The run's counters for Prometheus's textfile collector (the first run wrote the post already).
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.read_text())
        for s in family.samples
    }
    assert samples[("llm_twin_ingest_documents_total", (("outcome", "skipped"),))] == 1
    assert samples[("llm_twin_ingest_bad_lines_total", ())] == 3
    assert samples[("llm_twin_store_items", (("kind", "chunks"),))] == 1
    assert samples[("llm_twin_ingest_duration_seconds", ())] > 0


def test_cli_missing_file(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_TWIN_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(app, ["ingest", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2 and "no such file" in result.stderr


def test_second_process_gets_a_clear_lock_error(ingested_settings):
    from llm_twin.store.edge import EdgeVectorStore

    holder = EdgeVectorStore(ingested_settings.vectors_dir)
    holder.open_existing(["embedded_posts"])
    code = (
        "from llm_twin.store.edge import EdgeVectorStore\n"
        "from llm_twin.errors import StoreLockedError\n"
        f"s = EdgeVectorStore({str(ingested_settings.vectors_dir)!r})\n"
        "try:\n    s.open_existing(['embedded_posts'])\nexcept StoreLockedError as e:\n    print('LOCKED', e)\n"
    )
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    finally:
        holder.close()
    assert out.stdout.startswith("LOCKED") and "another process" in out.stdout


def test_a_new_embedding_recipe_re_embeds_everything(tmp_path):
    """Vectors from another model, precision or chunking must not be mixed with new ones."""
    paths = write_small_corpus(tmp_path / "corpus")
    settings = _settings(tmp_path).model_copy(update={"embedding_precision": "as-is"})
    first = _ingest(settings, paths)
    assert first.documents_written == 26
    assert _ingest(settings, paths).documents_written == 0
    changed = _ingest(settings.model_copy(update={"embedding_precision": "int8-dynamic"}), paths)
    assert changed.documents_written == 26 and changed.documents_skipped == 0
    assert changed.counts["chunks"] == first.counts["chunks"]  # replaced, not duplicated


def test_a_new_quantization_setting_reaches_an_unchanged_corpus(tmp_path, small_corpus):
    """Ingest applies the store settings even when no document changed (optimize is a no-op otherwise)."""
    posts = [p for p in small_corpus if p.name == "posts.jsonl"]
    plain = load_settings(data_dir=tmp_path / "data", dense_quantization="none")
    assert _ingest(plain, posts).documents_written == 18
    config = plain.vectors_dir / plain.collection_posts / "edge_config.json"
    assert json.loads(config.read_text()).get("quantization_config") is None
    report = _ingest(load_settings(data_dir=tmp_path / "data"), posts)
    assert report.documents_written == 0 and report.documents_skipped == 18
    assert json.loads(config.read_text())["quantization_config"]["scalar"]["type"] == "int8"
