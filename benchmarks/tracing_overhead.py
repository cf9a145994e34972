"""What tracing to a dead backend costs a request: end-to-end latency with tracing off vs exporting
to an OTLP (and an Opik) endpoint that accepts connections and never answers.

    python benchmarks/tracing_overhead.py                          # SmolLM2, 20 questions x 2 rounds
    python benchmarks/tracing_overhead.py --questions 2 --rounds 1 # smoke run

For each configuration, ``llm-twin serve`` runs in a subprocess (the real app, no fakes) on a free
127.0.0.1 port; after a warm-up question, every question is asked over HTTP with streaming, and
the client times the done event (end to end) and the first token. Configurations run in turn,
``--rounds`` times each (off, otlp, opik, off, otlp, opik, ...), so a drift of the host's load
spreads over all of them. The "black hole" is a socket in this process that accepts connections
and never reads: the exporter's worst case (each batch waits out LLM_TWIN_OTLP_TIMEOUT_S).

At the end of each server's run its ``/metrics`` are read: the spans failed or dropped show that
the exports were attempted and lost, while every request got its answer.

Target (issue 18): end-to-end p50 within 5% of tracing off, and no error reaching the client.
Writes ``benchmarks/results/tracing_overhead.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rag import (
    QUESTIONS,
    WARM_UP_QUESTION,
    ask_stream,
    free_port,
    percentile,
    start_server,
    stop_server,
    summary,
    wait_ready,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def black_hole() -> tuple[socket.socket, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


def configurations(hole: str, names: list[str]) -> dict[str, dict[str, str]]:
    known = {
        "off": {"LLM_TWIN_TRACING": "none"},
        "otlp-unreachable": {"LLM_TWIN_TRACING": "otlp", "LLM_TWIN_OTLP_ENDPOINT": hole},
        "opik-unreachable": {
            "LLM_TWIN_TRACING": "opik",
            "OPIK_URL_OVERRIDE": hole + "/api",
            "OPIK_API_KEY": "benchmark",
            "OPIK_WORKSPACE": "benchmark",
        },
    }
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"--configs: unknown {', '.join(unknown)} (known: {', '.join(known)})")
    return {name: known[name] for name in names}


def span_counts(url: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "llm_twin_spans_total":
                counts[sample.labels["outcome"]] = sample.value
            elif sample.name == "llm_twin_errors_total":
                counts["errors." + sample.labels["code"]] = sample.value
    return counts


def run_config(args: argparse.Namespace, name: str, config: dict[str, str], round_no: int) -> dict[str, Any]:
    port = free_port(args.host)
    url = f"http://{args.host}:{port}"
    log_path = RESULTS / f"tracing_overhead.{name}.log.tmp"
    # Fixed work per question (greedy, and expansion only when asked for: the small model's sampled
    # reformulations vary in length from run to run), so the comparison sees the tracing.
    config = {**config, "LLM_TWIN_EXPAND_TO_N": str(args.expand_to_n)}
    process = start_server(args, port, log_path, config)
    try:
        ready = wait_ready(url, process, args.ready_timeout_s)
        body = {"k": args.k} if args.k else {}
        with httpx.Client(timeout=args.request_timeout_s) as client:
            ask_stream(client, url, WARM_UP_QUESTION, body)
            results = [ask_stream(client, url, q, body) for q in QUESTIONS[: args.questions]]
        spans = span_counts(url)
    finally:
        stop_server(process)
    errors = [r for r in results if r.status != 200 or r.error]
    return {
        "config": name,
        "round": round_no,
        "tracing": ready.get("tracing"),
        "model": ready.get("model"),
        "e2e_ms": [round(r.e2e_ms, 1) for r in results],
        "ttft_ms": [round(r.ttft_ms or 0.0, 1) for r in results],
        "errors": [{"status": r.status, "error": r.error} for r in errors],
        "spans": spans,
    }


def aggregate(runs: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for name in names:
        mine = [run for run in runs if run["config"] == name]
        e2e = [v for run in mine for v in run["e2e_ms"]]
        ttft = [v for run in mine for v in run["ttft_ms"]]
        spans: dict[str, float] = {}
        for run in mine:
            for key, value in run["spans"].items():
                spans[key] = spans.get(key, 0.0) + value
        table[name] = {
            "e2e_ms": summary(e2e),
            "ttft_ms": summary(ttft),
            "client_errors": sum(len(run["errors"]) for run in mine),
            "spans": spans,
        }
    base = table[names[0]]["e2e_ms"]["p50"]
    baseline = [run for run in runs if run["config"] == names[0]]
    for name in names:
        p50 = table[name]["e2e_ms"]["p50"]
        table[name]["e2e_p50_vs_" + names[0]] = round(p50 / base, 3) if base else None
        # The same question in the same round, this configuration over the baseline: what the
        # question costs cancels, so this is steadier than a ratio of two medians.
        mine = [run for run in runs if run["config"] == name]
        ratios = [
            ours / theirs
            for run, base_run in zip(mine, baseline, strict=True)
            for ours, theirs in zip(run["e2e_ms"], base_run["e2e_ms"], strict=True)
            if theirs > 0
        ]
        table[name]["paired_ratio_median"] = round(statistics.median(ratios), 3) if ratios else None
    return table


def markdown(report: dict[str, Any]) -> str:
    names = report["configs"]
    lines = [
        "# Tracing overhead: exporting to a dead backend vs tracing off",
        "",
        f"{report['host']['machine']}, {report['host']['cpus']} CPUs; model {report['model']}; "
        f"{report['questions']} questions x {report['rounds']} round(s), streamed, max_new_tokens={report['max_new_tokens']}. "
        "The backend accepts TCP connections and never answers (LLM_TWIN_OTLP_TIMEOUT_S=2 per batch).",
        "",
        f"| config | e2e p50 ms | e2e p95 ms | ttft p50 ms | p50 vs {names[0]} | median of paired ratios | "
        "client errors | spans exported / failed / dropped |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in names:
        row = report["summary"][name]
        spans = row["spans"]
        lines.append(
            f"| {name} | {row['e2e_ms']['p50']} | {row['e2e_ms']['p95']} | {row['ttft_ms']['p50']} | "
            f"{row['e2e_p50_vs_' + names[0]]} | {row.get('paired_ratio_median')} | {row['client_errors']} | "
            f"{spans.get('exported', 0):.0f} / {spans.get('failed', 0):.0f} / {spans.get('dropped', 0):.0f} |"
        )
    lines += [
        "",
        f"Query expansion: expand_to_n={report.get('expand_to_n')}. Paired ratio: each question's end-to-end time "
        f"over the same question's in the same round with {names[0]}, median over all questions and rounds.",
        "",
        "Target: p50 within 5% of tracing off (ratio <= 1.05) and no client errors.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--data-dir", type=Path, default=None, help="An ingested data dir (default: settings).")
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--configs", default="off,otlp-unreachable,opik-unreachable")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--k", type=int, default=None)
    parser.add_argument(
        "--expand-to-n", type=int, default=1, help="LLM_TWIN_EXPAND_TO_N (1: no sampled expansion, steadier times)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ready-timeout-s", type=float, default=300)
    parser.add_argument("--request-timeout-s", type=float, default=300)
    parser.add_argument("--out", type=Path, default=RESULTS / "tracing_overhead")
    args = parser.parse_args()
    names = [name.strip() for name in args.configs.split(",") if name.strip()]
    hole, hole_url = black_hole()
    try:
        configs = configurations(hole_url, names)
        runs: list[dict[str, Any]] = []
        for round_no in range(1, args.rounds + 1):
            for name, config in configs.items():
                started = time.perf_counter()
                run = run_config(args, name, config, round_no)
                runs.append(run)
                print(
                    f"round {round_no} {name}: e2e p50 {percentile(run['e2e_ms'], 50):.0f} ms, "
                    f"errors {len(run['errors'])}, spans {run['spans']} ({time.perf_counter() - started:.0f}s)",
                    file=sys.stderr,
                )
    finally:
        hole.close()
    report = {
        "configs": names,
        "model": args.model,
        "questions": args.questions,
        "rounds": args.rounds,
        "max_new_tokens": args.max_new_tokens,
        "expand_to_n": args.expand_to_n,
        "host": {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count()},
        "summary": aggregate(runs, names),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
