"""Ingest benchmark: the demo corpus into a fresh store vs the raw embedder on the same chunks.

Writes benchmarks/results/ingest.json and benchmarks/results/ingest.md. All numbers come from one
run of this script (the machines are shared and noisy: compare ratios, not absolute times).

    .venv/bin/python benchmarks/ingest.py [--sample N] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from llm_twin.ingest.pipeline import IngestPipeline
from llm_twin.settings import DEMO_FILES, load_settings

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sample", type=int, default=0, help="Raw-embedder pass on a random sample of N chunks (0: all)."
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="Where to build the store (default: a temp dir, removed)."
    )
    parser.add_argument("--files", type=Path, nargs="*", default=None, help="JSONL files (default: the demo corpus).")
    args = parser.parse_args()

    base = load_settings()
    files = args.files or [base.demo_data_dir / name for name in DEMO_FILES]
    workdir = args.data_dir or Path(tempfile.mkdtemp(prefix="llm-twin-bench-"))
    settings = base.model_copy(update={"data_dir": workdir, "qdrant_url": None})
    try:
        # 1. First ingest into an empty store.
        pipeline = IngestPipeline(settings)
        pipeline.warm_up()  # model load is not ingest work; both passes below start warm
        started = time.perf_counter()
        first = pipeline.run(files)
        first_s = time.perf_counter() - started
        documents, _ = pipeline.read(files)
        texts = [text for doc in documents for _, text in pipeline.chunk(doc)]
        pipeline.close()

        # 2. The raw embedder on the same chunk texts (length-sorted batches, as ingest does).
        sample = texts if not args.sample or args.sample >= len(texts) else random.Random(0).sample(texts, args.sample)
        embedder = pipeline.embedder
        started = time.perf_counter()
        for start in range(0, len(sample), 1024):
            embedder.embed(sample[start : start + 1024])
        raw_s = time.perf_counter() - started

        # 3. Second ingest of the unchanged files.
        pipeline = IngestPipeline(settings)
        started = time.perf_counter()
        second = pipeline.run(files)
        second_s = time.perf_counter() - started
        pipeline.close()
    finally:
        if args.data_dir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    ingest_rate = first.chunks_written / first_s
    raw_rate = len(sample) / raw_s
    result = {
        "files": [str(f) for f in files],
        "counts": first.counts,
        "first_ingest": {
            "seconds": round(first_s, 2),
            "chunks_written": first.chunks_written,
            "chunks_per_s": round(ingest_rate, 2),
            "embed_seconds": round(first.embed_seconds, 2),
        },
        "raw_embedder": {"chunks": len(sample), "seconds": round(raw_s, 2), "chunks_per_s": round(raw_rate, 2)},
        "ingest_vs_raw_embedder": round(ingest_rate / raw_rate, 3),
        "second_ingest": {
            "seconds": round(second_s, 2),
            "documents_skipped": second.documents_skipped,
            "documents_written": second.documents_written,
            "counts_unchanged": second.counts == first.counts,
        },
        "targets": {"ingest_vs_raw_embedder_min": 0.9, "second_ingest_max_s": 30},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ingest.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [
        "| measure | value | target |",
        "|---|---|---|",
        f"| documents (articles / posts / repositories) | {first.counts['articles']} / {first.counts['posts']} / {first.counts['repositories']} | |",
        f"| chunks | {first.counts['chunks']} | |",
        f"| first ingest | {first_s:.1f} s, {ingest_rate:.1f} chunks/s | |",
        f"| raw embedder, same chunks | {raw_rate:.1f} chunks/s ({len(sample)} chunks) | |",
        f"| ingest / raw embedder | {ingest_rate / raw_rate:.2f} | >= 0.90 |",
        f"| second ingest (unchanged) | {second_s:.1f} s, {second.documents_skipped} skipped, {second.documents_written} written | < 30 s |",
    ]
    (RESULTS / "ingest.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
