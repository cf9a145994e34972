"""Serve first: how soon `llm-twin serve --ingest demo` (what `make demo` runs) serves the page and answers.

    python benchmarks/demo_startup.py --data-dir /tmp/demo-store      # a fresh (empty) data dir

Starts the server in a subprocess on a free loopback port over an empty data dir, exactly as
`make demo` does after its install step, and records on one clock:

- when ``/`` (the page) and ``/health`` first answer (target: within 60 s of the start);
- when ``/ready`` first says ready (models loaded), with the ingest's progress at that moment;
- the first question asked through ``/rag`` (streamed, as the page asks it): time to its first
  token and to its end, and how far the background ingest had got when it answered;
- when the background ingest finishes, its chunks per second, and that figure against the
  stand-alone ingest (``benchmarks/results/ingest.json``, a whole-corpus ``llm-twin ingest``).

Writes ``benchmarks/results/demo_startup.{json,md}`` (``--out PREFIX`` elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from rag import stop_server

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAGE_TARGET_S = 60.0
QUESTION = "What did Guido van Rossum write about pattern matching?"
#: Asked once part of the corpus is in: PEP 8 is among the first documents the ingest writes
#: (pattern matching, PEPs 622-636, comes late), so this one has its evidence early.
QUESTION_WHILE_INGESTING = "What did Guido van Rossum write about naming conventions for Python code?"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


class Clock:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def now(self) -> float:
        return round(time.monotonic() - self.started, 2)


def poll(url: str, process: subprocess.Popen[bytes], timeout_s: float, log: Path) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited ({process.returncode}); log:\n{log.read_text()[-3000:]}")
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return response
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"{url} did not answer 200 within {timeout_s:g} s; log:\n{log.read_text()[-3000:]}")


def ask_streamed(url: str, clock: Clock, question: str = QUESTION) -> dict[str, Any]:
    """One question as the page asks it; first token and end on the benchmark's clock."""
    sent = clock.now()
    first_token: float | None = None
    sources = 0
    answer: list[str] = []
    with httpx.stream("POST", f"{url}/rag", json={"query": question, "stream": True}, timeout=900) as response:
        if response.status_code != 200:
            raise SystemExit(f"/rag answered {response.status_code}: {response.read()[:500]!r}")
        event = ""
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data = json.loads(line.split(":", 1)[1])
                if event == "token":
                    if first_token is None:
                        first_token = clock.now()
                    answer.append(str(data.get("text", data) if isinstance(data, dict) else data))
                elif event == "sources":
                    sources = len(data) if isinstance(data, list) else len(data.get("sources", []))
                elif event == "done" and isinstance(data, dict) and not sources:
                    sources = len(data.get("sources", []))
    return {
        "question": question,
        "sent_s": sent,
        "first_token_s": first_token,
        "done_s": clock.now(),
        "sources": sources,
        "answer_start": "".join(answer)[:300],
    }


def ingest_state(url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{url}/ready", timeout=5).json().get("ingest") or {})


def empty_store(data_dir: Path) -> None:
    """Remove the vectors and the author registry, keep ``models/``: the state right after `make install-models`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for entry in data_dir.iterdir():
        if entry.name == "models":
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data-dir", type=Path, required=True, help="its store is emptied first; installed models are kept"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "demo_startup")
    parser.add_argument("--ingest-timeout-s", type=float, default=3600)
    parser.add_argument("--no-wait-ingest", action="store_true", help="stop after the answers")
    parser.add_argument(
        "--ask-after-chunks",
        type=int,
        default=3000,
        help="ask again once the background ingest has indexed this many chunks (0: only at ready)",
    )
    parser.add_argument("--render", type=Path, help="only write the markdown of an earlier run's JSON")
    args = parser.parse_args()
    if args.render is not None:
        args.out.with_suffix(".md").write_text(markdown(json.loads(args.render.read_text())))
        return

    empty_store(args.data_dir)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path(tempfile.gettempdir()) / f"demo-startup-{port}-serve.log"
    env = dict(os.environ, LLM_TWIN_DATA_DIR=str(args.data_dir), LLM_TWIN_TRACING="none")
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    command = [sys.executable, "-c", "from llm_twin.cli import app; app()", "serve"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--ingest", "demo"]
    load_start = load_average()
    clock = Clock()
    with log.open("wb") as handle:
        process = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        poll(f"{url}/health", process, 300, log)
        health_s = clock.now()
        page = poll(f"{url}/", process, 60, log)
        page_s = clock.now()
        ready = poll(f"{url}/ready", process, 900, log).json()
        ready_s = clock.now()
        at_ready = dict(ready.get("ingest") or {})
        first = ask_streamed(url, clock)
        first["ingest_at_answer"] = ingest_state(url)
        later: dict[str, Any] | None = None
        if args.ask_after_chunks > 0:
            # The answer at ready may come before the first batch is indexed; this one shows what
            # the page answers from a partly built store.
            while True:
                state = ingest_state(url)
                if int(state.get("chunks_done") or 0) >= args.ask_after_chunks or state.get("state") not in (
                    "planning",
                    "running",
                ):
                    break
                time.sleep(2)
            later = ask_streamed(url, clock, QUESTION_WHILE_INGESTING)
            later["ingest_at_answer"] = ingest_state(url)
        done: dict[str, Any] = {}
        done_s: float | None = None
        if not args.no_wait_ingest:
            deadline = time.monotonic() + args.ingest_timeout_s
            while time.monotonic() < deadline:
                done = ingest_state(url)
                if done.get("state") in ("done", "failed"):
                    done_s = clock.now()
                    break
                time.sleep(5)
    finally:
        stop_server(process)

    standalone = json.loads((RESULTS / "ingest.json").read_text()) if (RESULTS / "ingest.json").exists() else {}
    result = {
        "host": f"{platform.machine()} · {os.cpu_count()} CPUs · {platform.python_version()}",
        "load_average_1min": {"start": load_start, "end": load_average()},
        "model": ready.get("model"),
        "page_bytes": len(page.content),
        "health_s": health_s,
        "page_s": page_s,
        "page_within_target": page_s <= PAGE_TARGET_S,
        "ready_s": ready_s,
        "ingest_at_ready": at_ready,
        "first_answer": first,
        "answer_while_ingesting": later,
        "ask_after_chunks": args.ask_after_chunks,
        "ingest_done_s": done_s,
        "ingest_final": done,
        "standalone_ingest": standalone.get("first_ingest"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


def markdown(r: dict[str, Any]) -> str:
    first = r["first_answer"]
    at = first.get("ingest_at_answer") or {}
    final = r["ingest_final"] or {}
    rows = [
        ("`/health` answers", f"{r['health_s']} s", ""),
        (
            "the page (`/`) answers",
            f"{r['page_s']} s",
            f"≤ {PAGE_TARGET_S:g} s: {'yes' if r['page_within_target'] else 'no'}",
        ),
        ("`/ready` (models loaded)", f"{r['ready_s']} s", ""),
        ("first question: first token", f"{first['first_token_s']} s", ""),
        ("first question: answer done", f"{first['done_s']} s", ""),
        (
            "ingest when it answered",
            f"{at.get('state')}: {at.get('chunks_done')}/{at.get('chunks_total')} chunks, "
            f"{at.get('documents_done')}/{at.get('documents_total')} documents",
            "still running: yes" if at.get("state") in ("planning", "running") else "still running: no",
        ),
        ("sources in the first answer", str(first["sources"]), ""),
    ]
    later = r.get("answer_while_ingesting")
    if later:
        at = later.get("ingest_at_answer") or {}
        rows += [
            ("question asked while ingesting", later.get("question", ""), ""),
            (f"asked again after {r['ask_after_chunks']} chunks: first token", f"{later['first_token_s']} s", ""),
            ("asked again: answer done", f"{later['done_s']} s", ""),
            (
                "ingest when it answered again",
                f"{at.get('state')}: {at.get('chunks_done')}/{at.get('chunks_total')} chunks",
                "still running: yes" if at.get("state") in ("planning", "running") else "still running: no",
            ),
            ("sources in that answer", str(later["sources"]), ""),
        ]
    if r["ingest_done_s"] is not None:
        rows.append(
            (
                "background ingest finished",
                f"{r['ingest_done_s']} s ({final.get('state')}, {final.get('chunks_done')} chunks, "
                f"{final.get('chunks_per_s')} chunks/s)",
                "",
            )
        )
    standalone = r.get("standalone_ingest") or {}
    if standalone:
        rows.append(
            (
                "stand-alone ingest (`benchmarks/results/ingest.json`, its own run)",
                f"{standalone.get('seconds')} s ({standalone.get('chunks_per_s')} chunks/s)",
                "",
            )
        )
        if r["ingest_done_s"] is not None and standalone.get("seconds"):
            ratio = r["ingest_done_s"] / standalone["seconds"]
            rows.append(("background ingest ÷ stand-alone ingest (time)", f"{ratio:.2f}", ""))
    lines = [
        "# Demo startup: serve first, ingest in the background",
        "",
        f"`llm-twin serve --ingest demo` (what `make demo` runs after installing) on an empty data dir; model "
        f"`{r['model']}`; {r['host']}; load average (1 min) start {r['load_average_1min']['start']}, end "
        f"{r['load_average_1min']['end']}. Times from the server's start.",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
        f"First answer begins: {first['answer_start'][:200]!r}",
        "",
    ]
    if later:
        lines += [f"Answer while ingesting begins: {later['answer_start'][:300]!r}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
