"""k_split=balanced (the seed's quota over collections), on its own store handle: the embedded
store admits one process handle at a time, so it does not share a module with another pipeline."""

from __future__ import annotations

from llm_twin.domain.authors import author_id
from llm_twin.retrieval.pipeline import RetrievalPipeline

GUIDO = author_id("Guido van Rossum")


def test_balanced_split_represents_every_collection_with_matches(ingested_settings):
    settings = ingested_settings.model_copy(update={"k_split": "balanced"})
    balanced = RetrievalPipeline(settings)
    try:
        result = balanced.run("What did Guido van Rossum write about pattern matching?", k=5)
    finally:
        balanced.close()
    assert all(GUIDO in c.author_ids for c in result.chunks)
    assert {c.collection for c in result.chunks} >= {"embedded_articles", "embedded_posts"}
