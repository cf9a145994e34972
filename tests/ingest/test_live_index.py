"""The live index without HTTP: a background ingest stopped midway (a restart) resumes without
duplicates, content types are interleaved, and posted records are validated before anything is written."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from corpus_support import write_small_corpus
from llm_twin.errors import InvalidInputError
from llm_twin.ingest import pipeline as pipeline_module
from llm_twin.ingest.live import LiveIndex, interleave
from llm_twin.ingest.pipeline import IngestPipeline
from llm_twin.ingest.reader import parse_body
from llm_twin.settings import load_settings

pytestmark = pytest.mark.slow


def test_a_restart_during_a_background_ingest_resumes_without_duplicates(tmp_path: Path, monkeypatch) -> None:
    paths = write_small_corpus(tmp_path / "corpus")
    clean = IngestPipeline(load_settings(data_dir=tmp_path / "clean"))
    try:
        reference = clean.run(paths).counts
    finally:
        clean.close()

    settings = load_settings(data_dir=tmp_path / "live")
    monkeypatch.setattr(pipeline_module, "GROUP_CHUNKS", 8)
    writer = IngestPipeline(settings)
    index = LiveIndex(writer)
    real_write, groups = writer.write_group, []

    def write_then_stop(*args, **kwargs):  # the process goes down after its second group
        real_write(*args, **kwargs)
        groups.append(1)
        if len(groups) == 2:
            index.stop()

    monkeypatch.setattr(writer, "write_group", write_then_stop)
    index.ingest_files(paths)
    stopped = index.snapshot()
    assert stopped.state == "failed" and "stopped" in (stopped.error or "")
    assert 0 < stopped.chunks_done < stopped.chunks_total
    index.close()
    writer.store.close()  # the writer was handed no store of its own in the service; here it owns it

    again = LiveIndex(IngestPipeline(settings))
    try:
        report = again.ingest_files(paths)
        progress = again.snapshot()
    finally:
        again.close()
        again.writer.store.close()
    assert progress.state == "done" and progress.documents_skipped > 0
    assert progress.documents_done == progress.documents_total == 26
    assert report.counts == reference


def test_interleave_spreads_every_content_type_over_the_run(small_corpus: list[Path], tmp_path: Path) -> None:
    writer = IngestPipeline(load_settings(data_dir=tmp_path / "data"))
    try:
        documents, bad = writer.read(small_corpus)
    finally:
        writer.close()
    assert not bad
    ordered = interleave(documents)
    assert sorted(d.id for d in ordered) == sorted(d.id for d in documents)
    first_fifth = ordered[: len(ordered) // 5 + 1]
    assert {d.content_type for d in first_fifth} == {"article", "post", "repository"}


def test_a_bad_record_in_a_post_writes_nothing(tmp_path: Path) -> None:
    writer = IngestPipeline(load_settings(data_dir=tmp_path / "data"))
    index = LiveIndex(writer)
    good = {"id": "a", "content_type": "post", "author": "Ann Example", "text": "Hello there."}
    items, unit = parse_body(json.dumps([good, {**good, "id": "b", "text": 3}]))
    try:
        with pytest.raises(InvalidInputError) as raised:
            index.add(items, unit)
        assert raised.value.field == "item 2.text"
        assert writer.registry.document_hash("post", "a") is None
        assert writer.registry.authors() == []
    finally:
        index.close()
        writer.store.close()


def test_a_watched_folder_is_ingested_and_new_or_changed_files_as_they_land(tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    note = {"id": "w1", "content_type": "post", "author": "Wanda Watcher", "text": "The first note."}
    (folder / "first.jsonl").write_text(json.dumps(note) + "\n", encoding="utf-8")
    (folder / "ignored.txt").write_text("not a JSONL file\n", encoding="utf-8")
    writer = IngestPipeline(load_settings(data_dir=tmp_path / "data"))
    index = LiveIndex(writer)

    def wait_until(condition, what: str) -> None:
        deadline = time.monotonic() + 120
        while not condition():
            assert time.monotonic() < deadline, what
            time.sleep(0.2)

    try:
        index.start_watch(folder)
        wait_until(lambda: writer.registry.document_hash("post", "w1") is not None, "the existing file")
        first = writer.registry.document_hash("post", "w1")
        (folder / "second.jsonl").write_text(json.dumps({**note, "id": "w2", "text": "A second."}) + "\n")
        wait_until(lambda: writer.registry.document_hash("post", "w2") is not None, "the new file")
        (folder / "first.jsonl").write_text(json.dumps({**note, "text": "The first note, edited."}) + "\n")
        wait_until(lambda: writer.registry.document_hash("post", "w1") != first, "the changed file")
        counts = writer.counts()
    finally:
        index.close()
        writer.store.close()
    assert (counts["posts"], counts["chunks"], counts["authors"]) == (2, 2, 1)
