"""Retrieval benchmark: SciFact quality, retrieval-stage latency (ours vs the reference's way),
and rerank cost per candidate. One run, one JSON (benchmarks/results/retrieval.json) and one
markdown table (benchmarks/results/retrieval.md).

    .venv/bin/python benchmarks/retrieval.py [--demo-data-dir DIR] [--skip-scifact] [--hyde] [--llm-rerank-queries N]

The latency part needs the demo corpus ingested (``make ingest`` or ``llm-twin ingest``) into
``--demo-data-dir`` (default: LLM_TWIN_DATA_DIR).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from llm_twin.embedding.bm25 import Bm25SparseEncoder
from llm_twin.embedding.onnx_embedder import OnnxSentenceEmbedder
from llm_twin.settings import SHARED_DIR, load_settings
from llm_twin.store import open_store
from llm_twin.store.base import SearchRequest

RESULTS = Path(__file__).resolve().parent / "results"

# Three phrasings per question stand in for query expansion (no LLM in this stage).
QUESTIONS = [
    (
        "What did Guido van Rossum write about pattern matching?",
        "structural pattern matching match statement",
        "Guido's view on the match statement",
    ),
    (
        "How are PEPs proposed and accepted?",
        "PEP workflow steering council acceptance",
        "process for submitting a Python enhancement proposal",
    ),
    (
        "What is the style guide for Python code?",
        "PEP 8 naming conventions indentation",
        "how should Python code be formatted",
    ),
    (
        "How do type hints work in Python?",
        "function annotations typing module",
        "static type checking with annotations",
    ),
    ("What is the walrus operator?", "assignment expressions := operator", "PEP 572 assignment inside expressions"),
    ("How does async and await work?", "coroutines with async def syntax", "native coroutine PEP 492"),
    ("What are f-strings?", "literal string interpolation", "formatted string literals PEP 498"),
    ("How do I package a Python project?", "pyproject.toml build backend", "wheel and sdist packaging metadata"),
    ("What changed in the release schedule?", "Python release cycle annual", "release manager schedule PEP"),
    ("What is the Global Interpreter Lock removal plan?", "free-threaded CPython nogil", "making the GIL optional"),
    ("How are dataclasses defined?", "dataclass decorator fields", "PEP 557 data classes"),
    ("What does Łukasz Langa say about black formatting?", "Black code formatter", "opinionated formatter for Python"),
    ("How do I validate data with pydantic?", "pydantic models validation", "data validation with type annotations"),
    ("How to make HTTP requests in Python?", "HTTP client library requests", "sending GET and POST requests"),
    ("What is the Zen of Python?", "import this aphorisms", "guiding principles for Python's design"),
    ("How are deprecations handled?", "DeprecationWarning removal policy", "backwards compatibility policy"),
    ("What is the stable ABI?", "limited C API extension modules", "binary compatibility across versions"),
    ("Fix typos in PEPs", "typo fixes commit", "correct spelling mistakes"),
    ("How does exception groups work?", "except* ExceptionGroup", "raising multiple unrelated exceptions"),
    ("What is the import system?", "importlib finders and loaders", "module import machinery"),
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latency(data_dir: Path, rounds: int) -> dict:
    """Our retrieval stage vs the reference's (per-query embedding, per query x collection search, sequential)."""
    from llm_twin.retrieval.search import QdrantHybridRetriever

    settings = load_settings(data_dir=data_dir)
    store = open_store(settings)
    collections = list(settings.collections.values())
    store.open_existing(collections)
    embedder = OnnxSentenceEmbedder.from_settings(settings)
    bm25 = Bm25SparseEncoder(avg_len=settings.bm25_avg_len)
    retriever = QdrantHybridRetriever(store, embedder, bm25, collections, mode="hybrid", rrf_k=settings.rrf_k)
    retriever.warm_up()
    # The reference ran its embedder in fp32; "as-is" runs the packaged model with fp32 MatMuls
    # (through ONNX Runtime, so still faster than the reference's torch). Reported beside, not as the target.
    fp32 = OnnxSentenceEmbedder.from_settings(settings.model_copy(update={"embedding_precision": "as-is"}))
    fp32.warm_up()
    k = settings.k

    def ours(queries):
        retriever.run(list(queries), k)

    def reference(queries, embedder=embedder):
        limit = max(1, k // len(collections))
        found = {}
        for query in queries:
            dense = embedder.embed([query])[0].tolist()
            sparse = bm25.embed_queries([query])[0]
            for collection in collections:
                for hit in store.query_batch(
                    collection,
                    [SearchRequest(limit=limit, mode="hybrid", dense=dense, sparse=sparse, rrf_k=settings.rrf_k)],
                )[0]:
                    found[hit.id] = hit
        return sorted(found.values(), key=lambda h: h.score, reverse=True)[:k]

    def reference_fp32(queries):
        return reference(queries, fp32)

    paths = (("ours", ours), ("reference", reference), ("reference_fp32", reference_fp32))
    for q in QUESTIONS[:3]:  # warm caches for all
        for _, fn in paths:
            fn(q)
    times: dict[str, list[float]] = {name: [] for name, _ in paths}
    for _ in range(rounds):
        for q in QUESTIONS:  # interleaved, so noise hits all alike
            for name, fn in paths:
                t0 = time.perf_counter()
                fn(q)
                times[name].append((time.perf_counter() - t0) * 1000)
    retriever.close()
    store.close()
    summary: dict = {
        name: {"p50_ms": round(statistics.median(v), 2), "p95_ms": round(percentile(v, 0.95), 2), "n": len(v)}
        for name, v in times.items()
    }
    summary["speedup_p50"] = round(summary["reference"]["p50_ms"] / summary["ours"]["p50_ms"], 2)
    summary["speedup_p50_vs_fp32"] = round(summary["reference_fp32"]["p50_ms"] / summary["ours"]["p50_ms"], 2)
    # Per question and round, the two paths ran back to back: the median of those ratios is less
    # sensitive to a noisy stretch than the ratio of two medians.
    pairs = [r / o for r, o in zip(times["reference"], times["ours"], strict=True)]
    summary["speedup_paired_median"] = round(statistics.median(pairs), 2)
    summary["queries_per_request"] = 3
    summary["embedder"] = embedder.model_id
    summary["embedder_fp32"] = fp32.model_id
    summary["thread_spinning"] = settings.embedding_thread_spinning
    summary["k"] = k
    return summary


def rerank_costs(llm_pairs: int) -> dict:
    """Milliseconds per (query, ~250-token passage) candidate for each reranker backend available here."""
    import tempfile

    from llm_twin.domain.documents import EmbeddedChunk
    from llm_twin.retrieval.rerankers.llm_yes_no import LlmYesNoReranker
    from llm_twin.retrieval.rerankers.none import NoopReranker
    from llm_twin.retrieval.rerankers.onnx_cross_encoder import OnnxCrossEncoderReranker

    # The MiniLM-sized test cross-encoder is a test fixture (tests/onnx_models.py), not package code.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from onnx_models import build_test_cross_encoder

    passage = " ".join(["Structural pattern matching compares a subject against patterns and binds names."] * 18)
    chunks = [
        EmbeddedChunk(
            id=str(i),
            collection="c",
            content_type="article",
            document_id=str(i),
            chunk_index=0,
            content=passage,
            author_ids=[],
            author_full_name="x",
            score=1.0 / (i + 1),
        )
        for i in range(20)
    ]
    query = "What did Guido van Rossum write about pattern matching?"
    costs = {}
    noop = NoopReranker()
    t0 = time.perf_counter()
    noop.run(query, chunks, top_k=5)
    costs["none"] = {"ms_per_candidate": round((time.perf_counter() - t0) * 1000 / len(chunks), 4)}
    with tempfile.TemporaryDirectory() as tmp:
        directory = build_test_cross_encoder(Path(tmp) / "ce")
        reranker = OnnxCrossEncoderReranker(str(directory), top_n=20)
        reranker.warm_up()
        reranker.run(query, chunks[:2], top_k=2)
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            reranker.run(query, chunks, top_k=5)
            runs.append((time.perf_counter() - t0) * 1000 / len(chunks))
        costs["cross-encoder"] = {
            "ms_per_candidate": round(statistics.median(runs), 2),
            "model": "MiniLM-L6 sized ONNX cross-encoder built from the bundled weights (cost only; same size as ms-marco-MiniLM-L-6-v2)",
        }
    if llm_pairs:
        from llm_twin.llm.factory import build_helper_llm

        llm = build_helper_llm(load_settings(helper_llm_backend="llama-cpp"))
        reranker = LlmYesNoReranker(llm, top_n=llm_pairs)
        reranker.warm_up()
        t0 = time.perf_counter()
        reranker.run(query, chunks[:llm_pairs], top_k=llm_pairs)
        costs["llm"] = {
            "ms_per_candidate": round((time.perf_counter() - t0) * 1000 / llm_pairs, 1),
            "model": llm.model_name,
        }
    return costs


# HyDE writes with a task instruction, as in the HyDE paper (one per dataset); this one asks for
# the register of the corpus (scientific abstracts). The service's default instruction is generic
# (an earlier run with it: 0.7319 for hybrid_dbsf+hyde, below hybrid_dbsf's 0.7358).
SCIFACT_HYDE_INSTRUCTION = (
    "Write a short passage from a scientific paper abstract that addresses the claim below. Write 2-3 "
    "factual sentences with the specific technical terms a paper on it would use. Do not refer to the claim."
    "\n\nClaim: {query}"
)


def scifact(llm_rerank_queries: int, hyde: bool, embedder: Path | None = None) -> dict:
    from llm_twin.retrieval.evaluation import run_eval

    settings = load_settings()
    dataset = SHARED_DIR / "data" / "scifact"
    results = {}
    if embedder is not None:  # supervised: an embedder fine-tuned on SciFact *train* (llm-twin train embedder)
        tuned = settings.model_copy(update={"embedding_model": str(embedder)})
        for mode in ("dense", "hybrid"):
            results[f"{mode}@finetuned"] = run_eval(tuned, dataset, mode, "none").as_dict()
        results["hybrid_dbsf@finetuned"] = run_eval(
            tuned.model_copy(update={"fusion": "dbsf"}), dataset, "hybrid", "none"
        ).as_dict()
        report = embedder / "training.json"
        if report.is_file():
            results["hybrid_dbsf@finetuned"]["training"] = json.loads(report.read_text())
    for mode in ("dense", "sparse", "hybrid"):
        results[mode] = run_eval(settings, dataset, mode, "none").as_dict()
    dbsf = settings.model_copy(update={"fusion": "dbsf"})
    results["hybrid_dbsf"] = run_eval(dbsf, dataset, "hybrid", "none").as_dict()
    if hyde:  # one passage per query from the local helper LLM, shared by both fusions
        passages: dict = {}
        instructed = {"hyde_instruction": SCIFACT_HYDE_INSTRUCTION}
        results["hybrid_dbsf+hyde"] = run_eval(
            dbsf.model_copy(update=instructed), dataset, "hybrid", "none", hyde=True, passage_cache=passages
        ).as_dict()
        results["hybrid+hyde"] = run_eval(
            settings.model_copy(update=instructed), dataset, "hybrid", "none", hyde=True, passage_cache=passages
        ).as_dict()
        results["hybrid_dbsf+hyde"]["hyde_instruction"] = SCIFACT_HYDE_INSTRUCTION
    if llm_rerank_queries:
        base = run_eval(settings, dataset, "hybrid", "none", limit=llm_rerank_queries).as_dict()
        tuned = settings.model_copy(update={"rerank_top_n": 10})
        results[f"hybrid_first_{llm_rerank_queries}"] = base
        results[f"hybrid+llm_first_{llm_rerank_queries}"] = run_eval(
            tuned, dataset, "hybrid", "llm", limit=llm_rerank_queries
        ).as_dict()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description="Retrieval benchmark")
    parser.add_argument("--demo-data-dir", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-scifact", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS, help="Directory for retrieval.json and retrieval.md.")
    parser.add_argument(
        "--llm-rerank-queries", type=int, default=0, help="Also score hybrid+llm rerank on N queries (slow)."
    )
    parser.add_argument("--llm-pairs", type=int, default=0, help="Measure the llm reranker's cost on N pairs (slow).")
    parser.add_argument(
        "--hyde", action="store_true", help="Also score HyDE (one local-LLM call per query: ~16 min on 2 cores)."
    )
    parser.add_argument(
        "--embedder",
        type=Path,
        default=None,
        help="Also score an embedder fine-tuned on SciFact train (a directory from `llm-twin train embedder`).",
    )
    args = parser.parse_args()

    result: dict = {}
    # Latency first, in a fresh process state (the SciFact runs leave sessions and threads behind).
    result["latency"] = latency(args.demo_data_dir or load_settings().data_dir, args.rounds)
    if not args.skip_scifact:
        result["scifact"] = scifact(args.llm_rerank_queries, hyde=args.hyde, embedder=args.embedder)
    result["rerank_cost"] = rerank_costs(args.llm_pairs)
    result["targets"] = {"hybrid_ndcg@10": 0.71, "best_ndcg@10": 0.74, "ours_p50_ms": 10, "speedup_min": 1.5}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "retrieval.json").write_text(json.dumps(result, indent=2) + "\n")
    md = ["| measure | value | target |", "|---|---|---|"]
    runs = result.get("scifact", {})
    best = max(runs, key=lambda n: runs[n]["ndcg@10"]) if runs else None
    zero_shot = [n for n in runs if "@finetuned" not in n]
    best_zero_shot = max(zero_shot, key=lambda n: runs[n]["ndcg@10"]) if zero_shot else None
    for name, r in runs.items():
        target = ">= 0.71" if name == "hybrid" else ">= 0.74 (best)" if name == best else ""
        if name == best_zero_shot and name != best:
            target = "best zero-shot"
        if "@finetuned" in name:
            name = name.replace("@finetuned", ", embedder fine-tuned on SciFact train")
        md.append(
            f"| SciFact {name} ({r['queries']} q): nDCG@10 / R@100 / MRR@10 | {r['ndcg@10']:.4f} / {r['recall@100']:.4f} / {r['mrr@10']:.4f} | {target} |"
        )
    lat = result["latency"]
    md.append(
        f"| retrieval stage, ours (3 queries, 3 collections, k={lat['k']}) p50 / p95 | {lat['ours']['p50_ms']} / {lat['ours']['p95_ms']} ms | p50 <= 10 ms |"
    )
    md.append(
        f"| retrieval stage, reference way p50 / p95 | {lat['reference']['p50_ms']} / {lat['reference']['p95_ms']} ms | |"
    )
    md.append(
        f"| speed-up (p50; median of paired ratios) | {lat['speedup_p50']}x ({lat['speedup_paired_median']}x) | >= 1.5x |"
    )
    fp = lat["reference_fp32"]
    md.append(
        f"| reference way with an fp32 embedder (the reference's precision) p50 / p95 | {fp['p50_ms']} / {fp['p95_ms']} ms | |"
    )
    md.append(f"| speed-up over that (p50) | {lat['speedup_p50_vs_fp32']}x | |")
    for name, cost in result["rerank_cost"].items():
        md.append(f"| rerank cost, {name} | {cost['ms_per_candidate']} ms/candidate | |")
    (args.out / "retrieval.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
