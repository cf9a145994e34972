"""Training pairs from a BEIR-format dataset: (query, a relevant document, hard negatives).

Hard negatives are the documents our own first stage ranks high for the query but the qrels do
not mark relevant; the top few are skipped, since unlabelled relevant documents sit there most
often. A fixed share of the queries (chosen by a hash of the query id, so every run agrees) is held
out as a dev set to check the model on queries it was not trained on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from llm_twin.domain.documents import Document


@dataclass(frozen=True)
class TrainingPair:
    query_id: str
    query: str
    positive_id: str
    negative_ids: list[str]


def is_dev(query_id: str, dev_fraction: float) -> bool:
    """True for about ``dev_fraction`` of query ids, the same ids on every run."""
    if dev_fraction <= 0:
        return False
    bucket = int(hashlib.sha256(query_id.encode()).hexdigest(), 16) % 10_000
    return bucket < round(dev_fraction * 10_000)


def document_text(document: Document) -> str:
    """What ingest embeds for a document's first chunk (title line, then the text)."""
    return (f"{document.title}\n" if document.title else "") + document.text


def build_pairs(
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    rankings: dict[str, list[str]],
    corpus_ids: set[str],
    negatives_from: int = 3,
    negatives_to: int = 30,
) -> list[TrainingPair]:
    """One pair per (query, relevant document); negatives from ranks ``negatives_from``..``negatives_to``.

    A query with no unlabelled document in that window is dropped (nothing to contrast with)."""
    pairs = []
    for qid in sorted(queries):
        relevant = {doc for doc, grade in qrels.get(qid, {}).items() if grade > 0}
        window = rankings.get(qid, [])[negatives_from:negatives_to]
        negatives = [doc for doc in window if doc not in relevant and doc in corpus_ids]
        if not negatives:
            continue
        for doc in sorted(relevant & corpus_ids):
            pairs.append(TrainingPair(qid, queries[qid], doc, negatives))
    return pairs
