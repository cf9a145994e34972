"""End-to-end RAG benchmark through the real HTTP server.

    python benchmarks/rag.py                                  # 20 demo questions, settings' model
    python benchmarks/rag.py --model smollm2-135m-instruct --questions 3   # quick check

Phases:

1. ``llm-twin serve`` in a subprocess on 127.0.0.1 (a free port); wait for ``/ready``.
2. Sequential: each question once over HTTP with streaming: client-side time to first token
   (first ``token`` event) and end-to-end time (``done`` event); p50 / p95.
3. Under load: 4 concurrent ``/rag`` streams while ``/health`` is polled; its p50 / p99 / max.
4. Server stopped; the same model loaded in this process; for every question the *same calls*
   replayed alone: retrieval builds the identical grounded prompt (not timed), then the helper
   LLM's query expansion (when enabled) and the generation are timed with nothing else running.
   Overhead ratio = end-to-end ÷ model compute alone (target ≤ 1.15).

Generation is greedy (``temperature=0``) in both runs, so both produce the same tokens; the
number of generated tokens is compared and mismatches are reported. Query expansion samples
(temperature 0.3 in the expander), so its replay can differ slightly in length.

Writes ``benchmarks/results/rag.json`` and ``benchmarks/results/rag.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

#: Questions about the demo corpus: PEPs (articles), PEP commit messages (posts), package READMEs.
QUESTIONS = [
    "What did Guido van Rossum write about pattern matching?",
    "What is the purpose of a PEP and who reviews it?",
    "How should I name constants and classes according to the Python style guide?",
    "What does the Zen of Python say about explicit versus implicit code?",
    "Why were assignment expressions (the walrus operator) added to Python?",
    "What did Łukasz Langa write about type hints and annotations?",
    "How do docstring conventions recommend writing one-line docstrings?",
    "What is the motivation for structural pattern matching with match and case?",
    "What changes did Brett Cannon make to the PEP repository?",
    "How does the typing_extensions package relate to the typing module?",
    "What does PEP 484 say about gradual typing and the Any type?",
    "What did Nathaniel J. Smith propose about async and concurrency?",
    "How should packages declare build dependencies in pyproject.toml?",
    "What did Donald Stufft write about packaging and the Python Package Index?",
    "What is the release schedule for a Python version?",
    "How are f-strings (formatted string literals) specified?",
    "What does the annotated-types package provide?",
    "What did Barry Warsaw change in PEP commits?",
    "What are the rules for maximum line length and indentation in Python code?",
    "How does the data classes PEP generate __init__ and __repr__?",
]
CONCURRENT = 4
#: Asked once before measuring, in both runs (not one of the measured questions, so no run gets
#: llama.cpp's prompt-prefix cache for free on its first question).
WARM_UP_QUESTION = "What is Python?"


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); 0.0 for an empty list."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 1),
        "p95": round(percentile(values, 95), 1),
        "p99": round(percentile(values, 99), 1),
        "mean": round(statistics.fmean(values), 1) if values else 0.0,
        "max": round(max(values), 1) if values else 0.0,
    }


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# --- HTTP side --------------------------------------------------------------------------------------


@dataclass
class StreamResult:
    question: str
    status: int
    e2e_ms: float = 0.0
    ttft_ms: float | None = None
    tokens: int = 0
    answer: str = ""
    server_timings_ms: dict[str, float] = field(default_factory=dict)
    completion_tokens: int | None = None
    prompt_tokens: int | None = None
    sources: int = 0
    error: str | None = None


def ask_stream(client: httpx.Client, url: str, question: str, body: dict[str, Any]) -> StreamResult:
    """POST /rag with stream=true; time the first token event and the done event, client-side."""
    result = StreamResult(question=question, status=0)
    started = time.perf_counter()
    with client.stream("POST", f"{url}/rag", json={"query": question, "stream": True, **body}) as response:
        result.status = response.status_code
        if response.status_code != 200:
            result.error = response.read().decode("utf-8", "replace")[:300]
            result.e2e_ms = (time.perf_counter() - started) * 1000
            return result
        event = None
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data = json.loads(line[5:])
                if event == "sources":
                    result.sources = len(data["sources"])
                elif event == "token":
                    if result.ttft_ms is None:
                        result.ttft_ms = (time.perf_counter() - started) * 1000
                    result.tokens += 1
                elif event == "done":
                    result.e2e_ms = (time.perf_counter() - started) * 1000
                    result.answer = data["answer"]
                    result.server_timings_ms = data["timings_ms"]
                    result.completion_tokens = data["usage"]["completion_tokens"]
                    result.prompt_tokens = data["usage"]["prompt_tokens"]
                elif event == "error":
                    result.error = json.dumps(data)
    if not result.e2e_ms:
        result.e2e_ms = (time.perf_counter() - started) * 1000
    return result


def start_server(args: argparse.Namespace, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(server_env(args))
    command = [
        sys.executable,
        "-c",
        "from llm_twin.cli import app; app()",
        "serve",
        "--host",
        args.host,
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    log = log_path.open("wb")
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


def server_env(args: argparse.Namespace) -> dict[str, str]:
    env = {"LLM_TWIN_TEMPERATURE": "0"}
    if args.model:
        env["LLM_TWIN_LLM_MODEL"] = args.model
    if args.data_dir:
        env["LLM_TWIN_DATA_DIR"] = str(args.data_dir)
    if args.max_new_tokens:
        env["LLM_TWIN_MAX_NEW_TOKENS"] = str(args.max_new_tokens)
    return env


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=10) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"server exited with code {process.returncode}; see the server log")
            try:
                response = client.get(f"{url}/ready")
                if response.status_code == 200:
                    return response.json()
            except httpx.TransportError:
                pass
            time.sleep(0.5)
    raise SystemExit(f"server not ready after {timeout_s:.0f}s")


def health_under_load(url: str, questions: list[str], body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Poll /health (one keep-alive connection) while CONCURRENT /rag streams run."""
    results: list[StreamResult] = []
    lock = threading.Lock()

    def worker(question: str) -> None:
        with httpx.Client(timeout=timeout_s) as client:
            outcome = ask_stream(client, url, question, body)
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=worker, args=(q,)) for q in questions[:CONCURRENT]]
    latencies: list[float] = []
    failures = 0
    with httpx.Client(timeout=10) as client:
        client.get(f"{url}/health")  # open the connection before the load starts
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            started = time.perf_counter()
            try:
                ok = client.get(f"{url}/health").status_code == 200
            except httpx.TransportError:
                ok = False
            latencies.append((time.perf_counter() - started) * 1000)
            failures += not ok
            time.sleep(0.01)
    for thread in threads:
        thread.join()
    return {
        "concurrent_rag": len(threads),
        "rag_status": sorted(r.status for r in results),
        "rag_e2e_ms": summary([r.e2e_ms for r in results]),
        "health_ms": summary(latencies),
        "health_failures": failures,
    }


# --- the model alone ----------------------------------------------------------------------------------


def model_alone(args: argparse.Namespace, questions: list[str], body: dict[str, Any]) -> list[dict[str, Any]]:
    """Replay each question's model calls with nothing else running (same prompts, greedy)."""
    os.environ.update(server_env(args))
    from llm_twin.rag.pipeline import RAGPipeline
    from llm_twin.settings import load_settings

    settings = load_settings()
    pipeline = RAGPipeline.from_settings(settings)
    pipeline.warm_up()
    params = pipeline.params
    n = body.get("expand_to_n") or settings.expand_to_n
    expander = getattr(pipeline.retrieval, "expander", None)
    rows = []
    try:
        # Same warm-up as the server run got (one untimed request).
        warm = pipeline.prepare(WARM_UP_QUESTION, k=body.get("k"), expand_to_n=n)
        if warm.prompt is not None:
            pipeline.llm.complete(warm.prompt.messages, params)
        for question in questions:
            # Same order of model calls as in the server: expansion (timed), then generation (timed).
            # prepare() in between rebuilds the grounded prompt (untimed; its own expansion call
            # repeats the one just timed, so the model's prompt cache state is as in the server).
            expansion_ms = 0.0
            if n > 1 and expander is not None and expander.llm is not None:
                started = time.perf_counter()
                expander.run(question, n)
                expansion_ms = (time.perf_counter() - started) * 1000
            prepared = pipeline.prepare(question, k=body.get("k"), expand_to_n=n)
            generation_ms = ttft_ms = 0.0
            tokens = 0
            text = ""
            if prepared.prompt is not None:
                started = time.perf_counter()
                pieces = []
                for piece in pipeline.llm.stream(prepared.prompt.messages, params):
                    if not pieces:
                        ttft_ms = (time.perf_counter() - started) * 1000
                    pieces.append(piece)
                generation_ms = (time.perf_counter() - started) * 1000
                text = "".join(pieces).strip()
                tokens = pipeline.llm.count_tokens(text) if text else 0
            rows.append(
                {
                    "question": question,
                    "expansion_ms": round(expansion_ms, 1),
                    "generation_ms": round(generation_ms, 1),
                    "ttft_ms": round(ttft_ms, 1),
                    "compute_ms": round(expansion_ms + generation_ms, 1),
                    "completion_tokens": tokens,
                    "prompt_tokens": prepared.prompt.prompt_tokens if prepared.prompt else 0,
                    "sources": len(prepared.prompt.used_chunks) if prepared.prompt else 0,
                }
            )
    finally:
        pipeline.close()
    return rows


# --- report -------------------------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    cfg, seq, load, over = report["config"], report["sequential"], report["health_under_load"], report["overhead"]
    lines = [
        "# RAG benchmark",
        "",
        f"Model `{cfg['model']}` · {cfg['questions']} questions · max_new_tokens {cfg['max_new_tokens']} · "
        f"expand_to_n {cfg['expand_to_n']} · rerank `{cfg['rerank']}` · {cfg['cpus']} CPUs · {cfg['platform']}",
        "",
        "| metric | p50 | p95 | mean | max | target |",
        "|---|---:|---:|---:|---:|---|",
        _row("end-to-end (HTTP, streamed) ms", seq["e2e_ms"]),
        _row("time to first token ms", seq["ttft_ms"]),
        _row("model compute alone ms", over["compute_alone_ms"]),
        _row("model TTFT alone ms", over["ttft_alone_ms"]),
        _row(f"/health under {load['concurrent_rag']} concurrent /rag ms", load["health_ms"], "p99 ≤ 50 ms", p99=True),
        "",
        f"**Overhead ratio** (Σ end-to-end ÷ Σ model compute alone): **{over['ratio_total']:.3f}** "
        f"(per-question median {over['ratio_p50']:.3f}, max {over['ratio_max']:.3f}; target ≤ 1.15: "
        f"{'met' if over['ratio_total'] <= 1.15 else 'NOT met'}).",
        "",
        f"Cross-check within the same requests (end-to-end ÷ model time measured by the server): "
        f"{over['ratio_in_service']:.3f}. Load average (1 min) start / after HTTP run / after replay: "
        f"{cfg['load_average_1m'].get('start')} / {cfg['load_average_1m'].get('after_http')} / "
        f"{cfg['load_average_1m'].get('after_replay')} on {cfg['cpus']} CPUs: a busy machine makes the two runs "
        "incomparable.",
        "",
        f"/health p99 under load: **{load['health_ms']['p99']:.1f} ms** over {load['health_ms']['n']} probes "
        f"({'met' if load['health_ms']['p99'] <= 50 else 'NOT met'}), failures {load['health_failures']}; "
        f"concurrent /rag statuses {load['rag_status']}.",
        "",
        f"Replay vs HTTP run: generated-token count differs for {over['token_mismatches']}, prompt-token count "
        f"for {over['prompt_token_mismatches']} of {cfg['questions']} questions (greedy decoding, but query "
        "expansion samples, which can change the retrieved context).",
        "",
        "Server-side stage means (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in seq["server_stage_means_ms"].items()),
        "",
    ]
    return "\n".join(lines)


def _row(name: str, s: dict[str, float], target: str = "", p99: bool = False) -> str:
    second = s["p99"] if p99 else s["p95"]
    return f"| {name} | {s['p50']:.1f} | {second:.1f}{' (p99)' if p99 else ''} | {s['mean']:.1f} | {s['max']:.1f} | {target} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="LLM id or .gguf path (default: LLM_TWIN_LLM_MODEL / settings).")
    parser.add_argument("--questions", type=int, default=len(QUESTIONS), help="How many of the 20 questions.")
    parser.add_argument("--data-dir", type=Path, help="Data dir with an ingested store (default: settings).")
    parser.add_argument("--max-new-tokens", type=int, help="Override LLM_TWIN_MAX_NEW_TOKENS.")
    parser.add_argument("--k", type=int, help="Sources per answer (default: settings).")
    parser.add_argument("--expand-to-n", type=int, help="Query variants (default: settings).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ready-timeout", type=float, default=900.0, help="Seconds to wait for model load.")
    parser.add_argument("--request-timeout", type=float, default=900.0)
    parser.add_argument("--out", type=Path, default=RESULTS, help="Directory for rag.json and rag.md.")
    args = parser.parse_args(argv)
    questions = QUESTIONS[: max(1, min(args.questions, len(QUESTIONS)))]
    load_average = {"start": round(os.getloadavg()[0], 2)}
    body: dict[str, Any] = {key: value for key, value in (("k", args.k), ("expand_to_n", args.expand_to_n)) if value}

    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port(args.host)
    url = f"http://{args.host}:{port}"
    log_path = args.out / "rag-server.log.tmp"
    print(f"starting server on {url} (log: {log_path})", file=sys.stderr)
    process = start_server(args, port, log_path)
    try:
        ready = wait_ready(url, process, args.ready_timeout)
        print(f"ready: {ready}", file=sys.stderr)
        with httpx.Client(timeout=args.request_timeout) as client:
            ask_stream(client, url, WARM_UP_QUESTION, body)  # warm-up, not counted
            sequential = []
            for i, question in enumerate(questions, 1):
                outcome = ask_stream(client, url, question, body)
                print(
                    f"[{i}/{len(questions)}] {outcome.status} e2e {outcome.e2e_ms:.0f} ms, "
                    f"ttft {outcome.ttft_ms or 0:.0f} ms, {outcome.sources} sources",
                    file=sys.stderr,
                )
                sequential.append(outcome)
        load_questions = (questions * CONCURRENT)[:CONCURRENT]
        load = health_under_load(url, load_questions, body, args.request_timeout)
        print(f"health under load: {load['health_ms']}", file=sys.stderr)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()

    load_average["after_http"] = round(os.getloadavg()[0], 2)
    print("replaying the model calls alone", file=sys.stderr)
    alone = model_alone(args, questions, body)
    load_average["after_replay"] = round(os.getloadavg()[0], 2)

    ok = [(s, a) for s, a in zip(sequential, alone, strict=True) if s.status == 200 and a["compute_ms"] > 0]
    ratios = [s.e2e_ms / a["compute_ms"] for s, a in ok]
    stage_keys = sorted({k for s in sequential for k in s.server_timings_ms})
    from llm_twin.settings import load_settings

    os.environ.update(server_env(args))
    settings = load_settings()
    n_expand = body.get("expand_to_n", settings.expand_to_n)
    in_service = [
        (
            s.e2e_ms,
            s.server_timings_ms.get("expansion", 0.0) * (n_expand > 1) + s.server_timings_ms.get("generation", 0.0),
        )
        for s in sequential
        if s.status == 200
    ]
    report = {
        "config": {
            "model": ready.get("model"),
            "questions": len(questions),
            "max_new_tokens": settings.max_new_tokens,
            "expand_to_n": body.get("expand_to_n", settings.expand_to_n),
            "k": body.get("k", settings.k),
            "rerank": ready.get("rerank", ready.get("rerank_backend")),
            "helper_llm_backend": settings.helper_llm_backend,
            "data_dir": str(settings.data_dir),
            "cpus": os.cpu_count(),
            "load_average_1m": load_average,
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "sequential": {
            "e2e_ms": summary([s.e2e_ms for s in sequential if s.status == 200]),
            "ttft_ms": summary([s.ttft_ms for s in sequential if s.ttft_ms is not None]),
            "errors": [{"question": s.question, "status": s.status, "error": s.error} for s in sequential if s.error],
            "server_stage_means_ms": {
                k: round(statistics.fmean([s.server_timings_ms.get(k, 0.0) for s in sequential]), 1) for k in stage_keys
            },
        },
        "overhead": {
            "compute_alone_ms": summary([a["compute_ms"] for a in alone]),
            "ttft_alone_ms": summary([a["ttft_ms"] for a in alone if a["ttft_ms"]]),
            "ratio_total": round(sum(s.e2e_ms for s, _ in ok) / max(1e-9, sum(a["compute_ms"] for _, a in ok)), 4),
            "ratio_p50": round(percentile(ratios, 50), 4),
            "ratio_max": round(max(ratios), 4) if ratios else 0.0,
            "token_mismatches": sum(1 for s, a in ok if s.completion_tokens != a["completion_tokens"]),
            "prompt_token_mismatches": sum(1 for s, a in ok if s.prompt_tokens != a["prompt_tokens"]),
            "target": 1.15,
            # Same requests, model time as the server measured it (expansion + generation): isolates
            # HTTP, retrieval and queueing overhead from machine drift between the two runs.
            "ratio_in_service": round(sum(e for e, _ in in_service) / max(1e-9, sum(m for _, m in in_service)), 4),
        },
        "health_under_load": load,
        "per_question": [
            {
                "question": s.question,
                "status": s.status,
                "e2e_ms": round(s.e2e_ms, 1),
                "ttft_ms": round(s.ttft_ms, 1) if s.ttft_ms is not None else None,
                "sources": s.sources,
                "completion_tokens": s.completion_tokens,
                "server_timings_ms": s.server_timings_ms,
                "alone": a,
            }
            for s, a in zip(sequential, alone, strict=True)
        ],
    }
    (args.out / "rag.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (args.out / "rag.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
