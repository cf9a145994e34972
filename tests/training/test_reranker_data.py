"""Reranker training data: synthetic queries (cached, resumable) and the round-trip filter (no torch)."""

from __future__ import annotations

import json
import random

from llm_fakes import FakeLLM
from llm_twin.domain.documents import EmbeddedChunk
from llm_twin.training.reranker_data import labelled_groups, read_groups, synthetic_groups, write_groups
from llm_twin.training.synthetic import (
    ICT_METHOD,
    TITLE_METHOD,
    LlmQueryWriter,
    Source,
    SyntheticQuery,
    clean_query,
    generate_queries,
    ict_query,
    read_cache,
    sample_sources,
    title_queries,
)

ABSTRACT = (
    "Vitamin D status was measured in four thousand older adults. "
    "Supplementation with vitamin D lowered the rate of hip fractures by a third. "
    "The effect was larger in women than in men over five years. "
    "No change in mortality was seen in either group of patients."
)


def chunk(doc: str, index: int = 0, text: str = "text", score: float = 0.0) -> EmbeddedChunk:
    return EmbeddedChunk(
        score=score,
        id=f"{doc}-{index}",
        collection="articles",
        content_type="article",
        document_id=doc,
        chunk_index=index,
        content=text,
        author_ids=[],
        author_full_name="",
        title=f"title {doc}",
    )


class FakeSearcher:
    """Returns a fixed ranking per query text; records the limit asked for."""

    def __init__(self, rankings: dict[str, list[EmbeddedChunk]]) -> None:
        self.rankings = rankings
        self.limits: list[int] = []

    def search_each(self, queries, limit, mode=None):
        self.limits.append(limit)
        return [self.rankings.get(q, []) for q in queries], {}


def test_clean_query_strips_labels_and_refuses_junk():
    assert clean_query('Claim: "Vitamin D lowers fracture risk."\nmore') == "Vitamin D lowers fracture risk."
    assert clean_query("Question - does it work in mice?") == "does it work in mice?"
    assert clean_query("yes") is None
    assert clean_query("") is None


def test_ict_query_is_a_sentence_of_the_passage():
    query, removed = ict_query(ABSTRACT, random.Random(1))  # type: ignore[misc]
    assert query == removed and query in ABSTRACT
    assert ict_query("Too short. Only two sentences here.", random.Random(1)) is None


def test_generation_is_cached_and_resumes(tmp_path):
    sources = [Source(f"d{i}", f"d{i}", "document", ABSTRACT) for i in range(3)]
    cache = tmp_path / "queries.jsonl"
    llm = FakeLLM(answer="Claim: Vitamin D supplements prevent hip fractures in older adults.")
    rows = generate_queries(sources[:2], cache, LlmQueryWriter(llm, style="claim"))
    assert len(llm.calls) == 2 and {r.method for r in rows} == {"llm:fake/claim-2", ICT_METHOD}
    assert "claim" in llm.calls[0][0][0]["content"]
    # A rerun over more passages asks only for the new one and keeps the cached rows as they were.
    rows = generate_queries(sources, cache, LlmQueryWriter(llm, style="claim"))
    assert len(llm.calls) == 3
    assert len(rows) == 6 and len(read_cache(cache)) == 6
    first = json.loads(cache.read_text().splitlines()[0])
    assert {"query", "source_id", "document_id", "method", "removed"} <= set(first)
    # A line cut short by an interrupted run is skipped, not fatal.
    with cache.open("a") as handle:
        handle.write('{"query": "cut')
    assert len(read_cache(cache)) == 6


def test_rows_of_an_older_prompt_revision_are_redone_not_reused(tmp_path):
    sources = [Source("d0", "d0", "document", ABSTRACT)]
    cache = tmp_path / "queries.jsonl"
    cache.write_text(
        json.dumps(SyntheticQuery("Old copied title.", "d0", "d0", "document", "llm:fake").as_dict()) + "\n"
    )
    llm = FakeLLM(answer="Vitamin D supplements prevent hip fractures in older adults.")
    rows = generate_queries(sources, cache, LlmQueryWriter(llm, style="claim"), ict=False)
    assert len(llm.calls) == 1
    assert [r.method for r in rows] == ["llm:fake", "llm:fake/claim-2"]
    # The question prompt has had one wording: its rows keep the plain model name.
    assert LlmQueryWriter(llm, style="question").method == "llm:fake"


def test_title_queries_one_per_document_of_a_usable_length(tmp_path):
    sources = [
        Source("d0-0", "d0", "chunk", ABSTRACT, "Vitamin D  supplements and\nhip fractures"),
        Source("d0-1", "d0", "chunk", ABSTRACT, "Vitamin D supplements and hip fractures"),
        Source("d1", "d1", "document", ABSTRACT, "Contents"),
        Source("d2", "d2", "document", ABSTRACT),
    ]
    rows = title_queries(sources)
    # The document, not the chunk, is the source: any of its chunks is a positive.
    assert [(r.query, r.source_id, r.source_kind, r.method) for r in rows] == [
        ("Vitamin D supplements and hip fractures", "d0", "document", TITLE_METHOD)
    ]
    cache = tmp_path / "queries.jsonl"
    assert len(generate_queries(sources, cache, None, ict=False, titles=True)) == 1
    assert len(generate_queries(sources, cache, None, ict=False, titles=True)) == 1  # cached, not appended again
    assert len(read_cache(cache)) == 1


def test_sample_takes_each_content_type_in_turn_and_is_fixed_by_the_seed():
    many = [Source(f"a{i}", f"a{i}", "chunk", ABSTRACT, content_type="article") for i in range(40)]
    few = [Source(f"p{i}", f"p{i}", "chunk", ABSTRACT, content_type="post") for i in range(3)]
    sample = sample_sources(many + few, 8, seed=0)
    # Every post is in the first six (one of each while they last), however outnumbered they are.
    assert [s.content_type for s in sample[:6]] == ["article", "post"] * 3
    assert [s.content_type for s in sample[6:]] == ["article", "article"]
    assert sample == sample_sources(many + few, 8, seed=0)
    assert sample != sample_sources(many + few, 8, seed=1)
    assert [s.id for s in sample_sources(many, 5, seed=0)] == [s.id for s in sample_sources(many, 40, seed=0)[:5]]
    assert len(sample_sources(many + few, 0)) == 43  # 0: all of them


def test_title_groups_match_the_title_against_bodies_only():
    rows = [SyntheticQuery("Vitamin D and fractures", "d1", "d1", "document", TITLE_METHOD)]
    ranked = [chunk("d5", 0, "other body"), chunk("d1", 1, "the source body"), chunk("d6", 0, "third body")]
    groups, _ = synthetic_groups(rows, FakeSearcher({"Vitamin D and fractures": ranked}), negatives=2)
    (group,) = groups
    # No passage keeps its title line: the positive is not the one passage shown without it.
    assert group.positive == "the source body"
    assert group.negatives == ["other body", "third body"]


def test_title_groups_leave_out_a_subject_line_the_text_starts_with():
    def commit(doc: str, text: str) -> EmbeddedChunk:
        return chunk(doc, 0, text).model_copy(update={"title": text.split("\n")[0], "collection": "posts"})

    subject = "Clarify the deprecation schedule"
    rows = [
        SyntheticQuery(subject, "c1", "c1", "document", TITLE_METHOD),
        SyntheticQuery("Two very small fixes.", "c2", "c2", "document", TITLE_METHOD),
    ]
    ranked = {
        subject: [commit("c1", f"{subject}\n\nThe warning now names the release."), commit("c3", "Other\nits body")],
        "Two very small fixes.": [commit("c2", "Two very small fixes."), commit("c3", "Other\nits body")],
    }
    groups, counts = synthetic_groups(rows, FakeSearcher(ranked), negatives=1)
    # A commit's title is its subject line: left out of every passage, as a title line is; a
    # one-line commit has nothing left to match, so it teaches nothing (it would be the query verbatim).
    assert [(g.positive, g.negatives) for g in groups] == [("The warning now names the release.", ["its body"])]
    assert counts["no_body"] == 1


def test_round_trip_filter_and_negatives_below_the_source():
    rows = [
        SyntheticQuery("found at rank 1", "d1", "d1", "document", "llm:fake"),
        SyntheticQuery("not found", "d9", "d9", "document", "llm:fake"),
        SyntheticQuery("found too low", "d2", "d2", "document", "llm:fake"),
        SyntheticQuery("ict", "d3-0", "d3", "chunk", ICT_METHOD, removed="secret sentence."),
    ]
    searcher = FakeSearcher(
        {
            "found at rank 1": [chunk("d5"), chunk("d1"), chunk("d1", 1), chunk("d6"), chunk("d7")],
            "found too low": [chunk(f"x{i}") for i in range(5)] + [chunk("d2")],
            "ict": [chunk("d3", 1), chunk("d3", 0, "keep this. secret sentence. and this"), chunk("d8")],
        }
    )
    groups, counts = synthetic_groups(rows, searcher, keep_top=3, depth=30, negatives=2, hard_negatives="below")
    assert counts == {"queries": 4, "kept": 2, "source_not_in_top": 2, "no_negatives": 0, "no_body": 0}
    first, ict = groups
    # Negatives come from other documents ranked below the source (d5 ranks above it: not used).
    assert first.positive_rank == 1 and first.negative_ids == ["d6-0", "d7-0"]
    assert first.positive == "title d1\ntext" and first.method == "llm:fake"
    # A chunk source matches its own chunk only, and the ICT sentence is cut from the positive.
    assert ict.positive_rank == 1 and ict.negative_ids == ["d8-0"]
    assert "secret" not in ict.positive and "keep this." in ict.positive
    assert searcher.limits == [30]


def test_negatives_from_the_top_include_documents_above_the_source():
    rows = [SyntheticQuery("found at rank 1", "d1", "d1", "document", "llm:fake")]
    searcher = FakeSearcher({"found at rank 1": [chunk("d5"), chunk("d1"), chunk("d1", 1), chunk("d6"), chunk("d7")]})
    (group,), _ = synthetic_groups(rows, searcher, keep_top=3, negatives=2, hard_negatives="top")
    assert group.positive_rank == 1 and group.negative_ids == ["d5-0", "d6-0"]  # never the source's own chunks


def test_held_out_groups_keep_the_whole_top_as_the_service_reranks_it():
    rows = [
        SyntheticQuery("dev query", "d1", "d1", "document", "llm:fake"),
        SyntheticQuery("train query", "d2", "d2", "document", "llm:fake"),
    ]
    ranked = [
        chunk(d, i, score=0.9 - 0.1 * n)
        for n, (d, i) in enumerate([("d5", 0), ("d1", 0), ("d1", 1), ("d6", 0), ("d7", 0), ("d8", 0)])
    ]
    searcher = FakeSearcher({"dev query": ranked, "train query": [chunk("d2", score=1.0), *ranked]})
    dev, train = synthetic_groups(
        rows, searcher, keep_top=3, negatives=1, hard_negatives="below", is_dev=lambda d: d == "d1", dev_candidates=5
    )[0]
    # Dev: every other document in the top 5, above the source too, whatever the training mode.
    assert dev.negative_ids == ["d5-0", "d6-0", "d7-0"]
    assert train.negative_ids == ["d5-0"]  # training keeps its own count and mode
    # Dev groups keep the search's scores (positive, then each negative) to fuse with as the service does.
    assert dev.search_scores == [0.8, 0.9, 0.6, 0.5] and train.search_scores == []
    assert not dev.labelled
    labelled = labelled_groups(
        {"q1": "dev query", "q2": "train query"},
        {"q1": {"d1": 1}, "q2": {"d2": 1}},
        {},
        searcher,
        "train",
        negatives=1,
        is_dev=lambda q: q == "q1",
        dev_candidates=5,
    )
    assert [g.negative_ids for g in labelled] == [["d5-0", "d6-0", "d7-0"], ["d5-0"]]
    assert [g.search_scores for g in labelled] == [[0.8, 0.9, 0.6, 0.5], []]
    assert all(g.labelled for g in labelled)


def test_labelled_groups_skip_every_relevant_document(tmp_path):
    searcher = FakeSearcher({"q": [chunk("d2"), chunk("d1"), chunk("d3"), chunk("d4")]})
    groups = labelled_groups(
        {"q1": "q", "q2": "unlabelled"},
        {"q1": {"d1": 1, "d2": 1, "d0": 1}},
        {"d0": "text of d0"},
        searcher,
        "train",
        negatives=5,
    )
    assert [g.document_id for g in groups] == ["d0", "d1", "d2"]
    assert all(g.negative_ids == ["d3-0", "d4-0"] and g.method == "qrels:train" for g in groups)
    assert groups[0].positive == "text of d0"  # not retrieved: its text from the corpus
    write_groups(tmp_path / "g.jsonl", groups)
    assert read_groups(tmp_path / "g.jsonl") == groups
