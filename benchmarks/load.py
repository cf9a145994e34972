"""Load benchmark: the bounded wait queue under more concurrent clients than it admits.

    python benchmarks/load.py                                   # 200 requests, concurrency 8 (make load)
    python benchmarks/load.py --requests 20 --out /tmp/load     # a quick check

``llm-twin serve`` runs in a subprocess on 127.0.0.1 (a free port) with SmolLM2 and a queue
smaller than the client count (``--api-workers`` admitted at once, ``--max-queue`` waiting), over
the store in ``--data-dir`` (default: the configured one; run ``llm-twin ingest`` first). An asyncio
httpx client then sends ``--requests`` blocking ``/rag`` calls from ``--concurrency`` clients. A
client that gets a 429 counts it (a deliberate refusal, not a failure) and waits ``Retry-After``
before its next request, as a well-behaved client does; it never re-sends the refused one.

Targets: zero failures other than the 429s, and each 429 fast (p99 under 50 ms): the service says
at once that it is full instead of making the client wait. Reported: status counts, latency
percentiles of answered and refused requests, the Retry-After values, throughput.

Writes ``benchmarks/results/load.json`` and ``benchmarks/results/load.md`` (``--out PREFIX`` elsewhere).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from rag import stop_server

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
REFUSAL_P99_TARGET_MS = 50.0

QUESTIONS = [
    "What did Guido van Rossum write about pattern matching?",
    "What is the purpose of a PEP and who reviews it?",
    "How should I name constants and classes according to the Python style guide?",
    "What does the Zen of Python say about explicit versus implicit code?",
    "What did Łukasz Langa write about type hints and annotations?",
    "How do docstring conventions recommend writing one-line docstrings?",
    "What changes did Brett Cannon make to the PEP repository?",
    "How does the typing_extensions package relate to the typing module?",
]


@dataclass
class Outcome:
    index: int
    status: int  # 0: no HTTP response (connection error, client timeout)
    ms: float
    retry_after: int | None = None
    error: str | None = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.update(
        {
            "LLM_TWIN_LLM_MODEL": args.model,
            "LLM_TWIN_API_WORKERS": str(args.api_workers),
            "LLM_TWIN_MAX_QUEUE": str(args.max_queue),
            "LLM_TWIN_MAX_NEW_TOKENS": str(args.max_new_tokens),
            "LLM_TWIN_TEMPERATURE": "0",
            "LLM_TWIN_HELPER_LLM_BACKEND": "none",  # one model call per request: the queue is the subject
            "LLM_TWIN_EXPAND_TO_N": "1",
            "LLM_TWIN_TRACING": "none",
        }
    )
    if args.data_dir:
        env["LLM_TWIN_DATA_DIR"] = str(args.data_dir)
    return env


def start_server(args: argparse.Namespace, port: int, log: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-c",
        "from llm_twin.cli import app; app()",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    with log.open("wb") as handle:
        return subprocess.Popen(command, env=server_env(args), stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float, log: Path) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited ({process.returncode}); log:\n{log.read_text()[-3000:]}")
        try:
            response = httpx.get(f"{url}/ready", timeout=2)
            if response.status_code == 200:
                return dict(response.json())
            last = response.text
        except httpx.HTTPError as error:
            last = str(error)
        time.sleep(0.5)
    raise SystemExit(f"server not ready after {timeout_s:g}s: {last[:500]} (is the store ingested? see --data-dir)")


async def run_load(url: str, args: argparse.Namespace) -> tuple[list[Outcome], float]:
    outcomes: list[Outcome] = []
    counter = iter(range(args.requests))
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=args.client_timeout_s, limits=limits) as client:

        async def worker(worker_id: int) -> None:
            for index in counter:
                body = {"query": QUESTIONS[index % len(QUESTIONS)], "stream": False}
                started = time.perf_counter()
                try:
                    response = await client.post("/rag", json=body)
                except httpx.HTTPError as error:
                    ms = (time.perf_counter() - started) * 1000
                    outcomes.append(Outcome(index, 0, ms, error=f"{type(error).__name__}: {error}"[:200]))
                    continue
                ms = (time.perf_counter() - started) * 1000
                outcome = Outcome(index, response.status_code, ms)
                if response.status_code == 429:
                    outcome.retry_after = int(response.headers.get("retry-after", "0") or 0)
                elif response.status_code != 200:
                    outcome.error = response.text[:200]
                outcomes.append(outcome)
                if outcome.retry_after:  # a polite client: back off as told, then go on with the next one
                    await asyncio.sleep(outcome.retry_after)

        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(args.concurrency)))
        wall = time.perf_counter() - started
    return outcomes, wall


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return round(ordered[rank], 2)


def summarise(outcomes: list[Outcome], wall: float, args: argparse.Namespace, ready: dict[str, Any]) -> dict[str, Any]:
    answered = [o.ms for o in outcomes if o.status == 200]
    refused = [o.ms for o in outcomes if o.status == 429]
    failures = [o for o in outcomes if o.status not in (200, 429)]
    statuses: dict[str, int] = {}
    for outcome in outcomes:
        statuses[str(outcome.status)] = statuses.get(str(outcome.status), 0) + 1
    retry_after = [o.retry_after for o in outcomes if o.retry_after is not None]
    refused_p99 = percentile(refused, 99)
    return {
        "config": {
            "requests": args.requests,
            "concurrency": args.concurrency,
            "api_workers": args.api_workers,
            "max_queue": args.max_queue,
            "model": ready.get("model", args.model),
            "max_new_tokens": args.max_new_tokens,
            "store": ready.get("store"),
            "rerank": ready.get("rerank"),
            "host": f"{platform.machine()} · {os.cpu_count()} CPUs · {platform.python_version()}",
        },
        "statuses": statuses,
        "failures": len(failures),
        "failure_samples": [asdict(o) for o in failures[:5]],
        "answered": {
            "count": len(answered),
            "p50_ms": percentile(answered, 50),
            "p95_ms": percentile(answered, 95),
            "p99_ms": percentile(answered, 99),
        },
        "refused_429": {
            "count": len(refused),
            "p50_ms": percentile(refused, 50),
            "p99_ms": refused_p99,
            "retry_after_s": {"min": min(retry_after), "max": max(retry_after)} if retry_after else None,
        },
        "wall_s": round(wall, 2),
        "answers_per_s": round(len(answered) / wall, 3) if wall else None,
        "targets": {
            "zero_failures": not failures,
            "refusal_p99_under_50ms": refused_p99 is None or refused_p99 < REFUSAL_P99_TARGET_MS,
        },
    }


def markdown(result: dict[str, Any]) -> str:
    cfg, ans, ref = result["config"], result["answered"], result["refused_429"]
    ok = {True: "yes", False: "**no**"}
    retry = ref["retry_after_s"]
    retry_text = f"{retry['min']}-{retry['max']} s" if retry else "-"
    lines = [
        "# Load: the bounded wait queue",
        "",
        f"{cfg['requests']} blocking `/rag` requests from {cfg['concurrency']} concurrent clients against "
        f"`llm-twin serve` (model `{cfg['model']}`, max_new_tokens {cfg['max_new_tokens']}, rerank {cfg['rerank']}) "
        f"admitting {cfg['api_workers']} at once with {cfg['max_queue']} waiting places. A client that gets a 429 "
        "waits Retry-After, then sends its next request. Host: " + cfg["host"] + ".",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| statuses | {', '.join(f'{k}: {v}' for k, v in sorted(result['statuses'].items()))} | |",
        f"| failures (not 200, not 429) | {result['failures']} | 0: {ok[result['targets']['zero_failures']]} |",
        f"| answered p50 / p95 / p99 | {ans['p50_ms']} / {ans['p95_ms']} / {ans['p99_ms']} ms | |",
        f"| 429 p50 / p99 | {ref['p50_ms']} / {ref['p99_ms']} ms | p99 < {REFUSAL_P99_TARGET_MS:g} ms: "
        f"{ok[result['targets']['refusal_p99_under_50ms']]} |",
        f"| Retry-After | {retry_text} | |",
        f"| wall time, answers/s | {result['wall_s']} s, {result['answers_per_s']} | |",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--api-workers", type=int, default=2, help="LLM_TWIN_API_WORKERS: admitted at once.")
    parser.add_argument("--max-queue", type=int, default=4, help="LLM_TWIN_MAX_QUEUE: waiting places (< concurrency).")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--data-dir", type=Path, default=None, help="An ingested data dir (default: the configured).")
    parser.add_argument("--client-timeout-s", type=float, default=600.0)
    parser.add_argument("--ready-timeout-s", type=float, default=300.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "load", help="Output prefix (.json and .md added).")
    args = parser.parse_args()
    if args.max_queue + args.api_workers >= args.concurrency:
        print("note: the queue holds every client; no 429 will be seen", file=sys.stderr)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = args.out.with_suffix(".server.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    process = start_server(args, port, log)
    try:
        ready = wait_ready(url, process, args.ready_timeout_s, log)
        httpx.post(f"{url}/rag", json={"query": QUESTIONS[0], "stream": False}, timeout=120)  # warm caches
        outcomes, wall = asyncio.run(run_load(url, args))
    finally:
        stop_server(process, 15.0)
    result = summarise(outcomes, wall, args, ready)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    log.unlink(missing_ok=True)
    return 0 if all(result["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
