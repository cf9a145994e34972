"""Answer quality of the old and the new defaults, side by side, in one process: `llm-twin eval answers`
on HaluEval (issue 14's refusal targets).

    python benchmarks/answers.py                      # 40 questions (20 answerable, 20 withheld)
    python benchmarks/answers.py --limit 6 --model smollm2-135m-instruct   # quick check

Both configurations answer the same balanced sample (answerable and withheld in turn) through the
real streamed /rag pipeline, greedily (``temperature=0``) so that a difference is the settings', not
sampling's. The old defaults are today's code with the settings from before the latency work (whole
chunks, no evidence floor, no prompt cache, the balanced k split, no reranker, the search text with
the author's name, no aliases file); the system prompt is today's in both. Between the two runs the
loaded model is dropped, so each loads with its own prompt-cache setting.

Writes ``benchmarks/results/answers.json`` (metrics and every answer) and ``answers.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from llm_twin.llm.llama_cpp import clear_llama_cache
from llm_twin.rag.answer_eval import (
    AnswerEvalReport,
    QuestionResult,
    build_settings,
    comparison_markdown,
    load_answer_dataset,
    run_answer_eval,
    summarize,
)
from llm_twin.settings import SHARED_DIR, Settings

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

#: Settings before issue 14 (each a field of Settings; ``build_settings`` rejects unknown ones).
OLD_DEFAULTS: dict[str, Any] = {
    "context_selection": "chunks",
    "evidence_floor": 0.0,
    "llm_prompt_cache_mb": 0,
    "k_split": "balanced",
    "search_topic_only": False,
    "rerank_backend": "none",
    "aliases_file": None,
    "context_links": True,
    "helper_llm_local_model": None,
    "expand_below_cosine": 0.0,
}
#: Both runs: greedy decoding, so the comparison is deterministic.
COMMON: dict[str, Any] = {"temperature": 0.0}
TARGETS = {"refusal_unanswerable": 0.8, "false_refusal": 0.1}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_configuration(name: str, overrides: dict[str, Any], args: argparse.Namespace) -> AnswerEvalReport:
    settings: Settings = build_settings({**COMMON, **overrides, **({"llm_model": args.model} if args.model else {})})
    dataset = load_answer_dataset(args.dataset)
    done = [0]

    def progress(result: Any) -> None:
        done[0] += 1
        state = (
            "refused"
            if result.score and result.score.refusal
            else ("hit" if result.score and result.score.hit else "-")
        )
        print(
            f"  {name} {done[0]:>3}/{args.limit} {result.id} {'answerable' if result.answerable else 'withheld':10} "
            f"{state:7} ttft {((result.ttft_ms or 0) / 1000):5.1f} s total {result.total_ms / 1000:5.1f} s",
            file=sys.stderr,
            flush=True,
        )

    print(f"{name}: {json.dumps(overrides)}", file=sys.stderr, flush=True)
    report = run_answer_eval(settings, dataset, args.limit, overrides=overrides, on_result=progress)
    clear_llama_cache()  # the next configuration loads the model with its own prompt-cache setting
    return report


def verdict(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    lines = []
    refusal, false_refusal = new.get("refusal_unanswerable"), new.get("false_refusal")
    lines.append(
        f"- refusal on withheld ≥ {TARGETS['refusal_unanswerable']}: {refusal} "
        f"({'met' if refusal is not None and refusal >= TARGETS['refusal_unanswerable'] else 'not met'})"
    )
    lines.append(
        f"- false refusals ≤ {TARGETS['false_refusal']}: {false_refusal} "
        f"({'met' if false_refusal is not None and false_refusal <= TARGETS['false_refusal'] else 'not met'})"
    )
    hit_old, hit_new = old.get("answer_hit"), new.get("answer_hit")
    met = hit_old is not None and hit_new is not None and hit_new >= hit_old
    lines.append(f"- answer hit not lower than old: {hit_new} vs {hit_old} ({'met' if met else 'not met'})")
    return lines


def stage_means(report: AnswerEvalReport) -> str:
    """Mean seconds per question of the stages that take the time (query expansion is the helper LLM)."""
    parts = []
    for stage in ("expansion", "retrieval", "generation"):
        values = [r.stages_ms.get(stage, 0.0) for r in report.results if r.error is None]
        if values:
            parts.append(f"{stage} {sum(values) / len(values) / 1000:.1f}")
    return ", ".join(parts)


def markdown(report: dict[str, Any], old: AnswerEvalReport, new: AnswerEvalReport) -> str:
    env = report["environment"]
    old_settings = ", ".join(f"`{k}={v}`" for k, v in OLD_DEFAULTS.items())
    return "\n".join(
        [
            "# Answer evaluation: old and new defaults (HaluEval)",
            "",
            f"Model `{report['model']}` · {report['limit']} questions of `{report['dataset']}` (answerable and "
            f"withheld in turn) · temperature 0 · {env['cpus']} CPUs ({env['cpu_model']}) · {env['date']}",
            "",
            comparison_markdown([("old defaults", old), ("new defaults", new)]).rstrip(),
            "",
            *([report["note"], ""] if report.get("note") else []),
            "Targets for the new defaults (issue 14):",
            *verdict(old.metrics, new.metrics),
            "",
            f"Old defaults: {old_settings} (today's prompt). New defaults: the settings as shipped.",
            f"Load average (1 min) start / after old / after new: {env['load_average_1m']['start']} / "
            f"{env['load_average_1m']['after_old']} / {env['load_average_1m']['after_new']} on {env['cpus']} CPUs. "
            f"Wall time {report['seconds']:.0f} s."
            + (
                f" Metrics summarised again from the same answers on {report['rescored']}."
                if "rescored" in report
                else ""
            ),
            f"Stage means per question (s; retrieval includes the query expansion by the helper LLM, generation "
            f"is 0 when the answer needed no LLM call): old: {stage_means(old)}; new: {stage_means(new)}.",
            "",
            "Scoring (`src/llm_twin/rag/answer_eval.py`): answer hit = a gold answer in the answer as whole words after "
            "SQuAD normalisation, citation marks removed, refusals excluded; refusal = the pipeline answered without "
            "sources (evidence below the floor, no LLM call) or the model said the writing does not hold the answer; "
            "invented answer = a withheld question answered with neither a refusal nor the gold answer; HaluEval's "
            "hallucinated answer stated = not a refusal, not a hit, and at least half of the names and numbers it adds to "
            "the question and the gold answer (a lower bound: the model invents other answers than HaluEval's); "
            "citation validity = every [n] names a returned source. Times are "
            "measured on the streamed answer (time to first token: what a person waits for).",
            "",
        ]
    )


def saved_report(data: dict[str, Any]) -> AnswerEvalReport:
    """A configuration's report from the JSON, summarised again by today's ``summarize``."""
    results = [QuestionResult.from_dict(r) for r in data["results"]]
    return AnswerEvalReport(
        data["dataset"], data["model"], data["overrides"], summarize(results), results, data["ingest"], data["seconds"]
    )


def write(report: dict[str, Any], old: AnswerEvalReport, new: AnswerEvalReport, out: Path) -> None:
    report["configurations"] = {"old": old.as_dict(), "new": new.as_dict()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    text = markdown(report, old, new)
    out.with_suffix(".md").write_text(text, encoding="utf-8")
    sys.stdout.write(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=SHARED_DIR / "data" / "qa" / "halueval")
    parser.add_argument("--limit", type=int, default=40, help="Questions (balanced); default 40.")
    parser.add_argument("--model", default=None, help="Generation model (default: LLM_TWIN_LLM_MODEL or the default).")
    parser.add_argument(
        "--out", type=Path, default=RESULTS / "answers.json", help="JSON file; the .md goes next to it."
    )
    parser.add_argument("--note", default=None, help="A sentence for the report (e.g. why the limit is smaller).")
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="No model runs: summarise the answers saved in --out again (after a change of the metrics).",
    )
    args = parser.parse_args(argv)
    if args.rescore:
        report = json.loads(args.out.read_text(encoding="utf-8"))
        report["rescored"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        if args.note is not None:
            report["note"] = args.note
        configurations = report["configurations"]
        write(report, saved_report(configurations["old"]), saved_report(configurations["new"]), args.out)
        return 0
    if args.limit < 2:
        parser.error("--limit must be at least 2 (one answerable, one withheld)")
    if not (args.dataset / "qa.jsonl").is_file():
        parser.error(f"no HaluEval set at {args.dataset} (pass --dataset)")

    started = time.perf_counter()
    load = {"start": round(os.getloadavg()[0], 2)}
    old = run_configuration("old", OLD_DEFAULTS, args)
    load["after_old"] = round(os.getloadavg()[0], 2)
    new = run_configuration("new", {}, args)
    load["after_new"] = round(os.getloadavg()[0], 2)

    report = {
        "dataset": old.dataset,
        "model": old.model,
        "limit": args.limit,
        "seconds": round(time.perf_counter() - started, 1),
        "environment": {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "cpus": os.cpu_count(),
            "cpu_model": cpu_model(),
            "platform": platform.platform(),
            "load_average_1m": load,
        },
        "common": COMMON,
        "old_defaults": OLD_DEFAULTS,
        "note": args.note,
    }
    write(report, old, new, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
