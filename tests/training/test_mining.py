"""Hard-negative mining with the real embedded store, ONNX embedder and BM25."""

from __future__ import annotations

import pytest

from corpus_support import write_tiny_beir
from llm_twin.retrieval.evaluation import load_beir
from llm_twin.settings import load_settings
from llm_twin.training.mining import mine_rankings
from llm_twin.training.pairs import build_pairs, document_text


@pytest.mark.slow
def test_rankings_put_the_titled_document_first_and_feed_the_pairs(tmp_path):
    dataset = load_beir(write_tiny_beir(tmp_path / "tiny", documents=12, queries=4, split="train"), "train")
    settings = load_settings(data_dir=tmp_path / "data", fusion="dbsf")
    rankings = mine_rankings(settings, dataset, depth=8)
    assert sorted(rankings) == sorted(dataset.queries)
    for qid, ranking in rankings.items():
        assert len(ranking) == 8 and len(set(ranking)) == 8
        assert ranking[0] in dataset.qrels[qid]  # a title finds its own abstract
    texts = {d.id: document_text(d) for d in dataset.corpus}
    pairs = build_pairs(dataset.queries, dataset.qrels, rankings, set(texts), negatives_from=1, negatives_to=8)
    assert len(pairs) == 4
    assert all(p.positive_id not in p.negative_ids and len(p.negative_ids) == 7 for p in pairs)
    # Mining reused the dataset's eval store (ingested once, under the data dir).
    assert (tmp_path / "data" / "eval" / "tiny" / "vectors").is_dir()
