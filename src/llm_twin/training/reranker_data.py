"""Reranker training groups: a query, the passage it belongs to, and hard negatives from our hybrid search.

Every group is built from what the reranker will see at query time: the chunks our hybrid search
returns for the query, as ``passage_text`` (title + chunk). A synthetic query is kept only when the
search finds its source in the top ``keep_top`` (the round-trip filter: a query the first stage
cannot place is too vague, or not about its passage); its negatives are the best-ranked chunks of
other documents (or only those below the source: ``hard_negatives``). A labelled query
(a dataset's train qrels) takes the same chunks, minus every document marked relevant.

A held-out (dev) group keeps every other document's chunk in the top ``dev_candidates``, not just
the few hard negatives a training step samples: its MRR is then the MRR of reranking the search's
top results, which is what the service does. Within a group of 4 it was misleading (demo corpus:
dev MRR 0.88 while reranking the top 20 lowered MRR@10 from 0.58 to 0.21).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from llm_twin.domain.documents import EmbeddedChunk
from llm_twin.retrieval.rerankers.base import passage_text
from llm_twin.training.synthetic import TITLE_METHOD, SyntheticQuery

#: A positive shorter than this (a one-line commit under its own subject as a title query) is no text
#: to match the query against: the group is left out.
MIN_BODY_WORDS = 3
#: Provenance prefix of a labelled group ("qrels:<split>").
LABELLED_METHOD = "qrels:"


class HybridSearcher(Protocol):
    def search_each(
        self, queries: list[str], limit: int, mode: str | None = None
    ) -> tuple[list[list[EmbeddedChunk]], dict[str, float]]: ...


@dataclass
class RerankGroup:
    query_id: str
    query: str
    positive: str
    negatives: list[str]
    method: str  # provenance: "llm:<model>", "ict-sentence" or "qrels:<split>"
    document_id: str
    positive_rank: int = -1  # rank of the source in the hybrid results (-1: labelled, not searched for)
    negative_ids: list[str] = field(default_factory=list)
    #: Held-out groups: the search's scores of the positive and of each negative, in that order, to fuse
    #: the model's scores with as the service does (empty when the search did not return the positive).
    search_scores: list[float] = field(default_factory=list)

    @property
    def labelled(self) -> bool:
        """From a dataset's relevance labels, not a query written for a passage."""
        return self.method.startswith(LABELLED_METHOD)

    def as_dict(self) -> dict:
        return asdict(self)


def _search(searcher: HybridSearcher, queries: list[str], depth: int, batch_size: int) -> list[list[EmbeddedChunk]]:
    results: list[list[EmbeddedChunk]] = []
    for start in range(0, len(queries), batch_size):
        chunks, _ = searcher.search_each(queries[start : start + batch_size], limit=depth, mode="hybrid")
        results.extend(chunks)
    return results


def synthetic_groups(
    rows: Sequence[SyntheticQuery],
    searcher: HybridSearcher,
    keep_top: int = 10,
    depth: int = 30,
    negatives: int = 7,
    batch_size: int = 32,
    progress: Callable[[str], None] | None = None,
    hard_negatives: Literal["below", "top"] = "top",
    is_dev: Callable[[str], bool] | None = None,
    dev_candidates: int = 20,
) -> tuple[list[RerankGroup], dict[str, int]]:
    """Groups for the queries that pass the round-trip filter, and counts per outcome.

    ``hard_negatives``: ``below`` takes other documents' chunks ranked right below the source (a
    chunk ranked above it may answer the query too); ``top`` takes them from the top of the
    results, above the source included, which is what the reranker has to sort at query time.
    Measured on the demo corpus (79 held-out queries, MRR@10 of the source in the reranked top 20):
    0.21 with ``below``, 0.35 with ``top``; fused with the search rank 0.52 and 0.59 (search 0.58).
    ``is_dev(document_id)``: the groups held out, which keep the whole top ``dev_candidates``."""
    say = progress or (lambda _: None)
    counts = {"queries": len(rows), "kept": 0, "source_not_in_top": 0, "no_negatives": 0, "no_body": 0}
    groups: list[RerankGroup] = []
    results = _search(searcher, [r.query for r in rows], depth, batch_size)
    for row, chunks in zip(rows, results, strict=True):
        rank = next((i for i, c in enumerate(chunks) if _is_source(c, row)), None)
        if rank is None or rank >= keep_top:
            counts["source_not_in_top"] += 1
            continue
        held_out = is_dev is not None and is_dev(row.document_id)
        if held_out:
            below = _others(chunks[:dev_candidates], {row.document_id}, dev_candidates)
        else:
            pool = chunks if hard_negatives == "top" else chunks[rank + 1 :]
            below = _others(pool, {row.document_id}, negatives)
        if not below:
            counts["no_negatives"] += 1
            continue
        # A title query is matched against bodies, every title line left out: a positive shown
        # without its title next to negatives with theirs would teach that shape, not relevance.
        text = _body if row.method == TITLE_METHOD else passage_text
        positive = text(chunks[rank])
        if len(positive.split()) < MIN_BODY_WORDS:
            counts["no_body"] += 1
            continue
        if row.removed:
            positive = " ".join(positive.replace(row.removed, " ").split())
        groups.append(
            RerankGroup(
                f"{row.method}:{row.source_id}",
                row.query,
                positive,
                [text(c) for c in below],
                row.method,
                row.document_id,
                rank,
                [c.id for c in below],
                [chunks[rank].score, *(c.score for c in below)] if held_out else [],
            )
        )
    counts["kept"] = len(groups)
    say(f"round-trip filter: {counts}")
    return groups, counts


def _body(chunk: EmbeddedChunk) -> str:
    """The chunk's text without its title line, also where the text itself starts with the title
    (a commit message, whose title is its subject line): otherwise a one-line commit's positive
    would be the query word for word."""
    first, _, rest = chunk.content.partition("\n")
    title = " ".join((chunk.title or "").split())
    if title and " ".join(first.split()).startswith(title):
        return rest.strip()
    return chunk.content


def _others(chunks: Sequence[EmbeddedChunk], exclude: set[str], limit: int) -> list[EmbeddedChunk]:
    return [c for c in chunks if c.document_id not in exclude][:limit]


def _is_source(chunk: EmbeddedChunk, row: SyntheticQuery) -> bool:
    if row.source_kind == "chunk":
        return chunk.id == row.source_id
    return chunk.document_id == row.document_id


def labelled_groups(
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    texts: dict[str, str],
    searcher: HybridSearcher,
    split: str,
    depth: int = 30,
    negatives: int = 7,
    batch_size: int = 32,
    is_dev: Callable[[str], bool] | None = None,
    dev_candidates: int = 20,
) -> list[RerankGroup]:
    """One group per (query, relevant document): that document's best chunk in the results (its
    text when the search missed it) against the best-ranked chunks of unlabelled documents
    (``is_dev(query_id)``: held out, against every unlabelled one in the top ``dev_candidates``)."""
    qids = sorted(q for q in queries if any(g > 0 for g in qrels.get(q, {}).values()))
    results = _search(searcher, [queries[q] for q in qids], depth, batch_size)
    groups = []
    for qid, chunks in zip(qids, results, strict=True):
        relevant = {d for d, g in qrels[qid].items() if g > 0}
        held_out = is_dev is not None and is_dev(qid)
        if held_out:
            below = _others(chunks[:dev_candidates], relevant, dev_candidates)
        else:
            below = _others(chunks, relevant, negatives)
        if not below:
            continue
        for doc in sorted(relevant):
            hit = next((c for c in chunks if c.document_id == doc), None)
            positive = passage_text(hit) if hit is not None else texts.get(doc)
            if positive is None:
                continue
            groups.append(
                RerankGroup(
                    f"{split}:{qid}:{doc}",
                    queries[qid],
                    positive,
                    [passage_text(c) for c in below],
                    f"{LABELLED_METHOD}{split}",
                    doc,
                    negative_ids=[c.id for c in below],
                    search_scores=[hit.score, *(c.score for c in below)] if held_out and hit is not None else [],
                )
            )
    return groups


def write_groups(path: Path, groups: Sequence[RerankGroup]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for group in groups:
            out.write(json.dumps(group.as_dict(), ensure_ascii=False) + "\n")


def read_groups(path: Path) -> list[RerankGroup]:
    return [RerankGroup(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
