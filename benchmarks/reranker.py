"""Reranker benchmark: our trained cross-encoders on SciFact test and the demo corpus, quality and cost.

One run, one JSON (benchmarks/results/reranker.json) and one markdown table (reranker.md):

- SciFact test (300 queries), nDCG@10 / MRR@10 / R@10: hybrid DBSF alone, + the reranker trained
  on synthetic queries only (zero-shot with respect to SciFact's labels), + the one trained with
  SciFact *train* pairs too (in-domain). The search runs once; each reranker reorders the same
  top ``--top-n`` candidates.
- Cost: the rerank stage over ``--top-n`` candidates (p50, p95) and per pair, for each model.
- Demo corpus: MRR@10 of the source chunk for held-out synthetic queries (the ``dev.jsonl`` that
  `llm-twin train reranker` wrote and did not train on), hybrid vs hybrid + the demo reranker.
- Training time and data sizes, from each model's training.json.

    .venv/bin/python benchmarks/reranker.py --model synthetic=DIR --model in-domain=DIR \\
        [--demo-model DIR --demo-dev CACHE/dev.jsonl --demo-data-dir DIR] [--limit N] [--latency-queries N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from llm_twin.retrieval.evaluation import documents_ranking, ensure_ingested, eval_retriever, eval_settings, load_beir
from llm_twin.retrieval.rerankers.base import SearchFusion, apply_scores, fuse_with_search, passage_text
from llm_twin.retrieval.rerankers.factory import search_weight_for
from llm_twin.retrieval.rerankers.onnx_cross_encoder import OnnxCrossEncoderReranker
from llm_twin.settings import SHARED_DIR, Settings, load_settings
from llm_twin.training.pairs import is_dev
from llm_twin.training.reranker_flow import DataPlan, corpus_searcher

RESULTS = Path(__file__).resolve().parent / "results"
METRICS = ("ndcg@10", "mrr@10", "recall@10")


def score(qrels: dict, run: dict) -> dict[str, float]:
    from ranx import Qrels, Run, evaluate

    result = evaluate(Qrels(qrels), Run(run), list(METRICS), make_comparable=True)
    return {m: round(float(result[m]), 4) for m in METRICS}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def training_summary(model: Path) -> dict:
    path = model / "training.json"
    if not path.is_file():
        return {}
    report = json.loads(path.read_text())
    keep = ("layers", "groups", "dev_groups", "negatives_per_group", "max_length", "steps", "best_step", "seconds")
    return {**{k: report.get(k) for k in keep}, "dev_mrr": report.get("dev_mrr"), "data": report.get("data")}


#: Search weights tried on the held-out train queries (0: the cross-encoder's order alone), for
#: each way of combining the model with the search (``LLM_TWIN_RERANK_FUSION``).
WEIGHT_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
FUSIONS: tuple[SearchFusion, ...] = ("score", "rank")
Fusion = tuple[SearchFusion, float]


def fusion_grid() -> list[Fusion]:
    return [("score", 0.0)] + [(fusion, w) for fusion in FUSIONS for w in WEIGHT_GRID if w > 0]


def reranked(head: list, raw: list[float], fusion: Fusion) -> list:
    mode, weight = fusion
    return apply_scores(head, fuse_with_search(raw, head, weight, mode), len(head), len(head))


def reranked_runs(
    reranker: OnnxCrossEncoderReranker, queries: dict, candidates: dict, qids: list[str], fusions: list[Fusion]
) -> tuple[dict[Fusion, dict], list[float]]:
    """Each query's top ``top_n`` scored once by the model; one document run per fusion (way and
    weight), and the scoring time per query (ms)."""
    runs: dict[Fusion, dict] = {f: {} for f in fusions}
    times = []
    for n, qid in enumerate(qids, 1):
        chunks = candidates[qid]
        head = chunks[: reranker.top_n]
        t0 = time.perf_counter()
        raw = reranker.score(queries[qid], [passage_text(c) for c in head]).tolist()
        times.append((time.perf_counter() - t0) * 1000)
        for fusion in fusions:
            ranked = reranked(head, raw, fusion)
            floor = min((c.score for c in ranked), default=0.0)
            tail = [c.model_copy(update={"score": floor - 1 - i}) for i, c in enumerate(chunks[len(head) :])]
            runs[fusion][qid] = documents_ranking(ranked + tail)
        if n % 50 == 0:
            print(f"{reranker.model}: {n}/{len(qids)} queries, p50 {statistics.median(times):.0f} ms", file=sys.stderr)
    return runs, times


def fusion_label(fusion: Fusion) -> str:
    mode, weight = fusion
    return "alone" if weight <= 0 else f"fused by {mode}, weight {weight:g}"


def hybrid_candidates(local: Settings, queries: dict, qids: list[str]) -> dict:
    with eval_retriever(local, "hybrid") as retriever:
        candidates: dict = {}
        for start in range(0, len(qids), 32):
            batch = qids[start : start + 32]
            per_query, _ = retriever.search_each([queries[q] for q in batch], limit=200, mode="hybrid")
            candidates.update(zip(batch, per_query, strict=True))
    return candidates


def scifact(
    dataset_dir: Path,
    models: dict[str, Path],
    limit: int | None,
    top_n: int,
    threads: int | None,
    defaults: dict[str, Fusion],
) -> dict:
    """Held-out train queries (the 10% the trainer keeps out): every fusion of ``fusion_grid``, and
    the best one chosen there (never on the test split). Test queries: hybrid alone, each model
    alone, fused by score and by rank at the weight the service would use for it (``defaults``), and
    the chosen fusion. Choosing uses train labels: a zero-shot model's zero-shot rows are the alone
    and default ones (the service's weight for a model trained with labels was chosen on its own
    held-out labelled queries, which are these)."""
    settings = load_settings(fusion="dbsf")
    data = load_beir(dataset_dir, "test")
    train = load_beir(dataset_dir, "train")
    local = eval_settings(settings, data.name)
    ensure_ingested(local, data)
    every = sorted(data.queries)
    qids = every[: limit or None]
    # The trainer's own hold-out rule and fraction: the queries a model trained with defaults never saw.
    held_out = sorted(q for q in train.queries if q in train.qrels and is_dev(q, DataPlan().dev_fraction))
    candidates = hybrid_candidates(local, data.queries, every)
    train_candidates = hybrid_candidates(local, train.queries, held_out)
    qrels = {q: data.qrels[q] for q in qids}
    rows: list[dict] = [
        {"name": "hybrid DBSF", "model": None, **score(qrels, {q: documents_ranking(candidates[q]) for q in qids})}
    ]
    if len(qids) < len(every):  # the baseline is cheap: also over every test query, for reference
        all_qrels = {q: data.qrels[q] for q in every}
        all_run = {q: documents_ranking(candidates[q]) for q in every}
        rows.insert(0, {"name": f"hybrid DBSF (all {len(every)} queries)", "model": None, **score(all_qrels, all_run)})
    train_qrels = {q: train.qrels[q] for q in held_out}
    tuning: dict = {
        "queries": len(held_out),
        "hybrid DBSF": score(train_qrels, {q: documents_ranking(train_candidates[q]) for q in held_out}),
    }
    grid = fusion_grid()
    for name, model in models.items():
        default = defaults[name]
        reranker = OnnxCrossEncoderReranker(model, top_n=top_n, threads=threads)
        reranker.warm_up()
        train_runs, _ = reranked_runs(reranker, train.queries, train_candidates, held_out, grid)
        by_fusion = {f: score(train_qrels, train_runs[f]) for f in grid}
        # Ties go to the default way, then to the weight nearest the default.
        chosen = max(grid, key=lambda f: (by_fusion[f]["ndcg@10"], f[0] == default[0], -abs(f[1] - default[1])))
        tuning[name] = {
            mode: {f"{w:g}": by_fusion[(mode, w) if w > 0 else grid[0]] for w in WEIGHT_GRID} for mode in FUSIONS
        }
        tuning[name]["chosen"] = {"fusion": chosen[0], "search_weight": chosen[1]}
        labels: dict[Fusion, str] = {grid[0]: "alone"}
        for mode in FUSIONS:
            is_default = " (the default)" if mode == default[0] else ""
            labels[(mode, default[1])] = f"{fusion_label((mode, default[1]))}{is_default}"
        labels[chosen] = labels.get(chosen, fusion_label(chosen)) + ", best on held-out train queries"
        runs, times = reranked_runs(reranker, data.queries, candidates, qids, list(labels))
        for fusion, label in labels.items():
            rows.append(
                {
                    "name": f"+ {name} reranker, {label}",
                    "model": str(model),
                    "fusion": fusion[0],
                    "search_weight": fusion[1],
                    **score(qrels, runs[fusion]),
                    "rerank_p50_ms_under_eval": round(statistics.median(times), 1),
                    "training": training_summary(model),
                }
            )
    return {"queries": len(qids), "top_n": top_n, "fusion": "dbsf", "rows": rows, "held_out_train": tuning}


def latency(
    models: dict[str, Path],
    dataset_dir: Path,
    queries: int,
    top_n: int,
    threads: int | None,
    defaults: dict[str, Fusion],
) -> dict:
    """The rerank stage alone over ``top_n`` SciFact candidates: p50/p95 and per pair, per model."""
    settings = load_settings(fusion="dbsf")
    data = load_beir(dataset_dir, "test")
    local = eval_settings(settings, data.name)
    qids = sorted(data.queries)[:queries]
    with eval_retriever(local, "hybrid") as retriever:
        per_query, _ = retriever.search_each([data.queries[q] for q in qids], limit=top_n * 2, mode="hybrid")
    out = {}
    for name, model in models.items():
        reranker = OnnxCrossEncoderReranker(
            model, top_n=top_n, threads=threads, search_weight=defaults[name][1], fusion=defaults[name][0]
        )
        reranker.warm_up()
        reranker.run(data.queries[qids[0]], per_query[0][:top_n], top_k=top_n)  # first call: allocations
        times = []
        tokens = padding = 0
        for qid, chunks in zip(qids, per_query, strict=True):
            t0 = time.perf_counter()
            reranker.run(data.queries[qid], chunks[:top_n], top_k=top_n)
            times.append((time.perf_counter() - t0) * 1000)
            run, padded = reranker.padded_tokens(data.queries[qid], [passage_text(c) for c in chunks[:top_n]])
            tokens, padding = tokens + run, padding + padded
        p50 = statistics.median(times)
        out[name] = {
            "p50_ms": round(p50, 1),
            "p95_ms": round(percentile(times, 0.95), 1),
            "per_pair_ms": round(p50 / top_n, 2),
            # Share of the tokens run that are padding: the most sequence packing could save.
            "padding_share": round(padding / tokens, 3) if tokens else 0.0,
            "n": len(times),
            "layers": training_summary(model).get("layers"),
            "model_mb": round((model / "model.onnx").stat().st_size / 1e6, 1),
        }
    return out


def demo(model: Path, dev_path: Path, data_dir: Path, top_n: int, weight: float) -> dict:
    """MRR@10 of each held-out query's source chunk: hybrid order vs reranked (alone, and fused by
    score and by rank at ``weight``)."""
    from llm_twin.training.reranker_data import read_groups

    settings = load_settings(data_dir=data_dir)
    groups = read_groups(dev_path)
    reranker = OnnxCrossEncoderReranker(model, top_n=top_n)
    reranker.warm_up()
    fusions: list[Fusion] = [("score", 0.0)] + [(mode, weight) for mode in FUSIONS]
    reciprocal: dict[str, list[float]] = {"hybrid": [], **{fusion_label(f): [] for f in fusions}}
    tokens = padding = 0
    with corpus_searcher(settings, list(settings.collections.values())) as searcher:
        per_query, _ = searcher.search_each([g.query for g in groups], limit=top_n, mode="hybrid")
    for group, chunks in zip(groups, per_query, strict=True):
        source = group.query_id.rsplit(":", 1)[1]
        by_document = source == group.document_id  # a document-level source (a BEIR dataset)
        passages = [passage_text(c) for c in chunks]
        raw = reranker.score(group.query, passages).tolist()
        run, padded = reranker.padded_tokens(group.query, passages)
        tokens, padding = tokens + run, padding + padded
        rankings = [("hybrid", chunks)] + [(fusion_label(f), reranked(chunks, raw, f)) for f in fusions]
        for label, ranking in rankings:
            hits = [(c.document_id if by_document else c.id) == source for c in ranking[:10]]
            rank = hits.index(True) if True in hits else None
            reciprocal[label].append(0.0 if rank is None else 1.0 / (rank + 1))
    return {
        "queries": len(groups),
        "methods": sorted({g.method for g in groups}),
        "mrr@10": {label: round(statistics.mean(v), 4) if v else None for label, v in reciprocal.items()},
        "padding_share": round(padding / tokens, 3) if tokens else 0.0,
        "model": str(model),
        "training": training_summary(model),
    }


def twin_dev(model: Path, data_dir: Path, weight: float, k: int = 5) -> dict:
    """The demo model on the twin's own questions (``evaluation/twin_dev``, written for the twin, not by
    the trainer), against what ``auto`` uses without it: the sentence-embedding reranker. Same store,
    same embedder, today's defaults otherwise, no helper LLM (one search per question)."""
    from llm_twin.embedding.onnx_embedder import OnnxSentenceEmbedder
    from llm_twin.retrieval.pipeline import RetrievalPipeline
    from llm_twin.retrieval.twin_eval import TwinRetrievalEvaluator, load_questions
    from llm_twin.settings import PROJECT_ROOT
    from llm_twin.store import open_store

    questions_path = PROJECT_ROOT / "evaluation" / "twin_dev" / "questions.jsonl"
    base = load_settings(data_dir=data_dir, helper_llm_backend="none", expand_to_n=1)
    cross_encoder = {"rerank_backend": "cross-encoder", "rerank_model": str(model)}
    configs: dict[str, dict] = {"sentence-embedding (auto without a model)": {"rerank_backend": "sentence-embedding"}}
    for fusion in [("score", 0.0)] + [(mode, weight) for mode in FUSIONS]:
        update = {**cross_encoder, "rerank_fusion": fusion[0], "rerank_search_weight": fusion[1]}
        configs[f"demo cross-encoder, {fusion_label(fusion)}"] = update
    questions = load_questions(questions_path, None)
    store = open_store(base)
    embedder = OnnxSentenceEmbedder.from_settings(base)
    out: dict = {"questions": len(questions), "k": k, "runs": {}}
    pipelines: list[RetrievalPipeline] = []
    try:
        for name, update in configs.items():
            pipeline = RetrievalPipeline(base.model_copy(update=update), store=store, embedder=embedder)
            pipelines.append(pipeline)
            evaluator = TwinRetrievalEvaluator(pipeline, k=k, expand_to_n=1, questions_file=str(questions_path))
            evaluator.warm_up()
            overall = evaluator.summarize([evaluator.score(q) for q in questions]).overall
            out["runs"][name] = {
                "hit@k": round(overall.hit_at_k, 4),
                "mrr": round(overall.mrr, 4),
                "context_precision": round(overall.context_precision, 4),
            }
            print(f"twin dev, {name}: {out['runs'][name]}", file=sys.stderr)
    finally:
        for pipeline in pipelines:  # each closes the shared store too; closing twice is a no-op
            pipeline.close()
        store.close()
    return out


def markdown(result: dict) -> str:
    lines = ["# Reranker benchmark", ""]
    if result.get("note"):
        lines += [f"Note: {result['note']}", ""]
    sci = result.get("scifact")
    if sci:
        lines += [
            f"SciFact test, {sci['queries']} queries, hybrid {sci['fusion'].upper()}, top {sci['top_n']} reranked.",
            "",
            "| run | nDCG@10 | MRR@10 | R@10 | layers | train groups | train s |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in sci["rows"]:
            t = row.get("training") or {}
            lines.append(
                f"| {row['name']} | {row['ndcg@10']} | {row['mrr@10']} | {row['recall@10']} | "
                f"{t.get('layers', '-')} | {t.get('groups', '-')} | {t.get('seconds', '-')} |"
            )
        lines.append("")
        tuning = sci.get("held_out_train") or {}
        models = [k for k in tuning if k not in ("queries", "hybrid DBSF")]
        if models:
            lines += [
                f"Held-out SciFact *train* queries ({tuning['queries']}, never trained on), nDCG@10 by fusion and "
                f"search weight (w=0 = the model alone; hybrid DBSF alone {tuning['hybrid DBSF']['ndcg@10']}):",
                "",
                "| model | fusion | " + " | ".join(f"w={w:g}" for w in WEIGHT_GRID) + " |",
                "|---|---|" + "---|" * len(WEIGHT_GRID),
            ]
            for name in models:
                chosen = tuning[name]["chosen"]
                for mode in FUSIONS:
                    cells = []
                    for w in WEIGHT_GRID:
                        cell = str(tuning[name][mode][f"{w:g}"]["ndcg@10"])
                        pick = w > 0 and (mode, w) == (chosen["fusion"], chosen["search_weight"])
                        cells.append(f"**{cell}**" if pick else cell)
                    lines.append(f"| {name} | {mode} | " + " | ".join(cells) + " |")
            lines += ["", "Bold: the fusion chosen on these queries (the test rows' *best on held-out train*).", ""]
    if result.get("latency"):
        lines += [
            "| model | rerank p50 ms | p95 ms | per pair ms | padding | layers | int8 MB |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, row in result["latency"].items():
            lines.append(
                f"| {name} | {row['p50_ms']} | {row['p95_ms']} | {row['per_pair_ms']} | {row['padding_share']:.1%} "
                f"| {row['layers']} | {row['model_mb']} |"
            )
        lines += [
            "",
            "Padding: share of the tokens run that are padding (pairs batched by length, 16 a batch), the "
            "most sequence packing could save.",
            "",
        ]
    if result.get("demo"):
        d = result["demo"]
        runs = "; ".join(f"{label} {value}" for label, value in d["mrr@10"].items())
        lines += [
            f"Demo corpus, {d['queries']} held-out synthetic queries ({', '.join(d['methods'])}), MRR@10 of the "
            f"source chunk: {runs}. Padding: {d.get('padding_share', 0.0):.1%} of the tokens run (commits are short).",
            "",
        ]
    if result.get("twin_dev"):
        t = result["twin_dev"]
        lines += [
            f"Twin dev set ({t['questions']} questions written for the twin, k={t['k']}, no helper LLM):",
            "",
            "| reranker | hit@k | MRR | context precision |",
            "|---|---|---|---|",
        ]
        for name, row in t["runs"].items():
            lines.append(f"| {name} | {row['hit@k']} | {row['mrr']} | {row['context_precision']} |")
        lines.append("")
    lines.append(f"Host: {result['host']}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=SHARED_DIR / "data" / "scifact")
    parser.add_argument("--model", action="append", default=[], help="NAME=DIR (repeatable), e.g. synthetic=DIR")
    parser.add_argument("--limit", type=int, default=None, help="First N test queries (default: all 300).")
    parser.add_argument("--top-n", type=int, default=20)
    parser.add_argument(
        "--search-weight",
        type=float,
        default=None,
        help="Fused rows' search weight (default: the service's for each model).",
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--latency-queries", type=int, default=30, help="0 skips the latency part.")
    parser.add_argument(
        "--cost-model", action="append", default=[], help="NAME=DIR timed only (another size), repeatable."
    )
    parser.add_argument("--demo-model", type=Path)
    parser.add_argument("--demo-dev", type=Path, help="dev.jsonl written by `llm-twin train reranker --corpus`.")
    parser.add_argument("--demo-data-dir", type=Path, help="Data dir holding the ingested demo corpus.")
    parser.add_argument(
        "--demo-twin", action="store_true", help="Also run the twin dev set with the demo model (needs --demo-model)."
    )
    parser.add_argument("--skip-scifact", action="store_true")
    parser.add_argument("--note", default="", help="A line for the results (e.g. how the models were trained).")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    models: dict[str, Path] = {}
    cost_only: dict[str, Path] = {}
    for flag, items, into in (("--model", args.model, models), ("--cost-model", args.cost_model, cost_only)):
        for item in items:
            name, _, path = item.partition("=")
            if not path or not (Path(path) / "model.onnx").is_file():
                parser.error(f"{flag}: {item!r} is not NAME=DIR with DIR/model.onnx")
            into[name] = Path(path)
    import os
    import platform

    result: dict = {
        "host": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()}"
    }
    if args.note:
        result["note"] = args.note
    configured = load_settings()
    if args.search_weight is not None:
        configured = configured.model_copy(update={"rerank_search_weight": args.search_weight})

    def service_fusion(model: Path) -> Fusion:
        """The fusion the service would use for ``model`` with these settings."""
        return (configured.rerank_fusion, search_weight_for(configured, model))

    timed = {**models, **cost_only}
    defaults = {name: service_fusion(model) for name, model in timed.items()}
    if not args.skip_scifact:
        result["scifact"] = scifact(args.dataset, models, args.limit, args.top_n, args.threads, defaults)
    if args.latency_queries and timed:
        result["latency"] = latency(timed, args.dataset, args.latency_queries, args.top_n, args.threads, defaults)
    demo_data_dir = args.demo_data_dir or configured.data_dir
    demo_weight = service_fusion(args.demo_model)[1] if args.demo_model else 0.0
    if args.demo_model and args.demo_dev:
        result["demo"] = demo(args.demo_model, args.demo_dev, demo_data_dir, args.top_n, demo_weight)
    if args.demo_model and args.demo_twin:
        result["twin_dev"] = twin_dev(args.demo_model, demo_data_dir, demo_weight)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reranker.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "reranker.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
