"""Retrieval evaluation on a BEIR-format dataset (SciFact) with ranx metrics.

The dataset is ingested into its own data directory (``<data_dir>/eval/<name>``) through the same
ingest pipeline, and reused: a second run skips every unchanged document by content hash.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from llm_twin.domain.documents import Document, EmbeddedChunk
from llm_twin.errors import InvalidInputError, UnavailableError
from llm_twin.settings import Settings

if TYPE_CHECKING:
    from llm_twin.retrieval.hyde import HydeResult
    from llm_twin.retrieval.search import QdrantHybridRetriever
    from llm_twin.retrieval.types import Reranker
    from llm_twin.store.base import SearchMode

METRICS = ("ndcg@10", "recall@100", "mrr@10")


class DatasetError(InvalidInputError):
    """The dataset directory is missing or malformed; ``field`` is the option that named it."""

    def __init__(self, message: str, field: str = "dataset") -> None:
        super().__init__(field, message)


def json_lines(path: Path, field: str = "dataset") -> Iterator[tuple[str, int, object]]:
    """``(where, line number, value)`` for each non-blank line of a JSONL file; a ``DatasetError``
    naming the file (and line) when it cannot be read or a line is not JSON."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: cannot read: {error}", field) from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise DatasetError(f"{where}: invalid JSON ({error.msg} at column {error.colno})", field) from None
        yield where, number, value


class SplitNotFoundError(DatasetError):
    """The dataset is there but has no qrels for the asked split."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="split")


@dataclass
class BeirDataset:
    name: str
    corpus: list[Document]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def load_beir(directory: Path, split: str = "test") -> BeirDataset:
    directory = Path(directory)
    corpus_path, queries_path = directory / "corpus.jsonl", directory / "queries.jsonl"
    for path in (corpus_path, queries_path):
        if not path.is_file():
            raise DatasetError(f"not a BEIR dataset: {path} is missing")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", split):
        raise SplitNotFoundError("a qrels file name such as test, train or dev")
    qrels_path = directory / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        have = sorted(p.stem for p in (directory / "qrels").glob("*.tsv"))
        raise SplitNotFoundError(f"{directory} has no qrels/{split}.tsv (it has: {', '.join(have) or 'none'})")
    corpus = []
    with corpus_path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                corpus.append(
                    Document(
                        id=str(row["_id"]),
                        content_type="article",
                        title=row.get("title") or None,
                        text=row.get("text") or row.get("title") or "",
                        authors=[],
                    )
                )
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise DatasetError(f"{corpus_path}:{number}: {error}") from None
    queries = {}
    with queries_path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                queries[str(row["_id"])] = row["text"]
    qrels: dict[str, dict[str, int]] = {}
    with qrels_path.open(encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t")
        for row in reader:
            if not row or row[0] in ("query-id", "query_id"):
                continue
            qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    queries = {qid: queries[qid] for qid in qrels if qid in queries}
    return BeirDataset(name=directory.name, corpus=corpus, queries=queries, qrels=qrels)


def eval_settings(settings: Settings, dataset_name: str) -> Settings:
    """The dataset's own data dir. Another embedder gets its own dir (``<name>@<model dir name>``),
    so comparing embedders does not re-embed the default one's store back and forth."""
    from llm_twin.models import EMBEDDING_ALIASES

    model = settings.embedding_model
    name = dataset_name if model.lower() in EMBEDDING_ALIASES else f"{dataset_name}@{_slug(model)}"
    return settings.model_copy(update={"data_dir": settings.data_dir / "eval" / name, "qdrant_url": None})


def _slug(model: str) -> str:
    tail = Path(model).expanduser().name or "model"
    digest = hashlib.sha256(str(Path(model).expanduser().resolve()).encode()).hexdigest()[:8]
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in tail) + f"-{digest}"


def ensure_ingested(settings: Settings, dataset: BeirDataset) -> dict[str, float]:
    """Ingest the corpus into the eval data dir (a no-op when already there). Returns counts."""
    from llm_twin.ingest.pipeline import IngestPipeline

    pipeline = IngestPipeline(settings)
    try:
        report = pipeline.ingest_documents(dataset.corpus)
    finally:
        pipeline.close()
    return {**report.counts, "ingest_seconds": round(report.seconds, 2), "chunks_written": report.chunks_written}


def documents_ranking(chunks: list[EmbeddedChunk], limit: int = 100) -> dict[str, float]:
    """Chunk hits -> document scores (a document scores as its best chunk), best ``limit`` kept."""
    scores: dict[str, float] = {}
    for chunk in chunks:
        if chunk.document_id not in scores or chunk.score > scores[chunk.document_id]:
            scores[chunk.document_id] = chunk.score
    ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)[:limit]
    # ranx ranks by score; make ties and rank order explicit so ties keep our order.
    return {doc: float(len(ranked) - rank) for rank, (doc, _) in enumerate(ranked)}


def score_run(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]) -> dict[str, float]:
    from ranx import Qrels, Run, evaluate

    run = {qid: docs for qid, docs in run.items() if docs}
    missing = set(qrels) - set(run)
    for qid in missing:  # a query with no results scores zero, not skipped
        run[qid] = {"__none__": 0.0}
    result = evaluate(Qrels(qrels), Run(run), list(METRICS), make_comparable=True)
    return {metric: round(float(result[metric]), 4) for metric in METRICS}


@dataclass
class EvalResult:
    dataset: str
    mode: str
    rerank: str
    queries: int
    fusion: str
    metrics: dict[str, float]
    seconds: dict[str, float] = field(default_factory=dict)
    hyde: bool = False
    warnings: list[str] = field(default_factory=list)
    split: str = "test"
    embedding_model: str = ""

    def as_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "split": self.split,
            "embedding_model": self.embedding_model,
            "mode": self.mode,
            "rerank": self.rerank,
            "fusion": self.fusion,
            "hyde": self.hyde,
            "queries": self.queries,
            **self.metrics,
            "seconds": self.seconds,
            "warnings": self.warnings,
        }


class PassageWriter(Protocol):
    """Writes the hypothetical passage blended into a query (HyDE)."""

    def run(self, query: str) -> HydeResult: ...


def evaluate_retrieval(
    retriever: QdrantHybridRetriever,
    reranker: Reranker | None,
    dataset: BeirDataset,
    mode: SearchMode,
    limit: int | None = None,
    rerank_top_n: int = 100,
    batch_size: int = 32,
    depth: int = 100,
    hyde: PassageWriter | None = None,
) -> EvalResult:
    """Run the test queries through the retriever (and reranker), score with ranx.

    ``hyde`` (a ``HypotheticalDocumentWriter``) writes one passage per query, blended into it;
    a query whose passage fails is searched without one and counted in ``warnings``."""
    qids = sorted(dataset.queries)[: limit or None]
    run: dict[str, dict[str, float]] = {}
    t0 = time.perf_counter()
    search_s = rerank_s = hyde_s = 0.0
    failed = 0
    for start in range(0, len(qids), batch_size):
        batch = qids[start : start + batch_size]
        passages = None
        if hyde is not None:
            th = time.perf_counter()
            results = [hyde.run(dataset.queries[q]) for q in batch]
            hyde_s += time.perf_counter() - th
            failed += sum(1 for r in results if r.passage is None)
            passages = [r.passage for r in results]
        ts = time.perf_counter()
        # Over-fetch chunks so that ``depth`` distinct documents remain after grouping.
        per_query, _ = retriever.search_each(
            [dataset.queries[q] for q in batch], limit=depth * 2, mode=mode, hypotheticals=passages
        )
        search_s += time.perf_counter() - ts
        for qid, chunks in zip(batch, per_query, strict=True):
            if reranker is not None and reranker.name != "none":
                tr = time.perf_counter()
                head = reranker.run(dataset.queries[qid], chunks[:rerank_top_n], top_k=rerank_top_n)
                rerank_s += time.perf_counter() - tr
                seen = {c.id for c in head}
                # Reranked head first, the rest after it in retrieval order.
                floor = min((c.score for c in head), default=0.0)
                tail = [c.model_copy(update={"score": floor - 1 - i}) for i, c in enumerate(chunks) if c.id not in seen]
                chunks = head + tail
            run[qid] = documents_ranking(chunks, depth)
    metrics = score_run({q: dataset.qrels[q] for q in qids}, run)
    return EvalResult(
        dataset=dataset.name,
        mode=mode,
        rerank=reranker.name if reranker is not None else "none",
        fusion=getattr(retriever, "fusion", "rrf") if mode == "hybrid" else "-",
        queries=len(qids),
        metrics=metrics,
        seconds={
            "total": round(time.perf_counter() - t0, 2),
            "search": round(search_s, 2),
            "rerank": round(rerank_s, 2),
            "hyde": round(hyde_s, 2),
        },
        hyde=hyde is not None,
        warnings=[f"HyDE failed for {failed} of {len(qids)} queries (searched without a passage)"] if failed else [],
    )


class _MemoWriter:
    """Reuses passages across evaluations in one run (e.g. the same queries under two fusions)."""

    def __init__(self, writer: PassageWriter, cache: dict[str, HydeResult]) -> None:
        self.writer, self.cache = writer, cache

    def run(self, query: str) -> HydeResult:
        if query not in self.cache:
            self.cache[query] = self.writer.run(query)
        return self.cache[query]


def run_eval(
    settings: Settings,
    dataset_dir: Path,
    mode: SearchMode = "hybrid",
    rerank: str = "none",
    limit: int | None = None,
    progress: bool = False,
    hyde: bool = False,
    passage_cache: dict[str, HydeResult] | None = None,
    split: str = "test",
) -> EvalResult:
    """The `llm-twin eval retrieval` flow: load, ingest once, search the ``split`` queries, score."""
    import sys

    from llm_twin.retrieval.rerankers.factory import build_reranker

    dataset = load_beir(dataset_dir, split)
    local = eval_settings(settings, dataset.name).model_copy(update={"rerank_backend": rerank})
    if progress:
        print(
            f"ingesting {len(dataset.corpus)} documents into {local.data_dir} (skipped when present)…", file=sys.stderr
        )
    ensure_ingested(local, dataset)
    helper = None
    if rerank == "llm" or hyde:
        from llm_twin.llm.factory import build_helper_llm

        helper = build_helper_llm(local)
    reranker = build_reranker(local, helper)
    reranker.warm_up()
    with eval_retriever(local, mode) as retriever:
        writer: PassageWriter | None = None
        if hyde:
            from llm_twin.retrieval.hyde import HypotheticalDocumentWriter

            if helper is None:
                raise UnavailableError("--hyde needs a helper LLM (LLM_TWIN_HELPER_LLM_BACKEND is none)")
            # Offline evaluation waits longer than a request would: a slow CPU is not a failure here.
            writer = HypotheticalDocumentWriter(
                helper, local.hyde_max_new_tokens, max(local.helper_llm_timeout_s, 120.0), local.hyde_instruction
            )
            writer.warm_up()
            if passage_cache is not None:
                writer = _MemoWriter(writer, passage_cache)
        result = evaluate_retrieval(
            retriever, reranker, dataset, mode, limit=limit, rerank_top_n=local.rerank_top_n, hyde=writer
        )
        result.split, result.embedding_model = split, retriever.embedder.model_id
        return result


@contextmanager
def eval_retriever(local: Settings, mode: SearchMode = "hybrid") -> Iterator[QdrantHybridRetriever]:
    """The retriever over an eval data dir (from ``eval_settings``), its store closed on exit."""
    from llm_twin.embedding.bm25 import Bm25SparseEncoder
    from llm_twin.embedding.onnx_embedder import OnnxSentenceEmbedder
    from llm_twin.retrieval.search import QdrantHybridRetriever
    from llm_twin.store import open_store

    store = open_store(local)
    try:
        store.open_existing([local.collection_articles])
        yield QdrantHybridRetriever(
            store,
            OnnxSentenceEmbedder.from_settings(local),
            Bm25SparseEncoder(avg_len=local.bm25_avg_len),
            [local.collection_articles],
            mode=mode,
            prefetch_limit=max(local.prefetch_limit, 300),
            rrf_k=local.rrf_k,
            fusion=local.fusion,
            hyde_weight=local.hyde_weight,
        )
    finally:
        store.close()
