"""End-to-end RAG benchmark through the real HTTP server.

    python benchmarks/rag.py                                  # 20 demo questions, old and new defaults
    python benchmarks/rag.py --model smollm2-135m-instruct --questions 3   # quick check

Phases:

1. For each configuration (``--configs``, default ``old,new``: the seed's defaults, then today's):
   ``llm-twin serve`` in a subprocess on 127.0.0.1 (a free port) with the configuration's settings
   as environment variables; wait for ``/ready``; each question once over HTTP with streaming:
   client-side time to first token (first ``token`` event) and end-to-end time (``done`` event).
2. Under load (last configuration): 4 concurrent ``/rag`` streams while ``/health`` is polled.
3. Server stopped; the same model loaded in this process: its prefill and decode speeds are
   measured on a fixed prompt (the floor: prompt tokens ÷ prefill speed + new tokens ÷ decode
   speed), then for every question the *same calls* are replayed alone: retrieval builds the
   identical grounded prompt (not timed), then the helper LLM's query expansion (when enabled)
   and the generation are timed with nothing else running.
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
#: The seed's defaults, as settings of today's code (environment variables of the server). The
#: seed's system prompt named the twin (no prefix for the prompt cache to reuse); that one change is
#: not a setting, so "old" here is the old retrieval and context with today's prompt layout.
CONFIGS: dict[str, dict[str, str]] = {
    "old": {
        "LLM_TWIN_K_SPLIT": "balanced",
        "LLM_TWIN_SEARCH_TOPIC_ONLY": "false",
        "LLM_TWIN_RERANK_BACKEND": "none",
        "LLM_TWIN_ALIASES_FILE": "",
        "LLM_TWIN_CONTEXT_SELECTION": "chunks",
        "LLM_TWIN_EVIDENCE_FLOOR": "0",
        "LLM_TWIN_LLM_PROMPT_CACHE_MB": "0",
        "LLM_TWIN_HELPER_LLM_LOCAL_MODEL": "",
        "LLM_TWIN_CONTEXT_LINKS": "true",
        "LLM_TWIN_EXPAND_BELOW_COSINE": "0",
    },
    "new": {},
    # Today's defaults with query expansion on the generation model (the helper shared, not the 0.5B).
    "new-shared-helper": {"LLM_TWIN_HELPER_LLM_LOCAL_MODEL": ""},
    # Today's defaults with a smaller context budget (fewer prompt tokens to read first).
    "new-budget-240": {"LLM_TWIN_CONTEXT_BUDGET_TOKENS": "240"},
    # Today's defaults with the previous, larger context budget.
    "new-budget-320": {"LLM_TWIN_CONTEXT_BUDGET_TOKENS": "320"},
}
#: Speed probe: a fixed prompt of about this many tokens, then this many greedy new tokens.
PROBE_PROMPT_TOKENS = 400
PROBE_NEW_TOKENS = 64
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


def start_server(
    args: argparse.Namespace, port: int, log_path: Path, config: dict[str, str]
) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(server_env(args))
    env.update(config)
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
            # prepare() builds the grounded prompt (untimed). When it expanded the question (expansion
            # runs on demand: not when the question's own search is already close), the expansion is
            # timed once more alone, then the generation. With a helper model of its own the
            # generator's prompt-cache state is as in the server.
            prepared = pipeline.prepare(question, k=body.get("k"), expand_to_n=n)
            expansion_ms = 0.0
            expanded = len(prepared.retrieval.expanded_queries) > 1
            if n > 1 and expanded and expander is not None and expander.llm is not None:
                started = time.perf_counter()
                expander.run(question, n)
                expansion_ms = (time.perf_counter() - started) * 1000
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
    cfg, runs, speeds = report["config"], report["runs"], report["model_speeds"]
    names = list(runs)
    lines = [
        "# RAG benchmark",
        "",
        f"Model `{cfg['model']}` · {cfg['questions']} questions · max_new_tokens {cfg['max_new_tokens']} · "
        f"expand_to_n {cfg['expand_to_n']} · {cfg['cpus']} CPUs ({cfg['cpu']}) · {cfg['platform']}",
        "",
        "Load average (1 min): " + ", ".join(f"{k} {v}" for k, v in cfg["load_average_1m"].items()) + ".",
        "",
        f"Model alone: prefill **{speeds['prefill_tok_s']} tok/s**, decode **{speeds['decode_tok_s']} tok/s**. "
        "Floor = prompt tokens ÷ prefill speed + new tokens ÷ decode speed (the generation call only; "
        "query expansion is model time above it).",
        "",
        "| p50 | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
        "| time to first token ms | " + " | ".join(f"{runs[n]['ttft_ms']['p50']:.0f}" for n in names) + " |",
        "| end-to-end ms | " + " | ".join(f"{runs[n]['e2e_ms']['p50']:.0f}" for n in names) + " |",
        "| prompt tokens | " + " | ".join(f"{runs[n]['prompt_tokens']['p50']:.0f}" for n in names) + " |",
        "| new tokens | " + " | ".join(f"{runs[n]['completion_tokens']['p50']:.0f}" for n in names) + " |",
        "| floor ms | " + " | ".join(f"{runs[n]['floor_ms']['p50']:.0f}" for n in names) + " |",
        "| end-to-end ÷ floor | " + " | ".join(f"{runs[n]['e2e_over_floor_p50']:.2f}" for n in names) + " |",
        "| TTFT ÷ prefill floor | " + " | ".join(f"{runs[n]['ttft_over_prefill_floor_p50']:.2f}" for n in names) + " |",
        "| expansion ms (mean) | "
        + " | ".join(f"{runs[n]['server_stage_means_ms'].get('expansion', 0.0):.0f}" for n in names)
        + " |",
        "| answered without the model | " + " | ".join(str(runs[n]["answered_without_model"]) for n in names) + " |",
        "",
    ]
    for name, r in report.get("ratios", {}).items():
        lines += [
            f"**{name} ÷ {names[0]}**: time to first token p50 **{r['ttft_p50']:.2f}** (target ≤ 0.33: "
            f"{'met' if r['ttft_p50'] <= 1 / 3 else 'NOT met'}), end-to-end p50 **{r['e2e_p50']:.2f}** "
            f"(target ≤ 0.5: {'met' if r['e2e_p50'] <= 0.5 else 'NOT met'}).",
            "",
        ]
    for name in names:
        settings = runs[name]["settings"]
        described = ", ".join(f"{k.removeprefix('LLM_TWIN_').lower()}={v or 'unset'}" for k, v in settings.items())
        lines.append(f"- `{name}`: {described or 'the defaults'}; rerank `{runs[name]['rerank']}`.")
    lines.append("")
    if "overhead" in report:
        over, load = report["overhead"], report["health_under_load"]
        lines += [
            f"Replay of `{over['config']}` with the model alone: **overhead ratio** (Σ end-to-end ÷ Σ model compute "
            f"alone) **{over['ratio_total']:.3f}** (per-question median {over['ratio_p50']:.3f}, max "
            f"{over['ratio_max']:.3f}; target ≤ 1.15: {'met' if over['ratio_total'] <= 1.15 else 'NOT met'}).",
            "",
            f"/health p99 under {load['concurrent_rag']} concurrent /rag: **{load['health_ms']['p99']:.1f} ms** over "
            f"{load['health_ms']['n']} probes ({'met' if load['health_ms']['p99'] <= 50 else 'NOT met'}), "
            f"failures {load['health_failures']}; statuses {load['rag_status']}.",
            "",
        ]
    return "\n".join(lines)


def run_config(
    args: argparse.Namespace, name: str, questions: list[str], body: dict[str, Any], with_load: bool
) -> dict[str, Any]:
    """One server with this configuration: the sequential run, then (optionally) /health under load."""
    port = free_port(args.host)
    url = f"http://{args.host}:{port}"
    log_path = args.out / f"rag-server-{name}.log.tmp"
    print(f"[{name}] starting server on {url} (log: {log_path})", file=sys.stderr)
    process = start_server(args, port, log_path, CONFIGS[name])
    load: dict[str, Any] | None = None
    try:
        ready = wait_ready(url, process, args.ready_timeout)
        print(f"[{name}] ready: {ready}", file=sys.stderr)
        with httpx.Client(timeout=args.request_timeout) as client:
            ask_stream(client, url, WARM_UP_QUESTION, body)  # warm-up, not counted
            sequential = []
            for i, question in enumerate(questions, 1):
                outcome = ask_stream(client, url, question, body)
                print(
                    f"[{name} {i}/{len(questions)}] {outcome.status} e2e {outcome.e2e_ms:.0f} ms, "
                    f"ttft {outcome.ttft_ms or 0:.0f} ms, {outcome.sources} sources, "
                    f"{outcome.prompt_tokens} prompt tokens",
                    file=sys.stderr,
                )
                sequential.append(outcome)
        if with_load:
            load_questions = (questions * CONCURRENT)[:CONCURRENT]
            load = health_under_load(url, load_questions, body, args.request_timeout)
            print(f"[{name}] health under load: {load['health_ms']}", file=sys.stderr)
    finally:
        stop_server(process)
    return {"ready": ready, "sequential": sequential, "load": load}


def stop_server(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """SIGTERM (the server's graceful shutdown), then SIGKILL if it is still there after ``timeout_s``."""
    process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def model_speeds(model: str | None) -> dict[str, float]:
    """Prefill and decode speed of the model alone (tokens/s), greedy, no prompt cache: the floor's terms."""
    from llm_twin.llm.base import GenerationParams
    from llm_twin.llm.factory import build_llm
    from llm_twin.settings import load_settings

    settings = load_settings(**({"llm_model": model} if model else {}), llm_prompt_cache_mb=0)
    llm = build_llm(settings)
    llm.warm_up()
    words = [
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "a",
        "lazy",
        "dog",
        "while",
        "seven",
        "wizards",
        "quietly",
        "judge",
        "boxing",
        "matches",
    ]
    prefill: list[float] = []
    decode: list[float] = []
    try:
        for trial in range(3):
            # A different opening each trial, so no state of the previous one is reused.
            text = f"Trial {trial}. " + " ".join(words[(i + trial) % len(words)] for i in range(PROBE_PROMPT_TOKENS))
            messages = [{"role": "user", "content": f"{text}\nRepeat the last twenty words, then keep going."}]
            prompt_tokens = llm.count_tokens(messages[0]["content"])
            params = GenerationParams(max_new_tokens=PROBE_NEW_TOKENS, temperature=0.0)
            started = time.perf_counter()
            first = 0.0
            pieces = []
            for piece in llm.stream(messages, params):  # type: ignore[arg-type]
                if not pieces:
                    first = time.perf_counter() - started
                pieces.append(piece)
            total = time.perf_counter() - started
            new_tokens = llm.count_tokens("".join(pieces))
            prefill.append(prompt_tokens / first)
            if new_tokens > 1:
                decode.append((new_tokens - 1) / (total - first))
    finally:
        llm.close()
    return {
        "prefill_tok_s": round(statistics.median(prefill), 1),
        "decode_tok_s": round(statistics.median(decode), 1) if decode else 0.0,
    }


def floor_ms(prompt_tokens: int | None, completion_tokens: int | None, speeds: dict[str, float]) -> float:
    """Model time for this prompt and answer at the measured speeds, nothing else."""
    prefill = (prompt_tokens or 0) / max(1e-9, speeds["prefill_tok_s"])
    decode = (completion_tokens or 0) / max(1e-9, speeds["decode_tok_s"])
    return (prefill + decode) * 1000


def config_summary(name: str, run: dict[str, Any], speeds: dict[str, float]) -> dict[str, Any]:
    ok = [s for s in run["sequential"] if s.status == 200]
    answered = [s for s in ok if s.prompt_tokens]  # a refusal below the evidence floor has no model call
    floors = [floor_ms(s.prompt_tokens, s.completion_tokens, speeds) for s in answered]
    prefill_floors = [floor_ms(s.prompt_tokens, 0, speeds) for s in answered]
    stage_keys = sorted({k for s in run["sequential"] for k in s.server_timings_ms})
    return {
        "settings": CONFIGS[name],
        "model": run["ready"].get("model"),
        "rerank": run["ready"].get("rerank", run["ready"].get("rerank_backend")),
        "e2e_ms": summary([s.e2e_ms for s in ok]),
        "ttft_ms": summary([s.ttft_ms for s in ok if s.ttft_ms is not None]),
        "prompt_tokens": summary([float(s.prompt_tokens) for s in answered]),
        "completion_tokens": summary([float(s.completion_tokens or 0) for s in answered]),
        "answered_without_model": len(ok) - len(answered),
        "floor_ms": summary(floors),
        "e2e_over_floor_p50": round(percentile([s.e2e_ms / f for s, f in zip(answered, floors, strict=True)], 50), 3)
        if answered
        else 0.0,
        "ttft_over_prefill_floor_p50": round(
            percentile([(s.ttft_ms or 0) / f for s, f in zip(answered, prefill_floors, strict=True) if f], 50), 3
        )
        if answered
        else 0.0,
        "errors": [
            {"question": s.question, "status": s.status, "error": s.error} for s in run["sequential"] if s.error
        ],
        "server_stage_means_ms": {
            k: round(statistics.fmean([s.server_timings_ms.get(k, 0.0) for s in run["sequential"]]), 1)
            for k in stage_keys
        },
        "per_question": [
            {
                "question": s.question,
                "status": s.status,
                "e2e_ms": round(s.e2e_ms, 1),
                "ttft_ms": round(s.ttft_ms, 1) if s.ttft_ms is not None else None,
                "sources": s.sources,
                "prompt_tokens": s.prompt_tokens,
                "completion_tokens": s.completion_tokens,
                "server_timings_ms": s.server_timings_ms,
                "answer": s.answer,
            }
            for s in run["sequential"]
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="LLM id or .gguf path (default: LLM_TWIN_LLM_MODEL / settings).")
    parser.add_argument("--questions", type=int, default=len(QUESTIONS), help="How many of the 20 questions.")
    parser.add_argument("--data-dir", type=Path, help="Data dir with an ingested store (default: settings).")
    parser.add_argument("--max-new-tokens", type=int, help="Override LLM_TWIN_MAX_NEW_TOKENS.")
    parser.add_argument("--k", type=int, help="Sources per answer (default: settings).")
    parser.add_argument("--expand-to-n", type=int, help="Query variants (default: settings).")
    parser.add_argument("--configs", default="old,new", help="Comma-separated, of: " + ", ".join(CONFIGS))
    parser.add_argument("--no-replay", action="store_true", help="Skip /health under load and the replay alone.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ready-timeout", type=float, default=900.0, help="Seconds to wait for model load.")
    parser.add_argument("--request-timeout", type=float, default=900.0)
    parser.add_argument("--out", type=Path, default=RESULTS, help="Directory for rag.json and rag.md.")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown or not names:
        parser.error(f"--configs: unknown {unknown}; choose from {sorted(CONFIGS)}")
    questions = QUESTIONS[: max(1, min(args.questions, len(QUESTIONS)))]
    load_average = {"start": round(os.getloadavg()[0], 2)}
    body: dict[str, Any] = {key: value for key, value in (("k", args.k), ("expand_to_n", args.expand_to_n)) if value}
    args.out.mkdir(parents=True, exist_ok=True)

    runs: dict[str, dict[str, Any]] = {}
    for name in names:
        runs[name] = run_config(args, name, questions, body, with_load=not args.no_replay and name == names[-1])
        load_average[f"after_{name}"] = round(os.getloadavg()[0], 2)

    print("measuring the model's prefill and decode speed alone", file=sys.stderr)
    speeds = model_speeds(args.model)
    last = names[-1]
    os.environ.update(CONFIGS[last])  # the replay builds the same prompts as the last server did
    alone = [] if args.no_replay else model_alone(args, questions, body)
    load_average["after_replay"] = round(os.getloadavg()[0], 2)

    from llm_twin.settings import load_settings

    os.environ.update(server_env(args))
    settings = load_settings()
    report: dict[str, Any] = {
        "config": {
            "configs": names,
            "model": runs[last]["ready"].get("model"),
            "questions": len(questions),
            "max_new_tokens": settings.max_new_tokens,
            "expand_to_n": body.get("expand_to_n", settings.expand_to_n),
            "k": body.get("k", settings.k),
            "helper_llm_backend": settings.helper_llm_backend,
            "data_dir": str(settings.data_dir),
            "cpus": os.cpu_count(),
            "cpu": cpu_model(),
            "load_average_1m": load_average,
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "model_speeds": speeds,
        "runs": {name: config_summary(name, run, speeds) for name, run in runs.items()},
    }
    if len(names) > 1:
        first = report["runs"][names[0]]
        # Each configuration against the first (the seed's defaults), p50 over p50 from this one run.
        report["ratios"] = {
            name: {
                "ttft_p50": round(report["runs"][name]["ttft_ms"]["p50"] / max(1e-9, first["ttft_ms"]["p50"]), 3),
                "e2e_p50": round(report["runs"][name]["e2e_ms"]["p50"] / max(1e-9, first["e2e_ms"]["p50"]), 3),
            }
            for name in names[1:]
        }
        report["targets"] = {"ttft_p50": round(1 / 3, 3), "e2e_p50": 0.5}
    if alone:
        sequential = runs[last]["sequential"]
        ok = [(s, a) for s, a in zip(sequential, alone, strict=True) if s.status == 200 and a["compute_ms"] > 0]
        ratios = [s.e2e_ms / a["compute_ms"] for s, a in ok]
        report["health_under_load"] = runs[last]["load"]
        report["overhead"] = {
            "config": last,
            "compute_alone_ms": summary([a["compute_ms"] for a in alone]),
            "ttft_alone_ms": summary([a["ttft_ms"] for a in alone if a["ttft_ms"]]),
            "ratio_total": round(sum(s.e2e_ms for s, _ in ok) / max(1e-9, sum(a["compute_ms"] for _, a in ok)), 4),
            "ratio_p50": round(percentile(ratios, 50), 4),
            "ratio_max": round(max(ratios), 4) if ratios else 0.0,
            "token_mismatches": sum(1 for s, a in ok if s.completion_tokens != a["completion_tokens"]),
            "prompt_token_mismatches": sum(1 for s, a in ok if s.prompt_tokens != a["prompt_tokens"]),
            "target": 1.15,
            "alone": alone,
        }
    (args.out / "rag.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (args.out / "rag.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))
    return 0


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    sys.exit(main())
