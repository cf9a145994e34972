"""Retrieval evaluation for the twin's own questions ("What did *X* write about *Y*?", issue 13).

SciFact (``evaluation.py``) measures one collection without an author filter. The twin's job is
different: three collections at once, an author resolved from the question, and k chunks handed to
the generator. This module runs a questions file (``evaluation/twin_dev/questions.jsonl``) through
the real ``RetrievalPipeline`` over an existing store (it never ingests) and scores each answer.

Metrics, per question, then averaged over questions (and per phrasing and content type):

* **hit@k**: some chunk among the k comes from an answer document.
* **MRR**: 1 / rank of the first chunk from an answer document (0 when none).
* **nDCG@k**: binary relevance per chunk (from an answer document: 1). The ideal ranking puts a
  relevant chunk in each of the first ``min(k, R)`` ranks, where ``R`` is how many chunks the answer
  documents have in the store (the registry's chunk counts). So a one-chunk commit scores 1 when it
  ranks first, and a long PEP scores 1 only when every slot is one of its chunks: the standard
  definition with the store's chunks as the judged set.
* **context precision**: share of the returned chunks that come from an answer document (0 when
  nothing was returned): how much of what the generator reads is on target.
* **author accuracy**: a question naming a person is right when the resolved person goes by the
  question's ``author`` or one of its ``author_aliases`` (the resolved author's shown name or any
  name linked to it); a question naming nobody is right when nobody is resolved. Reported next to
  it, **author filter coverage**: the author filter includes the canonical name (where the PEPs
  and READMEs are filed), which a resolution to a commit-only spelling misses.
* **shares**: of all returned chunks, the share per content type and per collection.
* **latency**: p50/p90 of ``timings_ms["total"]`` (the retrieval stage, warm).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llm_twin.domain.authors import Author, author_id
from llm_twin.domain.documents import CONTENT_TYPES, EmbeddedChunk
from llm_twin.domain.limits import check_request
from llm_twin.retrieval.evaluation import DatasetError, json_lines
from llm_twin.retrieval.pipeline import RetrievalPipeline
from llm_twin.settings import Settings
from llm_twin.store.registry import AuthorRegistry

#: The field a CLI maps to its option (``--questions``) in error messages.
QUESTIONS_FIELD = "questions"
PHRASINGS = ("title-like", "paraphrase")
#: Settings that decide what retrieval returns; copied into every report so runs can be compared.
REPORTED_SETTINGS = (
    "search_mode",
    "fusion",
    "k_split",
    "max_chunks_per_document",
    "rerank_backend",
    "rerank_top_n",
    "rerank_relative_floor",
    "search_topic_only",
    "aliases_file",
    "self_query_llm",
    "hyde",
    "helper_llm_backend",
    "embedding_model",
    "prefetch_limit",
    "rrf_k",
)


# --- the questions file --------------------------------------------------------------------------
@dataclass(frozen=True)
class TwinQuestion:
    """One line of a questions file (schema: ``evaluation/twin_dev/README.md``)."""

    id: str
    question: str
    author: str | None
    answer_doc_ids: tuple[str, ...]
    author_aliases: tuple[str, ...] = ()
    content_type: str | None = None
    phrasing: str | None = None
    key_points: tuple[str, ...] = ()
    notes: str = ""
    line: int = 0


def _string_list(value: object, where: str, name: str, *, non_empty: bool = False) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise DatasetError(f"{where}: field {name!r} must be a list of non-empty strings", QUESTIONS_FIELD)
    if non_empty and not value:
        raise DatasetError(f"{where}: field {name!r} must not be empty", QUESTIONS_FIELD)
    return tuple(item.strip() for item in value)


def _optional_string(row: dict[str, Any], where: str, name: str, allowed: Sequence[str] = ()) -> str | None:
    value = row.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"{where}: field {name!r} must be a non-empty string or null", QUESTIONS_FIELD)
    if allowed and value not in allowed:
        raise DatasetError(
            f"{where}: field {name!r} must be one of {', '.join(allowed)} (got {value!r})", QUESTIONS_FIELD
        )
    return value.strip()


def parse_question(row: object, where: str, line: int = 0) -> TwinQuestion:
    """One question from its JSON object; ``where`` ("file:line") starts every error message.

    Required: ``id``, ``question``, ``author`` (a name, or null for a question naming nobody: a
    missing key is an error, so "no author" is always said, not assumed) and ``answer_doc_ids``.
    The rest of the dev-set schema is optional here: retrieval does not need key points.
    """
    if not isinstance(row, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(row).__name__}", QUESTIONS_FIELD)
    for name in ("id", "question", "author", "answer_doc_ids"):
        if name not in row:
            raise DatasetError(f"{where}: missing field {name!r}", QUESTIONS_FIELD)
    qid, text = row["id"], row["question"]
    if not isinstance(qid, str) or not qid.strip():
        raise DatasetError(f"{where}: field 'id' must be a non-empty string", QUESTIONS_FIELD)
    if not isinstance(text, str) or not text.strip():
        raise DatasetError(f"{where}: field 'question' must be a non-empty string", QUESTIONS_FIELD)
    notes = row.get("notes", "")
    return TwinQuestion(
        id=qid.strip(),
        question=text.strip(),
        author=_optional_string(row, where, "author"),
        answer_doc_ids=_string_list(row["answer_doc_ids"], where, "answer_doc_ids", non_empty=True),
        author_aliases=_string_list(row.get("author_aliases", []), where, "author_aliases"),
        content_type=_optional_string(row, where, "content_type", CONTENT_TYPES),
        phrasing=_optional_string(row, where, "phrasing", PHRASINGS),
        key_points=_string_list(row.get("key_points", []), where, "key_points"),
        notes=notes if isinstance(notes, str) else str(notes),
        line=line,
    )


def load_questions(path: Path, limit: int | None = None) -> list[TwinQuestion]:
    """Every question of a JSONL file (blank lines skipped), or a ``DatasetError`` naming the line and field.

    The whole file is validated even with ``limit``, so a bad line is found before a long run, not
    by the next person who runs it without one.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"no such file: {path}", QUESTIONS_FIELD)
    questions: list[TwinQuestion] = []
    seen: dict[str, int] = {}
    for where, number, row in json_lines(path, QUESTIONS_FIELD):
        question = parse_question(row, where, number)
        if question.id in seen:
            raise DatasetError(f"{where}: id {question.id!r} already used on line {seen[question.id]}", QUESTIONS_FIELD)
        seen[question.id] = number
        questions.append(question)
    if not questions:
        raise DatasetError(f"{path}: no questions", QUESTIONS_FIELD)
    return questions[:limit] if limit is not None else questions


# --- metrics (pure) ------------------------------------------------------------------------------
def relevance(document_ids: Sequence[str], answer_doc_ids: Iterable[str]) -> list[int]:
    """Binary relevance of each returned chunk, in rank order: 1 when its document answers."""
    answers = set(answer_doc_ids)
    return [1 if doc in answers else 0 for doc in document_ids]


def hit_at_k(rels: Sequence[int], k: int) -> float:
    return 1.0 if any(rels[:k]) else 0.0


def reciprocal_rank(rels: Sequence[int]) -> float:
    return next((1.0 / rank for rank, rel in enumerate(rels, 1) if rel), 0.0)


def ndcg_at_k(rels: Sequence[int], k: int, relevant_available: int) -> float:
    """nDCG@k with binary gains; the ideal fills ``min(k, relevant_available)`` ranks with relevant
    chunks (``relevant_available``: the answer documents' chunks in the store). 0 when none exist."""
    ideal_hits = min(k, relevant_available)
    if ideal_hits <= 0:
        return 0.0
    dcg = sum(rel / math.log2(rank + 1) for rank, rel in enumerate(rels[:k], 1))
    idcg = sum(1.0 / math.log2(rank + 1) for rank in range(1, ideal_hits + 1))
    return min(1.0, dcg / idcg)


def context_precision(rels: Sequence[int]) -> float:
    """Share of the returned chunks from an answer document; nothing returned is nothing useful (0)."""
    return sum(rels) / len(rels) if rels else 0.0


def _ids(names: Iterable[str | None]) -> set[str]:
    # Compared by author id (the normalised name): "Łukasz Langa" and "lukasz langa" are one name.
    return {author_id(name) for name in names if name}


def author_correct(expected: str | None, expected_aliases: Sequence[str], resolved: Author | None) -> bool:
    """The resolved person is the question's: one of their names (shown or linked; a person's
    ``aliases`` hold the names linked to it) is ``expected`` or one of ``expected_aliases``. A
    question naming nobody is right only when nobody was resolved."""
    if expected is None:
        return resolved is None
    if resolved is None:
        return False
    return bool(_ids([expected, *expected_aliases]) & _ids([resolved.full_name, *resolved.aliases]))


def filter_covers(expected: str | None, filter_author_ids: Sequence[str]) -> bool | None:
    """The author filter includes the canonical name (None for a question naming nobody)."""
    if expected is None:
        return None
    return author_id(expected) in set(filter_author_ids)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# --- per-question and aggregated results ---------------------------------------------------------
@dataclass(frozen=True)
class ReturnedChunk:
    """What the metrics need of a returned chunk."""

    document_id: str
    collection: str
    content_type: str
    author_full_name: str
    relevant: bool

    @classmethod
    def from_chunk(cls, chunk: EmbeddedChunk, answer_doc_ids: Iterable[str]) -> ReturnedChunk:
        return cls(
            document_id=chunk.document_id,
            collection=chunk.collection,
            content_type=chunk.content_type,
            author_full_name=chunk.author_full_name,
            relevant=chunk.document_id in set(answer_doc_ids),
        )


@dataclass
class QuestionScore:
    id: str
    question: str
    phrasing: str | None
    content_type: str | None
    expected_author: str | None
    resolved_author: str | None
    author_reason: str
    author_correct: bool
    author_filter_covers: bool | None
    hit: float
    reciprocal_rank: float
    ndcg: float
    context_precision: float
    first_relevant_rank: int | None
    relevant_available: int
    latency_ms: float
    search_queries: list[str]
    chunks: list[ReturnedChunk]
    warnings: list[str] = field(default_factory=list)
    #: The pipeline's stage timings (self_query, search, rerank, ...; ``total`` is ``latency_ms``).
    timings_ms: dict[str, float] = field(default_factory=dict)


def score_question(
    question: TwinQuestion,
    chunks: Sequence[EmbeddedChunk],
    resolved: Author | None,
    k: int,
    *,
    relevant_available: int,
    filter_author_ids: Sequence[str] = (),
    author_reason: str = "",
    latency_ms: float = 0.0,
    search_queries: Sequence[str] = (),
    warnings: Sequence[str] = (),
    timings_ms: dict[str, float] | None = None,
) -> QuestionScore:
    """All metrics of one question from what retrieval returned (pure: no store, no models)."""
    returned = [ReturnedChunk.from_chunk(c, question.answer_doc_ids) for c in chunks[:k]]
    rels = [int(c.relevant) for c in returned]
    # The store can only be short of chunks we saw when the registry lags it; never below what was seen.
    available = max(relevant_available, sum(rels))
    return QuestionScore(
        id=question.id,
        question=question.question,
        phrasing=question.phrasing,
        content_type=question.content_type,
        expected_author=question.author,
        resolved_author=resolved.full_name if resolved is not None else None,
        author_reason=author_reason,
        author_correct=author_correct(question.author, question.author_aliases, resolved),
        author_filter_covers=filter_covers(question.author, filter_author_ids),
        hit=hit_at_k(rels, k),
        reciprocal_rank=reciprocal_rank(rels),
        ndcg=ndcg_at_k(rels, k, available),
        context_precision=context_precision(rels),
        first_relevant_rank=next((rank for rank, rel in enumerate(rels, 1) if rel), None),
        relevant_available=available,
        latency_ms=latency_ms,
        search_queries=list(search_queries),
        chunks=returned,
        warnings=list(warnings),
        timings_ms=dict(timings_ms or {}),
    )


def _mean(values: Sequence[float]) -> float:
    return round(sum(values) / len(values), 4) if values else 0.0


@dataclass
class GroupMetrics:
    """Means over a group of questions; author figures over the questions they apply to."""

    questions: int
    hit_at_k: float
    mrr: float
    ndcg_at_k: float
    context_precision: float
    #: Questions naming a person: resolved to that person.
    author_accuracy: float | None
    #: Questions naming nobody: nobody resolved.
    no_author_accuracy: float | None
    #: Questions naming a person: the filter includes their canonical name.
    author_filter_coverage: float | None

    @classmethod
    def of(cls, scores: Sequence[QuestionScore]) -> GroupMetrics:
        named = [s for s in scores if s.expected_author is not None]
        nobody = [s for s in scores if s.expected_author is None]
        return cls(
            questions=len(scores),
            hit_at_k=_mean([s.hit for s in scores]),
            mrr=_mean([s.reciprocal_rank for s in scores]),
            ndcg_at_k=_mean([s.ndcg for s in scores]),
            context_precision=_mean([s.context_precision for s in scores]),
            author_accuracy=_mean([float(s.author_correct) for s in named]) if named else None,
            no_author_accuracy=_mean([float(s.author_correct) for s in nobody]) if nobody else None,
            author_filter_coverage=_mean([float(bool(s.author_filter_covers)) for s in named]) if named else None,
        )


def _shares(values: Sequence[str]) -> dict[str, float]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return {key: round(n / len(values), 4) for key, n in sorted(counts.items())} if values else {}


def _breakdown(scores: Sequence[QuestionScore], key: Callable[[QuestionScore], str | None]) -> dict[str, GroupMetrics]:
    groups: dict[str, list[QuestionScore]] = {}
    for score in scores:
        groups.setdefault(key(score) or "unknown", []).append(score)
    return {name: GroupMetrics.of(group) for name, group in sorted(groups.items())}


@dataclass
class TwinEvalResult:
    """One run of a questions file under one configuration."""

    questions_file: str
    k: int
    expand_to_n: int
    rerank: str
    settings: dict[str, Any]
    overall: GroupMetrics
    by_phrasing: dict[str, GroupMetrics]
    by_content_type: dict[str, GroupMetrics]
    content_type_share: dict[str, float]
    collection_share: dict[str, float]
    latency_ms: dict[str, float]
    per_question: list[QuestionScore]
    #: p50 of each pipeline stage (where the time goes: search, rerank, ...).
    stage_p50_ms: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def author_failures(self) -> list[QuestionScore]:
        return [s for s in self.per_question if not s.author_correct]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["author_failures"] = [
            {"id": s.id, "question": s.question, "expected": s.expected_author, "resolved": s.resolved_author}
            for s in self.author_failures
        ]
        return data

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=indent, default=str)


def summarize(
    scores: Sequence[QuestionScore],
    *,
    questions_file: str,
    k: int,
    expand_to_n: int,
    rerank: str,
    settings: dict[str, Any] | None = None,
    seconds: float = 0.0,
) -> TwinEvalResult:
    """Aggregate per-question scores (pure)."""
    returned = [c for s in scores for c in s.chunks]
    latencies = [s.latency_ms for s in scores]
    warnings = sorted({w for s in scores for w in s.warnings})
    stages = sorted({name for s in scores for name in s.timings_ms})
    return TwinEvalResult(
        questions_file=questions_file,
        k=k,
        expand_to_n=expand_to_n,
        rerank=rerank,
        settings=dict(settings or {}),
        overall=GroupMetrics.of(scores),
        by_phrasing=_breakdown(scores, lambda s: s.phrasing),
        by_content_type=_breakdown(scores, lambda s: s.content_type),
        content_type_share=_shares([c.content_type for c in returned]),
        collection_share=_shares([c.collection for c in returned]),
        latency_ms={
            "p50": round(percentile(latencies, 0.5), 2),
            "p90": round(percentile(latencies, 0.9), 2),
            "mean": round(sum(latencies) / len(latencies), 2) if latencies else 0.0,
        },
        per_question=list(scores),
        stage_p50_ms={
            name: round(percentile([s.timings_ms[name] for s in scores if name in s.timings_ms], 0.5), 2)
            for name in stages
        },
        seconds=round(seconds, 2),
        warnings=warnings,
    )


# --- the run -------------------------------------------------------------------------------------
class AnswerChunkCounts:
    """How many chunks each document has in the store (the registry's count; all content types
    summed, since a question's answer documents may be of several). Read-only, cached."""

    def __init__(self, registry_path: Path) -> None:
        self.registry_path = Path(registry_path)
        self._cache: dict[str, int] = {}

    def __call__(self, document_ids: Iterable[str]) -> dict[str, int]:
        missing = [doc for doc in document_ids if doc not in self._cache]
        if missing:
            registry = AuthorRegistry(self.registry_path, read_only=True)
            try:
                for doc in missing:
                    self._cache[doc] = sum(registry.document_chunks(ct, doc) for ct in CONTENT_TYPES)
            finally:
                registry.close()
        return {doc: self._cache[doc] for doc in document_ids}


class TwinRetrievalEvaluator:
    """Haystack-style component: ``score(question)`` runs one question through the pipeline and
    scores it; ``run(questions)`` does all and aggregates. The pipeline is the caller's (not closed)."""

    def __init__(
        self,
        pipeline: RetrievalPipeline,
        k: int | None = None,
        expand_to_n: int | None = None,
        questions_file: str = "",
    ) -> None:
        self.pipeline = pipeline
        self.k = pipeline.settings.k if k is None else k
        self.expand_to_n = pipeline.settings.expand_to_n if expand_to_n is None else expand_to_n
        self.questions_file = questions_file
        self.chunk_counts = AnswerChunkCounts(pipeline.settings.registry_path)

    def warm_up(self) -> None:
        """Open the store and load the models now: a missing store fails before the first question,
        and the first question's latency is not the models' loading time."""
        self.pipeline.warm_up()

    def score(self, question: TwinQuestion) -> QuestionScore:
        result = self.pipeline.run(question.question, k=self.k, expand_to_n=self.expand_to_n)
        counts = self.chunk_counts(question.answer_doc_ids)
        warnings = list(result.warnings)
        absent = [doc for doc, n in counts.items() if n == 0]
        if absent:
            warnings.append(f"answer documents not in the store: {', '.join(absent)}")
        resolved = result.author.author
        filter_ids = self.pipeline.self_query.resolver.author_ids(resolved) if resolved is not None else []
        return score_question(
            question,
            result.chunks,
            resolved,
            self.k,
            relevant_available=sum(counts.values()),
            filter_author_ids=filter_ids,
            author_reason=result.author.reason,
            latency_ms=result.timings_ms.get("total", 0.0),
            search_queries=result.search_queries,
            warnings=[f"{question.id}: {w}" for w in warnings],
            timings_ms=result.timings_ms,
        )

    def summarize(self, scores: Sequence[QuestionScore], seconds: float = 0.0) -> TwinEvalResult:
        settings = self.pipeline.settings
        return summarize(
            scores,
            questions_file=self.questions_file,
            k=self.k,
            expand_to_n=self.expand_to_n,
            rerank=self.pipeline.rerank_name,
            settings=reported_settings(settings),
            seconds=seconds,
        )

    def run(
        self, questions: Sequence[TwinQuestion], on_progress: Callable[[QuestionScore], None] | None = None
    ) -> TwinEvalResult:
        self.warm_up()
        started = time.perf_counter()
        scores = []
        for question in questions:
            scores.append(self.score(question))
            if on_progress is not None:
                on_progress(scores[-1])
        return self.summarize(scores, time.perf_counter() - started)


def reported_settings(settings: Settings) -> dict[str, Any]:
    return {name: _plain(getattr(settings, name)) for name in REPORTED_SETTINGS}


def _plain(value: object) -> object:
    return str(value) if isinstance(value, Path) else value


def build_pipeline(settings: Settings, expand_to_n: int | None = None) -> RetrievalPipeline:
    """The pipeline ``llm-twin retrieve`` would use: a helper LLM only when a step needs one."""
    from llm_twin.llm.factory import build_helper_llm

    n = settings.expand_to_n if expand_to_n is None else expand_to_n
    needs_helper = n > 1 or settings.self_query_llm or settings.hyde or settings.rerank_backend == "llm"
    return RetrievalPipeline(settings, helper_llm=build_helper_llm(settings) if needs_helper else None)


def run_twin_eval(
    settings: Settings,
    questions_path: Path,
    *,
    k: int | None = None,
    expand_to_n: int | None = None,
    limit: int | None = None,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[QuestionScore], None] | None = None,
) -> TwinEvalResult:
    """The `llm-twin eval retrieval --questions FILE` flow over the store in ``settings.data_dir``."""
    questions = load_questions(questions_path, limit)
    # Bad numbers are refused before the store is opened and the models loaded (the pipeline checks again).
    check_request(questions[0].question, k=k, expand_to_n=expand_to_n, expand_max=settings.expand_max)
    pipeline = build_pipeline(settings, expand_to_n)
    try:
        evaluator = TwinRetrievalEvaluator(pipeline, k, expand_to_n, questions_file=str(questions_path))
        evaluator.warm_up()
        if on_start is not None:
            on_start(len(questions))
        return evaluator.run(questions, on_progress)
    finally:
        pipeline.close()
