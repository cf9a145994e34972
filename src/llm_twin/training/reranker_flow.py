"""`llm-twin train reranker` end to end: passages, synthetic queries, round-trip filter, groups, training.

Two kinds of corpus:

- a BEIR dataset (``--dataset``): each document is a passage, searched in its eval store
  (``<data_dir>/eval/<name>``, ingested once); ``split`` adds its labelled pairs (never ``test``);
- the user's own JSONL files (``--corpus``, the ingest format): each chunk is a passage, searched in
  the service's store (``data_dir``), which is brought up to date with the files first (a no-op
  after ``llm-twin ingest``).

Everything slow is cached under ``cache`` (synthetic queries, then the groups), so a rerun with
other training options redoes only the training.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from llm_twin.settings import Settings
from llm_twin.training.pairs import document_text, is_dev
from llm_twin.training.reranker_data import (
    RerankGroup,
    labelled_groups,
    read_groups,
    synthetic_groups,
    write_groups,
)
from llm_twin.training.synthetic import (
    ICT_METHOD,
    TITLE_METHOD,
    LlmQueryWriter,
    Source,
    generate_queries,
    sample_sources,
)

Say = Callable[[str], None]


@dataclass
class RerankerData:
    train: list[RerankGroup]
    dev: list[RerankGroup]
    sizes: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataPlan:
    """What to build: how many passages get an LLM query / an ICT query, and the filters."""

    synthetic: int = 200
    ict: int = 1000
    titles: int = 0  # passages whose document's title is a query (once per document; no LLM)
    style: Literal["question", "claim"] = "question"
    helper_model: str | None = None
    keep_top: int = 10
    depth: int = 30
    negatives: int = 7
    hard_negatives: Literal["below", "top"] = "top"
    dev_fraction: float = 0.1
    dev_candidates: int = 20  # a dev group is the search's top 20, as the service reranks it
    seed: int = 0
    split: str | None = None


@contextmanager
def corpus_searcher(settings: Settings, collections: list[str]) -> Iterator[Any]:
    """A hybrid retriever over ``collections`` of the store at ``settings.data_dir``, closed on exit."""
    from llm_twin.embedding.bm25 import Bm25SparseEncoder
    from llm_twin.embedding.onnx_embedder import OnnxSentenceEmbedder
    from llm_twin.retrieval.search import QdrantHybridRetriever
    from llm_twin.store import open_store

    store = open_store(settings)
    try:
        store.open_existing(collections)
        yield QdrantHybridRetriever(
            store,
            OnnxSentenceEmbedder.from_settings(settings),
            Bm25SparseEncoder(avg_len=settings.bm25_avg_len),
            collections,
            mode="hybrid",
            prefetch_limit=max(settings.prefetch_limit, 100),
            rrf_k=settings.rrf_k,
            fusion=settings.fusion,
        )
    finally:
        store.close()


def dataset_sources(settings: Settings, dataset_dir: Path, split: str | None) -> tuple[Settings, Any, list[Source]]:
    from llm_twin.retrieval.evaluation import ensure_ingested, eval_settings, load_beir

    # The corpus is what matters; the qrels of a split are read only when labelled pairs are asked for.
    data = load_beir(dataset_dir, split or _any_split(dataset_dir))
    local = eval_settings(settings, data.name)
    ensure_ingested(local, data)
    sources = [Source(d.id, d.id, "document", document_text(d), d.title or "") for d in data.corpus]
    return local, data, sources


def _any_split(dataset_dir: Path) -> str:
    names = sorted(p.stem for p in (Path(dataset_dir) / "qrels").glob("*.tsv"))
    return "train" if "train" in names else (names[0] if names else "train")


def corpus_sources(settings: Settings, paths: list[Path], limit: int) -> list[Source]:
    """Chunks of the corpus files (as ingest cuts them), after bringing the store up to date."""
    from llm_twin.ingest.pipeline import IngestPipeline

    pipeline = IngestPipeline(settings)
    try:
        pipeline.warm_up()
        documents, _bad = pipeline.read(paths)
        pipeline.ingest_documents(documents)
        sources = []
        # Sample documents first: chunking all of a large corpus only to keep a few hundred is waste.
        by_id = {d.id: d for d in documents}
        picked = [Source(d.id, d.id, "document", "", content_type=d.content_type) for d in documents]
        for document in sample_sources(picked, max(limit, 1) * 2, seed=0):
            doc = by_id[document.id]
            for chunk, text in pipeline.chunk(doc):
                sources.append(Source(chunk.id, doc.id, "chunk", text, doc.title or "", doc.content_type))
        return sources
    finally:
        pipeline.close()


def build_data(
    settings: Settings,
    plan: DataPlan,
    cache: Path,
    dataset_dir: Path | None = None,
    corpus: list[Path] | None = None,
    progress: Say | None = None,
) -> RerankerData:
    """Synthetic (and labelled) groups, split into train and a dev slice held out by document."""
    say = progress or (lambda _: None)
    cache.mkdir(parents=True, exist_ok=True)
    data = None
    if dataset_dir is not None:
        local, data, sources = dataset_sources(settings, dataset_dir, plan.split)
        collections = [local.collection_articles]
    else:
        local = settings
        sources = corpus_sources(settings, corpus or [], max(plan.synthetic, plan.ict, plan.titles))
        collections = list(settings.collections.values())
    wanted_n = max(plan.synthetic, plan.ict, plan.titles)
    pool = sample_sources(sources, wanted_n, seed=plan.seed) if wanted_n else []
    writer = None
    if plan.synthetic > 0:
        from llm_twin.llm.factory import build_helper_llm

        helper_settings = _helper_settings(settings, plan)
        llm = build_helper_llm(helper_settings)
        if llm is not None:
            writer = LlmQueryWriter(llm, style=plan.style)
    queries_cache = cache / "queries.jsonl"
    rows = generate_queries(pool[: plan.ict], queries_cache, None, ict=plan.ict > 0, seed=plan.seed, progress=say)
    if plan.titles:
        rows = generate_queries(pool[: plan.titles], queries_cache, None, ict=False, titles=True, progress=say)
    if writer is not None:
        rows = generate_queries(pool[: plan.synthetic], queries_cache, writer, ict=False, seed=plan.seed, progress=say)
    # Only this run's passages and this writer's rows: a cache may also hold rows of an older prompt.
    wanted = {(s.id, ICT_METHOD) for s in pool[: plan.ict]} | {
        (s.document_id, TITLE_METHOD) for s in pool[: plan.titles]
    }
    if writer is not None:
        wanted |= {(s.id, writer.method) for s in pool[: plan.synthetic]}
    rows = [r for r in rows if (r.source_id, r.method) in wanted]

    def held_out(key: str) -> bool:
        return is_dev(key, plan.dev_fraction)

    # The same search depth, negatives and held-out rule for synthetic and labelled groups.
    shared: dict[str, Any] = {
        "depth": plan.depth,
        "negatives": plan.negatives,
        "is_dev": held_out,
        "dev_candidates": plan.dev_candidates,
    }
    with corpus_searcher(local, collections) as searcher:
        groups, counts = synthetic_groups(
            rows, searcher, plan.keep_top, progress=say, hard_negatives=plan.hard_negatives, **shared
        )
        labelled: list[RerankGroup] = []
        if data is not None and plan.split:
            texts = {d.id: document_text(d) for d in data.corpus}
            labelled = labelled_groups(data.queries, data.qrels, texts, searcher, plan.split, **shared)
    every = groups + labelled
    # Held out by document (synthetic) or by query (labelled): nothing of a dev group is trained on.
    dev = [g for g in every if held_out(g.query_id.split(":")[1] if g.labelled else g.document_id)]
    train = [g for g in every if g not in dev]
    write_groups(cache / "train.jsonl", train)
    write_groups(cache / "dev.jsonl", dev)
    by_method: dict[str, int] = {}
    for g in every:
        by_method[g.method] = by_method.get(g.method, 0) + 1
    sizes = {
        "passages_sampled": len(pool),
        "queries_written": len(rows),
        "round_trip": counts,
        "labelled_groups": len(labelled),
        "groups_by_method": by_method,
        "train_groups": len(train),
        "dev_groups": len(dev),
    }
    (cache / "data.json").write_text(json.dumps(sizes, indent=2) + "\n", encoding="utf-8")
    say(f"data: {sizes}")
    return RerankerData(train, dev, sizes)


def _helper_settings(settings: Settings, plan: DataPlan) -> Settings:
    # Offline generation waits as long as it takes: a busy CPU is not a failure here.
    return settings.model_copy(
        update={
            "helper_llm_local_model": plan.helper_model or settings.helper_llm_local_model,
            "helper_llm_timeout_s": max(settings.helper_llm_timeout_s, 600.0),
        }
    )


def load_cached(cache: Path) -> RerankerData:
    sizes = json.loads((cache / "data.json").read_text(encoding="utf-8"))
    return RerankerData(read_groups(cache / "train.jsonl"), read_groups(cache / "dev.jsonl"), sizes)
