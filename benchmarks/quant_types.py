"""Does another quantisation of the generation model prefill faster on this CPU?

    python benchmarks/quant_types.py                 # Q4_K_M (packaged) vs Q4_0 and Q8_0 requantized from it

Requantizes the packaged Qwen2.5-Coder-1.5B Q4_K_M with llama.cpp's own quantizer (``allow_requantize``;
Q8_0 from Q4_K_M keeps the Q4_K_M weights almost exactly, Q4_0 loses a little more), then times the
prefill of the same 500-token prompt (best of two) and 32 greedy new tokens on 2 threads, one model
after another in one process. Only the ratios between types matter: the host's speed varies.

Writes ``benchmarks/results/quant_types.{json,md}``; the requantized files go to ``--work-dir``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import llama_cpp
from llama_cpp import Llama

from llm_twin.models import resolve_gguf
from llm_twin.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TYPES = {"q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, "q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0}
PROMPT_TOKENS = 500
NEW_TOKENS = 32


def requantize(source: Path, kind: str, work_dir: Path) -> Path:
    target = work_dir / f"{source.stem}-as-{kind}.gguf"
    if target.is_file():
        return target
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = TYPES[kind]
    params.allow_requantize = True
    params.nthread = os.cpu_count() or 1
    code = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params))
    if code != 0:
        raise SystemExit(f"llama_model_quantize {kind} failed with {code}")
    return target


def measure(path: Path, prompt: str, threads: int) -> dict[str, Any]:
    model = Llama(str(path), n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
    tokens = model.tokenize(prompt.encode())[:PROMPT_TOKENS]
    prefill = []
    for _ in range(2):
        model.reset()
        started = time.perf_counter()
        model.eval(tokens)
        prefill.append(time.perf_counter() - started)
    model.reset()
    model.eval(tokens)
    started = time.perf_counter()
    for _ in range(NEW_TOKENS):
        token = model.sample(temp=0.0)
        model.eval([token])
    decode = time.perf_counter() - started
    return {
        "file": path.name,
        "mib": path.stat().st_size // 2**20,
        "prefill_tok_s": round(len(tokens) / min(prefill), 1),
        "decode_tok_s": round(NEW_TOKENS / decode, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/llm-twin-quant"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "quant_types")
    parser.add_argument("--note", default="", help="A sentence for the report (e.g. what else ran).")
    args = parser.parse_args()
    settings = load_settings()
    source = resolve_gguf(settings.llm_model, settings.models_dir)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    prompt = (ROOT / "README.md").read_text(encoding="utf-8")
    load_start = os.getloadavg()[0]
    rows = {"q4_k_m (packaged)": measure(source, prompt, args.threads)}
    for kind in TYPES:
        rows[kind] = measure(requantize(source, kind, args.work_dir), prompt, args.threads)
    report = {
        "model": settings.llm_model,
        "host": f"{platform.machine()} · {os.cpu_count()} CPUs",
        "threads": args.threads,
        "load_average_1min": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)},
        "note": args.note,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    base = rows["q4_k_m (packaged)"]["prefill_tok_s"]
    lines = [
        "# Quantisation types: prefill and decode speed of the generation model",
        "",
        f"`{report['model']}`, {report['host']}, {args.threads} threads, load average (1 min) "
        f"{report['load_average_1min']['start']} → {report['load_average_1min']['end']}. {args.note}",
        "",
        f"| type | MiB | prefill tok/s ({PROMPT_TOKENS} tokens) | vs Q4_K_M | decode tok/s |",
        "|---|---:|---:|---:|---:|",
        *[
            f"| {name} | {r['mib']} | {r['prefill_tok_s']} | {r['prefill_tok_s'] / base:.2f} | {r['decode_tok_s']} |"
            for name, r in rows.items()
        ],
        "",
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
