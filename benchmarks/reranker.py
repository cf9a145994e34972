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
from llm_twin.retrieval.rerankers.base import apply_scores, fuse_with_search_rank, passage_text
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


#: Search-rank weights tried on the held-out train queries (0: the cross-encoder's order alone).
WEIGHT_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)


def reranked_runs(
    reranker: OnnxCrossEncoderReranker, queries: dict, candidates: dict, qids: list[str], weights: list[float]
) -> tuple[dict[float, dict], list[float]]:
    """Each query's top ``top_n`` scored once by the model; one document run per search weight, and
    the scoring time per query (ms)."""
    runs: dict[float, dict] = {w: {} for w in weights}
    times = []
    for n, qid in enumerate(qids, 1):
        chunks = candidates[qid]
        head = chunks[: reranker.top_n]
        t0 = time.perf_counter()
        raw = reranker.score(queries[qid], [passage_text(c) for c in head]).tolist()
        times.append((time.perf_counter() - t0) * 1000)
        for weight in weights:
            ranked = apply_scores(head, fuse_with_search_rank(raw, weight), len(head), len(head))
            floor = min((c.score for c in ranked), default=0.0)
            tail = [c.model_copy(update={"score": floor - 1 - i}) for i, c in enumerate(chunks[len(head) :])]
            runs[weight][qid] = documents_ranking(ranked + tail)
        if n % 50 == 0:
            print(f"{reranker.model}: {n}/{len(qids)} queries, p50 {statistics.median(times):.0f} ms", file=sys.stderr)
    return runs, times


def hybrid_candidates(local: Settings, queries: dict, qids: list[str]) -> dict:
    with eval_retriever(local, "hybrid") as retriever:
        candidates: dict = {}
        for start in range(0, len(qids), 32):
            batch = qids[start : start + 32]
            per_query, _ = retriever.search_each([queries[q] for q in batch], limit=200, mode="hybrid")
            candidates.update(zip(batch, per_query, strict=True))
    return candidates


def scifact(
    dataset_dir: Path, models: dict[str, Path], limit: int | None, top_n: int, threads: int | None, weight: float
) -> dict:
    """Held-out train queries (the 10% the trainer keeps out): every weight of ``WEIGHT_GRID``, and
    the best one chosen there (never on the test split). Test queries: hybrid alone, each model
    alone (weight 0), fused at ``weight`` (the setting's default) and at the chosen weight.
    Choosing a weight uses train labels: a zero-shot model's zero-shot row is the default one."""
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
    for name, model in models.items():
        reranker = OnnxCrossEncoderReranker(model, top_n=top_n, threads=threads)
        reranker.warm_up()
        train_runs, _ = reranked_runs(reranker, train.queries, train_candidates, held_out, list(WEIGHT_GRID))
        tuning[name] = {f"{w:g}": score(train_qrels, train_runs[w]) for w in WEIGHT_GRID}
        chosen = max(WEIGHT_GRID, key=lambda w: (tuning[name][f"{w:g}"]["ndcg@10"], -abs(w - weight)))
        tuning[name]["chosen_weight"] = chosen
        labels = {0.0: "alone", weight: f"fused with the search rank (weight {weight:g}, the default)"}
        labels.setdefault(chosen, f"fused, weight {chosen:g} (best on held-out train queries)")
        runs, times = reranked_runs(reranker, data.queries, candidates, qids, list(labels))
        for w, label in labels.items():
            rows.append(
                {
                    "name": f"+ {name} reranker, {label}",
                    "model": str(model),
                    "search_weight": w,
                    **score(qrels, runs[w]),
                    "rerank_p50_ms_under_eval": round(statistics.median(times), 1),
                    "training": training_summary(model),
                }
            )
    return {"queries": len(qids), "top_n": top_n, "fusion": "dbsf", "rows": rows, "held_out_train": tuning}


def latency(
    models: dict[str, Path], dataset_dir: Path, queries: int, top_n: int, threads: int | None, weight: float
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
        reranker = OnnxCrossEncoderReranker(model, top_n=top_n, threads=threads, search_weight=weight)
        reranker.warm_up()
        reranker.run(data.queries[qids[0]], per_query[0][:top_n], top_k=top_n)  # first call: allocations
        times = []
        for qid, chunks in zip(qids, per_query, strict=True):
            t0 = time.perf_counter()
            reranker.run(data.queries[qid], chunks[:top_n], top_k=top_n)
            times.append((time.perf_counter() - t0) * 1000)
        p50 = statistics.median(times)
        out[name] = {
            "p50_ms": round(p50, 1),
            "p95_ms": round(percentile(times, 0.95), 1),
            "per_pair_ms": round(p50 / top_n, 2),
            "n": len(times),
            "layers": training_summary(model).get("layers"),
            "model_mb": round((model / "model.onnx").stat().st_size / 1e6, 1),
        }
    return out


def demo(model: Path, dev_path: Path, data_dir: Path, top_n: int, weight: float) -> dict:
    """MRR@10 of each held-out query's source chunk: hybrid order vs reranked (alone and fused)."""
    from llm_twin.training.reranker_data import read_groups

    settings = load_settings(data_dir=data_dir)
    groups = read_groups(dev_path)
    reranker = OnnxCrossEncoderReranker(model, top_n=top_n)
    reranker.warm_up()
    hybrid: list[float] = []
    reranked: list[float] = []
    fused: list[float] = []
    with corpus_searcher(settings, list(settings.collections.values())) as searcher:
        per_query, _ = searcher.search_each([g.query for g in groups], limit=top_n, mode="hybrid")
    for group, chunks in zip(groups, per_query, strict=True):
        source = group.query_id.rsplit(":", 1)[1]
        by_document = source == group.document_id  # a document-level source (a BEIR dataset)
        raw = reranker.score(group.query, [passage_text(c) for c in chunks]).tolist()
        rankings = (
            (chunks, hybrid),
            (apply_scores(chunks, raw, len(chunks), len(chunks)), reranked),
            (apply_scores(chunks, fuse_with_search_rank(raw, weight), len(chunks), len(chunks)), fused),
        )
        for ranking, out in rankings:
            hits = [(c.document_id if by_document else c.id) == source for c in ranking[:10]]
            rank = hits.index(True) if True in hits else None
            out.append(0.0 if rank is None else 1.0 / (rank + 1))
    return {
        "queries": len(groups),
        "methods": sorted({g.method for g in groups}),
        "mrr@10_hybrid": round(statistics.mean(hybrid), 4) if hybrid else None,
        "mrr@10_reranked": round(statistics.mean(reranked), 4) if reranked else None,
        "search_weight": weight,
        "mrr@10_fused": round(statistics.mean(fused), 4) if fused else None,
        "model": str(model),
        "training": training_summary(model),
    }


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
                f"Held-out SciFact *train* queries ({tuning['queries']}, never trained on), nDCG@10 by search-rank "
                f"weight (0 = the model alone; hybrid DBSF alone {tuning['hybrid DBSF']['ndcg@10']}):",
                "",
                "| model | " + " | ".join(f"w={w:g}" for w in WEIGHT_GRID) + " | chosen |",
                "|---|" + "---|" * (len(WEIGHT_GRID) + 1),
            ]
            for name in models:
                cells = " | ".join(str(tuning[name][f"{w:g}"]["ndcg@10"]) for w in WEIGHT_GRID)
                lines.append(f"| {name} | {cells} | {tuning[name]['chosen_weight']:g} |")
            lines.append("")
    if result.get("latency"):
        lines += ["| model | rerank p50 ms | p95 ms | per pair ms | layers | int8 MB |", "|---|---|---|---|---|---|"]
        for name, row in result["latency"].items():
            lines.append(
                f"| {name} | {row['p50_ms']} | {row['p95_ms']} | {row['per_pair_ms']} | {row['layers']} | {row['model_mb']} |"
            )
        lines.append("")
    if result.get("demo"):
        d = result["demo"]
        lines += [
            f"Demo corpus, {d['queries']} held-out synthetic queries ({', '.join(d['methods'])}): "
            f"MRR@10 hybrid {d['mrr@10_hybrid']} -> reranked {d['mrr@10_reranked']} (the model alone), "
            f"{d['mrr@10_fused']} (fused with the search rank, weight {d['search_weight']:g}).",
            "",
        ]
    lines.append(f"Host: {result['host']}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=SHARED_DIR / "data" / "scifact")
    parser.add_argument("--model", action="append", default=[], help="NAME=DIR (repeatable), e.g. synthetic=DIR")
    parser.add_argument("--limit", type=int, default=None, help="First N test queries (default: all 300).")
    parser.add_argument("--top-n", type=int, default=20)
    parser.add_argument(
        "--search-weight", type=float, default=None, help="Fused rows' search-rank weight (default: the setting)."
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--latency-queries", type=int, default=30, help="0 skips the latency part.")
    parser.add_argument(
        "--cost-model", action="append", default=[], help="NAME=DIR timed only (another size), repeatable."
    )
    parser.add_argument("--demo-model", type=Path)
    parser.add_argument("--demo-dev", type=Path, help="dev.jsonl written by `llm-twin train reranker --corpus`.")
    parser.add_argument("--demo-data-dir", type=Path, help="Data dir holding the ingested demo corpus.")
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
    weight = args.search_weight if args.search_weight is not None else load_settings().rerank_search_weight
    if not args.skip_scifact:
        result["scifact"] = scifact(args.dataset, models, args.limit, args.top_n, args.threads, weight)
    if args.latency_queries and (models or cost_only):
        timed = {**models, **cost_only}
        result["latency"] = latency(timed, args.dataset, args.latency_queries, args.top_n, args.threads, weight)
    if args.demo_model and args.demo_dev:
        result["demo"] = demo(
            args.demo_model, args.demo_dev, args.demo_data_dir or load_settings().data_dir, args.top_n, weight
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reranker.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "reranker.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
