"""First-stage rankings used to mine hard negatives: our hybrid retriever over the dataset's eval store."""

from __future__ import annotations

from llm_twin.retrieval.evaluation import BeirDataset, documents_ranking, ensure_ingested, eval_retriever, eval_settings
from llm_twin.settings import Settings


def mine_rankings(
    settings: Settings, dataset: BeirDataset, depth: int = 30, batch_size: int = 32
) -> dict[str, list[str]]:
    """query id -> the ``depth`` best document ids (hybrid search; the store is ingested if absent)."""
    local = eval_settings(settings, dataset.name)
    ensure_ingested(local, dataset)
    rankings: dict[str, list[str]] = {}
    qids = sorted(dataset.queries)
    with eval_retriever(local, "hybrid") as retriever:
        for start in range(0, len(qids), batch_size):
            batch = qids[start : start + batch_size]
            per_query, _ = retriever.search_each([dataset.queries[q] for q in batch], limit=depth * 2, mode="hybrid")
            for qid, chunks in zip(batch, per_query, strict=True):
                rankings[qid] = list(documents_ranking(chunks, depth))
    return rankings
