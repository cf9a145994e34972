"""Crash safety for real: ``llm-twin ingest`` in a subprocess, killed with SIGKILL mid-way, then run
again, ends with exactly the counts of a clean run (no lost and no duplicated chunks)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SRC = Path(__file__).resolve().parents[2] / "src"
#: The real CLI, with small write groups so that a run has many durable steps to be killed between
#: (or in the middle of): the default 1024 chunks would put the whole small corpus in one group.
CLI = "import llm_twin.ingest.pipeline as p; p.GROUP_CHUNKS = 4; from llm_twin.cli import app; app()"


def ingest(data_dir: Path, corpus: list[Path], *, wait: bool = True) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC), "LLM_TWIN_DATA_DIR": str(data_dir)}
    process = subprocess.Popen(
        [sys.executable, "-c", CLI, "ingest", "--json", *map(str, corpus)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if wait:
        process.wait(120)
    return process


def counts(process: subprocess.Popen[str]) -> dict[str, int]:
    assert process.stdout is not None and process.stderr is not None
    out, err = process.stdout.read(), process.stderr.read()
    assert process.returncode == 0, err[-2000:]
    summary = json.loads(out.strip().splitlines()[-1])
    summary.pop("seconds")
    return summary


def recorded_documents(data_dir: Path) -> int:
    """Documents the ingest ledger holds (0 while it does not exist yet or is busy)."""
    path = data_dir / "authors.sqlite"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.05) as db:
            return int(db.execute("SELECT COUNT(*) FROM documents").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_kill_during_ingest_then_rerun_gives_the_clean_counts(small_corpus: list[Path], tmp_path: Path) -> None:
    clean = counts(ingest(tmp_path / "clean", small_corpus))
    total_documents = clean["articles"] + clean["posts"] + clean["repositories"]
    assert clean["chunks"] > total_documents  # several chunks per document: groups end inside the run

    crashed = tmp_path / "crashed"
    process = ingest(crashed, small_corpus, wait=False)
    deadline = time.monotonic() + 60
    while recorded_documents(crashed) == 0 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "ingest finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    assert process.returncode == -signal.SIGKILL
    done_at_kill = recorded_documents(crashed)
    assert 0 < done_at_kill < total_documents  # killed mid-way: some documents in, some not

    rerun = ingest(crashed, small_corpus)
    assert counts(rerun) == clean
