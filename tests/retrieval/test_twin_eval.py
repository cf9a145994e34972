"""Twin questions evaluation (`llm-twin eval retrieval --questions FILE`): metrics, loader, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llm_twin.cli import app
from llm_twin.domain.authors import Author, author_id
from llm_twin.domain.documents import EmbeddedChunk
from llm_twin.retrieval.evaluation import DatasetError
from llm_twin.retrieval.twin_eval import (
    TwinQuestion,
    author_correct,
    context_precision,
    filter_covers,
    hit_at_k,
    load_questions,
    ndcg_at_k,
    percentile,
    reciprocal_rank,
    relevance,
    score_question,
    summarize,
)
from llm_twin.settings import PROJECT_ROOT

DEV_SET = PROJECT_ROOT / "evaluation" / "twin_dev" / "questions.jsonl"


def _chunk(document_id: str, content_type: str = "article", n: int = 0) -> EmbeddedChunk:
    collection = {"article": "embedded_articles", "post": "embedded_posts", "repository": "embedded_repositories"}
    return EmbeddedChunk(
        id=f"{document_id}:{n}",
        collection=collection[content_type],
        content_type=content_type,  # type: ignore[arg-type]
        document_id=document_id,
        chunk_index=n,
        content="text",
        author_ids=[],
        author_full_name="Someone",
    )


def _question(**fields: object) -> TwinQuestion:
    base: dict[str, object] = {"id": "q1", "question": "What?", "author": None, "answer_doc_ids": ("pep-1",)}
    return TwinQuestion(**{**base, **fields})  # type: ignore[arg-type]


# --- metrics -----------------------------------------------------------------------------------
def test_rank_metrics_on_a_hand_made_ranking():
    rels = relevance(["x", "pep-1", "y", "pep-2", "pep-1"], ["pep-1", "pep-2"])
    assert rels == [0, 1, 0, 1, 1]
    assert hit_at_k(rels, 5) == 1.0 and hit_at_k(rels, 1) == 0.0
    assert reciprocal_rank(rels) == 0.5 and reciprocal_rank([0, 0]) == 0.0
    assert context_precision(rels) == pytest.approx(0.6)
    assert context_precision([]) == 0.0  # nothing returned is nothing useful


def test_ndcg_ideal_is_capped_by_the_answer_chunks_in_the_store():
    # One relevant chunk exists (a commit): first place is perfect, second is 1/log2(3).
    assert ndcg_at_k([1, 0, 0, 0, 0], 5, relevant_available=1) == 1.0
    assert ndcg_at_k([0, 1, 0, 0, 0], 5, relevant_available=1) == pytest.approx(1 / math.log2(3))
    # A long PEP (30 chunks): the ideal fills all five slots, so one relevant chunk is not perfect.
    idcg5 = sum(1 / math.log2(r + 1) for r in range(1, 6))
    assert ndcg_at_k([1, 0, 0, 0, 0], 5, relevant_available=30) == pytest.approx(1 / idcg5)
    assert ndcg_at_k([1, 1, 1, 1, 1], 5, relevant_available=30) == pytest.approx(1.0)
    assert ndcg_at_k([0, 0], 5, relevant_available=0) == 0.0  # answer not in the store


def test_author_correct_by_any_name_of_the_person():
    guido = Author.from_name("Guido van Rossum")
    assert author_correct("Guido van Rossum", [], guido)
    assert author_correct("guido van rossum", [], guido)  # names compare normalised
    # Resolved to the commit spelling, which the question lists as an alias.
    assert author_correct("Alyssa Coghlan", ["Nick Coghlan"], Author.from_name("Nick Coghlan"))
    # Resolved to the person whose linked names (aliases) include the canonical one.
    pablo = Author.from_name("Pablo Galindo").model_copy(update={"aliases": ["Pablo Galindo Salgado"]})
    assert author_correct("Pablo Galindo Salgado", [], pablo)
    assert not author_correct("Guido van Rossum", [], Author.from_name("Barry Warsaw"))
    assert not author_correct("Guido van Rossum", [], None)
    assert author_correct(None, [], None) and not author_correct(None, [], guido)


def test_filter_covers_the_canonical_name():
    assert filter_covers("Eric V. Smith", [author_id("Eric Smith"), author_id("Eric V. Smith")]) is True
    assert filter_covers("Eric V. Smith", [author_id("Eric Smith")]) is False
    assert filter_covers(None, []) is None


def test_percentile_interpolates():
    assert percentile([], 0.5) == 0.0
    assert percentile([10.0], 0.9) == 10.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == pytest.approx(2.5)
    assert percentile(list(map(float, range(11))), 0.9) == pytest.approx(9.0)


def test_score_and_summarize():
    named = _question(id="q1", author="Guido van Rossum", phrasing="paraphrase", content_type="article")
    nobody = _question(id="q2", answer_doc_ids=("c1",), phrasing="title-like", content_type="post")
    first = score_question(
        named,
        [_chunk("x", "post"), _chunk("pep-1"), _chunk("pep-1", n=1)],
        Author.from_name("Guido van Rossum"),
        5,
        relevant_available=10,
        filter_author_ids=[author_id("Guido van Rossum")],
        latency_ms=10.0,
        timings_ms={"search": 4.0, "rerank": 5.0, "total": 10.0},
    )
    assert (first.hit, first.reciprocal_rank, first.first_relevant_rank) == (1.0, 0.5, 2)
    assert first.context_precision == pytest.approx(2 / 3)
    assert first.author_correct and first.author_filter_covers
    second = score_question(
        nobody, [_chunk("c1", "post")], None, 5, relevant_available=1, latency_ms=30.0, timings_ms={"search": 6.0}
    )
    assert second.ndcg == 1.0 and second.author_correct and second.author_filter_covers is None
    result = summarize([first, second], questions_file="f.jsonl", k=5, expand_to_n=1, rerank="none")
    assert result.overall.questions == 2 and result.overall.hit_at_k == 1.0
    assert result.overall.mrr == 0.75
    assert result.overall.author_accuracy == 1.0 and result.overall.no_author_accuracy == 1.0
    assert set(result.by_phrasing) == {"paraphrase", "title-like"} and result.by_content_type["post"].mrr == 1.0
    assert result.content_type_share == {"article": 0.5, "post": 0.5}
    assert result.latency_ms["p50"] == 20.0
    assert result.stage_p50_ms == {"rerank": 5.0, "search": 5.0, "total": 10.0}
    data = json.loads(result.to_json())
    assert data["overall"]["mrr"] == 0.75 and data["author_failures"] == []
    assert data["per_question"][0]["chunks"][1]["relevant"] is True


# --- the questions file -----------------------------------------------------------------------
def _write(tmp_path: Path, *rows: object) -> Path:
    path = tmp_path / "questions.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


GOOD = {"id": "q1", "question": "What?", "author": None, "answer_doc_ids": ["pep-0001"]}


def test_the_dev_set_loads():
    questions = load_questions(DEV_SET)
    assert len(questions) == 90 and len({q.id for q in questions}) == 90
    assert questions[0].answer_doc_ids[0] == "pep-0622" and questions[0].phrasing == "title-like"
    assert len(load_questions(DEV_SET, limit=3)) == 3


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([GOOD, "{not json"], r"questions.jsonl:2: invalid JSON"),
        ([GOOD, {k: v for k, v in GOOD.items() if k != "answer_doc_ids"}], r":2: missing field 'answer_doc_ids'"),
        ([{k: v for k, v in GOOD.items() if k != "author"}], r":1: missing field 'author'"),
        ([{**GOOD, "answer_doc_ids": []}], r":1: field 'answer_doc_ids' must not be empty"),
        ([{**GOOD, "answer_doc_ids": "pep-0001"}], r":1: field 'answer_doc_ids' must be a list"),
        ([{**GOOD, "phrasing": "odd"}], r":1: field 'phrasing' must be one of"),
        ([{**GOOD, "content_type": "tweet"}], r":1: field 'content_type' must be one of"),
        ([GOOD, "", GOOD], r":3: id 'q1' already used on line 1"),
        ([["a list"]], r":1: expected a JSON object"),
        ([""], r"no questions"),
    ],
)
def test_loader_errors_name_the_line_and_field(tmp_path, rows, message):
    with pytest.raises(DatasetError, match=message) as error:
        load_questions(_write(tmp_path, *rows))
    assert error.value.field == "questions"


def test_loader_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        load_questions(tmp_path / "absent.jsonl")


# --- the CLI ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--questions", "absent.jsonl"], "--questions: no such file"),
        (["--questions", "{q}", "--set", "nope=1"], "--set: unknown setting 'nope'"),
        (["--questions", "{q}", "--set", "k_splt=equal"], "closest: k_split"),
        (["--questions", "{q}", "--set", "k_split"], "--set: expected key=value"),
        (["--questions", "{q}", "--mode", "dense"], "--mode: not used with --questions (use --set search_mode"),
        (["--k", "3"], "--k: only with --questions"),
        (["--questions", "{q}", "--k", "0"], "--k: must be between"),
        (["--questions", "{q}", "--set", "k_split=fancy"], "LLM_TWIN_K_SPLIT"),
    ],
)
def test_eval_questions_cli_errors(tmp_path, monkeypatch, args, message):
    monkeypatch.setenv("LLM_TWIN_DATA_DIR", str(tmp_path / "data"))
    path = _write(tmp_path, GOOD)
    args = [str(path) if a == "{q}" else a for a in args]
    result = CliRunner().invoke(app, ["eval", "retrieval", *args])
    assert result.exit_code == 2, result.stderr
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()  # refused before a store was opened


def test_eval_questions_cli_without_a_store(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_TWIN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LLM_TWIN_HELPER_LLM_BACKEND", "none")
    result = CliRunner().invoke(
        app, ["eval", "retrieval", "--questions", str(_write(tmp_path, GOOD)), "--expand", "1", "--json"]
    )
    assert result.exit_code == 1 and "llm-twin ingest" in result.stderr


# Answer documents that are in tests/corpus_support.py's small corpus.
SMALL_CORPUS_QUESTIONS = [
    {
        "id": "s1",
        "question": "What did Guido van Rossum write about pattern matching?",
        "author": "Guido van Rossum",
        "author_aliases": [],
        "content_type": "article",
        "answer_doc_ids": ["pep-0634"],
        "phrasing": "title-like",
    },
    {
        "id": "s2",
        "question": "What is the Zen of Python?",
        "author": None,
        "content_type": "article",
        "answer_doc_ids": ["pep-0020"],
        "phrasing": "title-like",
    },
    {
        "id": "s3",
        "question": "What does Hynek Schlawack's attrs package do?",
        "author": "Hynek Schlawack",
        "content_type": "repository",
        "answer_doc_ids": ["pypi:attrs"],
        "phrasing": "paraphrase",
    },
]


def test_eval_questions_cli_over_the_small_store(ingested_settings, tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_TWIN_DATA_DIR", str(ingested_settings.data_dir))
    monkeypatch.setenv("LLM_TWIN_HELPER_LLM_BACKEND", "none")
    out = tmp_path / "report" / "twin.json"
    args = ["eval", "retrieval", "--questions", str(_write(tmp_path, *SMALL_CORPUS_QUESTIONS))]
    args += ["--k", "4", "--expand", "1", "--set", "k_split=balanced", "--set", "aliases_file=", "--json"]
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data == json.loads(out.read_text(encoding="utf-8"))
    assert data["k"] == 4 and data["expand_to_n"] == 1
    assert data["settings"]["k_split"] == "balanced" and data["settings"]["aliases_file"] is None
    overall = data["overall"]
    assert overall["questions"] == 3 and overall["hit_at_k"] == 1.0
    assert overall["author_accuracy"] == 1.0 and overall["no_author_accuracy"] == 1.0
    assert 0 < overall["context_precision"] <= 1 and 0 < overall["ndcg_at_k"] <= 1
    assert set(data["by_content_type"]) == {"article", "repository"}
    assert all(len(q["chunks"]) <= 4 for q in data["per_question"])
    assert sum(data["content_type_share"].values()) == pytest.approx(1.0, abs=0.01)
    assert data["latency_ms"]["p50"] > 0 and not data["warnings"]
