"""A screenshot of one /rag trace in Arize Phoenix, for the README (``docs/phoenix_trace.png``).

    python scripts/phoenix_screenshot.py --data-dir data            # needs make traces' .venv-phoenix
                                                                    # and a headless Chromium on PATH

1. Phoenix from ``.venv-phoenix`` (``llm-twin traces --no-install``) on a free 127.0.0.1 port, with
   a throw-away working directory;
2. ``llm-twin serve`` (the real app) on another free port, tracing to Phoenix through the standard
   ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``; one /rag question; the server stopped (its spans flushed);
3. Phoenix's GraphQL API gives the project's id; headless Chromium opens the trace's page and saves
   the screenshot.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "What did Guido van Rossum write about pattern matching?"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from llm_twin.cli import app; app()", *args]


def wait_for(url: str, timeout_s: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{process.args!r} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} not ready after {timeout_s:.0f}s")


def project_id(phoenix: str, name: str, timeout_s: float = 60) -> str:
    query = {"query": "query { projects { edges { node { id name traceCount } } } }"}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        edges = httpx.post(f"{phoenix}/graphql", json=query, timeout=10).json()["data"]["projects"]["edges"]
        for edge in edges:
            if edge["node"]["name"] == name and edge["node"].get("traceCount", 1):
                return str(edge["node"]["id"])
        time.sleep(1)
    raise SystemExit(f"project {name!r} has no trace in Phoenix after {timeout_s:.0f}s")


def screenshot(url: str, out: Path, browser: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [
        browser,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--window-size=1600,1000",
        "--virtual-time-budget=20000",
        f"--screenshot={out}",
        url,
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=None, help="An ingested data dir (default: settings).")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "phoenix_trace.png")
    parser.add_argument("--browser", default=shutil.which("chromium") or shutil.which("chromium-browser") or "")
    args = parser.parse_args()
    if not args.browser:
        raise SystemExit("no Chromium found (apt-get install chromium, or --browser PATH)")

    phoenix_port, grpc_port, api_port = free_port(), free_port(), free_port()
    phoenix = f"http://127.0.0.1:{phoenix_port}"
    api = f"http://127.0.0.1:{api_port}"
    with tempfile.TemporaryDirectory(prefix="phoenix-") as work:
        viewer = subprocess.Popen(
            cli(
                "traces",
                "--no-install",
                "--port",
                str(phoenix_port),
                "--grpc-port",
                str(grpc_port),
                "--working-dir",
                work,
            ),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Phoenix runs as its child: stopped as a group below
        )
        try:
            wait_for(f"{phoenix}/healthz", 180, viewer)
            env = os.environ | {
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{phoenix}/v1/traces",
                "LLM_TWIN_LLM_MODEL": args.model,
                "LLM_TWIN_TEMPERATURE": "0",
                "LLM_TWIN_MAX_NEW_TOKENS": "64",
            }
            if args.data_dir:
                env["LLM_TWIN_DATA_DIR"] = str(args.data_dir)
            server = subprocess.Popen(
                cli("serve", "--port", str(api_port), "--log-level", "warning"), cwd=ROOT, env=env
            )
            try:
                wait_for(f"{api}/ready", 600, server)
                response = httpx.post(f"{api}/rag", json={"query": args.question}, timeout=600)
                response.raise_for_status()
                trace_id = response.json()["trace_id"]
                print(json.dumps({"trace_id": trace_id, "answer": response.json()["answer"]}), file=sys.stderr)
            finally:
                server.send_signal(signal.SIGTERM)  # a clean exit flushes the spans
                server.wait(60)
            project = project_id(phoenix, "llm-twin")
            url = f"{phoenix}/projects/{project}/traces/{trace_id}"
            screenshot(url, args.out, args.browser)
            print(f"{url} -> {args.out}", file=sys.stderr)
        finally:
            os.killpg(viewer.pid, signal.SIGTERM)
            viewer.wait(30)


if __name__ == "__main__":
    main()
