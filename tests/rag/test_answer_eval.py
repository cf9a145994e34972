"""`llm-twin eval answers`: scoring on hand-made answers, the loader's errors, the runner over the real
pipeline with faked retrieval and LLM, and one run through the CLI with the real SmolLM2 model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llm_fakes import FakeLLM
from llm_twin.cli import app
from llm_twin.domain.documents import EmbeddedChunk
from llm_twin.errors import InvalidInputError
from llm_twin.rag.answer_eval import (
    AnswerEvaluator,
    QAItem,
    QuestionResult,
    balanced_sample,
    build_settings,
    cited_numbers,
    comparison_markdown,
    contains_answer,
    hallucination_key_tokens,
    is_refusal,
    load_answer_dataset,
    load_key_point_questions,
    normalize_answer,
    says_not_in_writing,
    score_answer,
    setting_overrides,
    states_key_point,
    summarize,
    token_f1,
)
from llm_twin.rag.pipeline import NO_SOURCES_ANSWER, RAGPipeline
from llm_twin.retrieval.evaluation import DatasetError
from llm_twin.retrieval.types import AuthorMatch, RetrievalResult
from llm_twin.settings import load_settings

OBEROI = QAItem(
    "q1",
    "The Oberoi family is part of a hotel company that has a head office in what city?",
    ("Delhi",),
    True,
    "Mumbai, the financial capital of India.",
)

# --- scoring -----------------------------------------------------------------------------------


def test_normalisation_is_squad_style():
    assert normalize_answer("The  Arthur's Magazine!") == "arthur s magazine"
    assert normalize_answer("“Dutch–Belgian” TV, an (old) series.") == "dutch belgian tv old series"
    assert normalize_answer("A") == ""


def test_hit_is_whole_words_without_citation_marks():
    assert contains_answer("It was founded in 1844 by Arthur's magazine [1].", ["Arthur's Magazine"])
    assert contains_answer("No, they are not [1].", ["no"])
    assert not contains_answer("It is not known [1].", ["no"])  # "no" is not a word of "not"
    assert not contains_answer("Both are described in [2].", ["2"])  # a citation is no answer
    assert contains_answer("The track is 6.213 km long [1].", ["6.213 km long"])


def test_token_f1():
    assert token_f1("President Richard Nixon", "Richard Nixon") == pytest.approx(0.8)
    assert token_f1("Delhi", "Mumbai") == 0.0
    assert token_f1("the", "a") == 1.0  # both empty after normalisation


@pytest.mark.parametrize(
    "text",
    [
        "The context does not say which magazine was started first.",
        "The provided writing doesn't mention the city [1].",
        "I don’t know from the available writing.",
        "The answer is not mentioned in the context blocks.",
        "There is no information about the head office in the context.",
        "This cannot be determined from the writing.",
        "I'm sorry, but I don't have information about Milhouse's name.",
        "Based on the provided context, there is no mention of the head office.",
        "None of the context blocks mention the year.",
        "It is not possible to determine which magazine was started first.",
        "I do not know from the available writing.",
        NO_SOURCES_ANSWER.format(by=""),
        NO_SOURCES_ANSWER.format(by=" by HotpotQA"),
    ],
)
def test_refusals_are_recognised(text):
    assert says_not_in_writing(text)
    assert is_refusal(text, no_evidence=False)


@pytest.mark.parametrize(
    "text",
    [
        "The head office is in Delhi [1].",
        "The album does not contain ballads [2].",
        "No, they are not from the same country [1].",
        "He said that he did not know the answer at the time [1].",  # reported speech, not the model
        "The wreck could not be found until 1985 [1].",
        "There is no evidence that they met [2].",
    ],
)
def test_answers_are_not_refusals(text):
    assert not says_not_in_writing(text)
    assert not is_refusal(text, no_evidence=False)
    assert is_refusal(text, no_evidence=True)  # the pipeline's own flag wins


def test_citations():
    assert cited_numbers("A [1]. B [2][3]. C [1, 4]. D [x] and [].") == [1, 2, 3, 1, 4]
    sources = ["The Oberoi Group is headquartered in Delhi.", "Mumbai is a city."]
    good = score_answer(OBEROI, "Its head office is in Delhi [1].", sources, no_evidence=False)
    assert good.hit and good.citations == [1] and good.citations_valid and good.cited_source_has_gold
    wrong_block = score_answer(OBEROI, "Its head office is in Delhi [2].", sources, no_evidence=False)
    assert wrong_block.citations_valid and wrong_block.cited_source_has_gold is False
    invalid = score_answer(OBEROI, "Delhi [3].", sources, no_evidence=False)
    assert not invalid.citations_valid and invalid.cited_source_has_gold is None
    uncited = score_answer(OBEROI, "Delhi.", sources, no_evidence=False)
    assert uncited.citations == [] and uncited.citations_valid and uncited.cited_source_has_gold is None


def test_hallucination_uses_the_claims_the_hallucinated_answer_adds():
    keys = hallucination_key_tokens(OBEROI.hallucinated_answer or "", OBEROI.question, OBEROI.answers)
    assert keys == {"mumbai", "india"}  # the names it adds; "financial capital" is embellishment
    assert hallucination_key_tokens("1996, a decade earlier.", "When?", ["2006"]) == {"1996"}
    assert hallucination_key_tokens("a famous musician", "Named after whom?", ["Nixon"]) == {"famous", "musician"}
    stated = score_answer(OBEROI, "The head office is in Mumbai, India's capital [1].", ["x"], no_evidence=False)
    assert stated.hallucination is True and not stated.hit
    assert score_answer(OBEROI, "It is in Mumbai [1].", ["x"], False).hallucination is True  # 1 of 2 key tokens
    assert score_answer(OBEROI, "It is in Pune, near the capital [1].", ["x"], False).hallucination is False
    assert score_answer(OBEROI, "In Delhi, not Mumbai, India [1].", ["x"], False).hallucination is False  # a hit
    refused = score_answer(OBEROI, "The context does not say; maybe Mumbai, India.", ["x"], False)
    assert refused.refusal and refused.hallucination is False and not refused.hit
    plain = QAItem("q2", "Who?", ("Delhi",), True)
    assert score_answer(plain, "Mumbai", [], False).hallucination is None  # nothing to compare with


def test_balanced_sample_alternates_and_fills_up():
    items = [QAItem(f"a{i}", "q", ("x",), True) for i in range(5)] + [QAItem("u0", "q", ("x",), False)]
    assert [i.id for i in balanced_sample(items, 4)] == ["a0", "u0", "a1", "a2"]
    assert balanced_sample(items, None) == items
    assert balanced_sample(items, 99) == items


# --- settings overrides --------------------------------------------------------------------------


def test_setting_overrides():
    assert setting_overrides(["evidence_floor=0", "LLM_TWIN_K=3", "aliases_file="]) == {
        "evidence_floor": "0",
        "k": "3",
        "aliases_file": None,
    }
    with pytest.raises(InvalidInputError, match="did you mean evidence_floor"):
        setting_overrides(["evidence_flor=0"])
    with pytest.raises(InvalidInputError, match="expected key=value"):
        setting_overrides(["evidence_floor"])
    with pytest.raises(InvalidInputError) as error:
        build_settings({"evidence_floor": "2"})
    assert error.value.field == "set" and "EVIDENCE_FLOOR" in error.value.message
    assert build_settings({"context_selection": "chunks", "aliases_file": None}).aliases_file is None


# --- the dataset -------------------------------------------------------------------------------

PASSAGES = [
    ("p1", "Arthur's Magazine (1844–1846) was an American literary periodical published in Philadelphia."),
    ("p2", "The Oberoi Group is a hotel company with its head office in Delhi, India."),
    ("p3", "Crambidae is a family of moths; Indogrammodes is a genus of moths in the Crambidae family."),
]
QUESTIONS = [
    {"id": "q1", "question": "In which city was Arthur's Magazine published?", "answers": ["Philadelphia"],
     "answerable": True, "hallucinated_answer": "Boston, the capital of Massachusetts."},
    {"id": "q2", "question": "Who designed the Sydney Opera House?", "answers": ["Jørn Utzon"],
     "answerable": False, "hallucinated_answer": "Frank Gehry designed it."},
    {"id": "q3", "question": "Where is the head office of the Oberoi Group?", "answers": ["Delhi"],
     "answerable": True, "hallucinated_answer": "Mumbai"},
    {"id": "q4", "question": "What year did the Berlin Wall fall?", "answers": ["1989"], "answerable": False},
]  # fmt: skip


def write_dataset(root: Path, questions: list[dict] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    corpus = [
        {"id": pid, "content_type": "article", "title": pid, "authors": ["HotpotQA"], "text": text}
        for pid, text in PASSAGES
    ]
    (root / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus), encoding="utf-8")
    rows = QUESTIONS if questions is None else questions
    (root / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root


def test_load_dataset(tmp_path):
    data = load_answer_dataset(write_dataset(tmp_path / "tiny"))
    assert data.name == "tiny" and data.documents == 3 and len(data.corpus_sha256) == 64
    assert [i.answerable for i in data.items] == [True, False, True, False]
    assert data.items[3].hallucinated_answer is None and data.items[0].answers == ("Philadelphia",)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda root: (root / "qa.jsonl").unlink(), "qa.jsonl is missing"),
        (lambda root: (root / "corpus.jsonl").unlink(), "corpus.jsonl is missing"),
        (lambda root: (root / "qa.jsonl").write_text('{"id": "q1"\n'), "qa.jsonl:1: invalid JSON"),
        (lambda root: (root / "qa.jsonl").write_text('{"id": "q1", "question": "Q?", "answers": ["Paris"]}\n'),
         "qa.jsonl:1: missing field 'answerable'"),
        (lambda root: (root / "qa.jsonl").write_text('\n{"id": "q1", "question": "Q?", "answers": "Paris", "answerable": true}\n'),
         "qa.jsonl:2: field 'answers' must be a non-empty list"),
        (lambda root: (root / "qa.jsonl").write_text('{"id": "q1", "question": "Q?", "answers": ["Paris"], "answerable": "yes"}\n'),
         "field 'answerable' must be true or false"),
        (lambda root: (root / "qa.jsonl").write_text(2 * '{"id": "q1", "question": "Q?", "answers": ["Paris"], "answerable": true}\n'),
         "qa.jsonl:2: duplicate id 'q1'"),
        (lambda root: (root / "qa.jsonl").write_text(""), "holds no questions"),
        (lambda root: (root / "corpus.jsonl").write_text('{"id": "p1", "content_type": "article"}\n'),
         "corpus.jsonl:1: missing field 'text'"),
    ],
)  # fmt: skip
def test_dataset_errors(tmp_path, mutate, message):
    root = write_dataset(tmp_path / "tiny")
    mutate(root)
    with pytest.raises(DatasetError, match=re.escape(message)):
        load_answer_dataset(root)


def test_not_a_directory(tmp_path):
    with pytest.raises(DatasetError, match="no such directory"):
        load_answer_dataset(tmp_path / "nowhere")


# --- the runner over the real pipeline (retrieval and LLM faked) ---------------------------------


class FakeRetrieval:
    store_backend = "embedded"
    rerank_name = "none"

    def __init__(self, chunks: list[EmbeddedChunk]) -> None:
        self.chunks = chunks

    def warm_up(self) -> None:
        return None

    def run(self, query, k=None, expand_to_n=None, author=None, *, history=()) -> RetrievalResult:
        return RetrievalResult(
            query=query,
            author=AuthorMatch(author=None, reason="test"),
            expanded_queries=[query],
            chunks=list(self.chunks),
            rerank="none",
            timings_ms={"search": 1.0, "total": 1.0},
        )

    def close(self) -> None:
        return None


def passage(text: str) -> EmbeddedChunk:
    return EmbeddedChunk(
        id="c1",
        collection="embedded_articles",
        content_type="article",
        document_id="p2",
        chunk_index=0,
        content=text,
        author_ids=["a"],
        author_full_name="HotpotQA",
    )


def test_evaluator_streams_and_scores_generated_and_pipeline_refusals():
    settings = load_settings(helper_llm_backend="none", expand_to_n=1)
    grounded = RAGPipeline(FakeRetrieval([passage(PASSAGES[1][1])]), FakeLLM("It is in Delhi [1]."), settings)
    result = AnswerEvaluator(grounded).run(OBEROI)
    assert result.score is not None and result.score.hit and not result.score.refusal
    assert result.score.cited_source_has_gold and result.sources == 1
    assert result.ttft_ms is not None and result.total_ms >= result.ttft_ms
    assert result.prompt_tokens and result.error is None

    llm = FakeLLM("unused")
    empty = RAGPipeline(FakeRetrieval([]), llm, settings)  # nothing found: the pipeline refuses itself
    refused = AnswerEvaluator(empty).run(OBEROI)
    assert refused.score is not None and refused.score.no_evidence and refused.score.refusal
    assert refused.prompt_tokens is None and not llm.calls

    withheld = AnswerEvaluator(grounded).run(QAItem("q9", "Where is it?", ("Paris",), False))
    assert withheld.score is not None and not withheld.score.refusal and not withheld.score.hit
    assert summarize([withheld])["invented_unanswerable"] == 1.0
    assert QuestionResult.from_dict(withheld.as_dict()) == withheld  # a saved report can be summarised again

    metrics = summarize([result, refused])
    assert metrics["answer_hit"] == 0.5 and metrics["false_refusal"] == 0.5
    assert metrics["unanswerable"] == 0 and metrics["refusal_unanswerable"] is None
    assert metrics["llm_calls"] == 1 and metrics["cited"] == 1.0 and metrics["citation_valid"] == 1.0
    assert metrics["ttft_ms"]["p50"] is not None


# --- the command line ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "{tmp}/nowhere"], "--dataset: no such directory"),
        (["--set", "evidence_flor=0"], "--set: unknown setting 'evidence_flor' (did you mean evidence_floor?)"),
        (["--set", "evidence_floor=2"], "--set: LLM_TWIN_EVIDENCE_FLOOR"),
        (["--limit", "0"], "--limit: must be at least 1"),
        (["--dataset", "{tmp}/bad"], "qa.jsonl:1: invalid JSON"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, monkeypatch, args, message):
    monkeypatch.setenv("LLM_TWIN_DATA_DIR", str(tmp_path / "data"))
    write_dataset(tmp_path / "bad")
    (tmp_path / "bad" / "qa.jsonl").write_text("{oops\n")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = CliRunner().invoke(app, ["eval", "answers", "--dataset", str(tmp_path / "bad"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.slow
def test_cli_with_the_real_small_model(tmp_path, monkeypatch):
    """Ingest, ask four questions with SmolLM2 through the streamed pipeline, report; a re-run reuses the store."""
    monkeypatch.setenv("LLM_TWIN_DATA_DIR", str(tmp_path / "data"))
    dataset = write_dataset(tmp_path / "tiny")
    args = ["eval", "answers", "--dataset", str(dataset), "--model", "smollm2-135m-instruct", "--json"]
    args += ["--set", "max_new_tokens=24", "--set", "helper_llm_backend=none", "--set", "expand_to_n=1"]
    # as-is: the embedder file unchanged, so a fresh data dir skips building the int8 copy (~15 s on 2 cores).
    args += [
        "--set",
        "rerank_backend=none",
        "--set",
        "embedding_precision=as-is",
        "--out",
        str(tmp_path / "report.json"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["questions"] == 4 and report["answerable"] == 2 and report["unanswerable"] == 2
    assert report["errors"] == 0 and report["model"] == "smollm2-135m-instruct"
    assert report["ingest"]["documents_written"] == 3
    for key in ("answer_hit", "refusal_unanswerable", "false_refusal", "no_evidence_refusals"):
        assert 0.0 <= report[key] <= 1.0
    assert report["total_ms"]["p50"] > 0 and report["ttft_ms"]["p90"] >= report["ttft_ms"]["p50"]
    assert [r["id"] for r in report["results"]] == ["q1", "q2", "q3", "q4"]
    assert all(r["answer"] for r in report["results"])
    assert json.loads((tmp_path / "report.json").read_text())["questions"] == 4
    assert "| answer hit (answerable) |" in (tmp_path / "report.md").read_text()

    again = CliRunner().invoke(app, [*args[:-2], "--limit", "2"])
    assert again.exit_code == 0, again.stderr
    second = json.loads(again.stdout)
    assert second["ingest"]["documents_skipped"] == 3 and second["ingest"]["documents_written"] == 0
    assert [r["answerable"] for r in second["results"]] == [True, False]


def test_comparison_table_has_a_column_per_configuration():
    from llm_twin.rag.answer_eval import AnswerEvalReport

    measured = summarize([AnswerEvaluator(RAGPipeline(FakeRetrieval([]), FakeLLM(), load_settings())).run(OBEROI)])
    empty = summarize([])
    reports = [
        ("old", AnswerEvalReport("d", "m", {}, measured, [])),
        ("new", AnswerEvalReport("d", "m", {}, empty, [])),
    ]
    table = comparison_markdown(reports)
    assert table.splitlines()[0] == "| metric | old | new |"
    assert "| answer hit (answerable) | 0.000 | – |" in table
    assert "| false refusal (answerable) | 1.000 | – |" in table
    assert "key points" not in table  # measured by neither: left out


# --- key-point mode (the twin dev set) ---------------------------------------------------------------

TWIN_DEV = Path(__file__).resolve().parents[2] / "evaluation" / "twin_dev" / "questions.jsonl"
PATTERNS = QAItem(
    "q001",
    "What did Guido van Rossum write about pattern matching?",
    (),
    True,
    key_points=(
        "A match statement compares a subject value against one or more case patterns until a pattern fits.",
        "PEP 622 was split into a specification (PEP 634), a motivation and rationale (PEP 635) and a tutorial (PEP 636).",
        "Pattern matching replaces ad-hoc if/elif chains of isinstance(), len() and hasattr() checks.",
    ),
    answer_doc_ids=("pep-0622", "pep-0634", "pep-0635"),
)


def test_an_answer_that_says_where_states_no_key_point():
    where = "Guido van Rossum wrote about pattern matching in PEP 622, PEP 634 and PEP 635 [1][2]."
    assert not any(states_key_point(where, p, PATTERNS.question) for p in PATTERNS.key_points)
    what = (
        "A match statement compares the subject against case patterns until one fits [1]. It replaces "
        "if/elif chains of isinstance() and len() checks [2]."
    )
    assert [states_key_point(what, p, PATTERNS.question) for p in PATTERNS.key_points] == [True, False, True]
    score = score_answer(PATTERNS, what, ["a", "b"], False, ["pep-0634", "pep-0008"])
    assert score.key_points == pytest.approx(2 / 3) and score.cited_answer_doc and score.hit is False
    assert score_answer(PATTERNS, where, ["a", "b"], False, ["pep-0008", "pep-0020"]).cited_answer_doc is False
    assert score_answer(PATTERNS, "The context does not say.", [], False).key_points == 0.0


def test_the_twin_dev_set_loads():
    items = load_key_point_questions(TWIN_DEV)
    assert len(items) == 90 and all(i.answerable and i.key_points and not i.answers for i in items)
    metrics = summarize([])
    assert metrics["key_points"] is None


def test_key_point_errors(tmp_path, monkeypatch):
    with pytest.raises(DatasetError, match="no such file"):
        load_key_point_questions(tmp_path / "missing.jsonl")
    bad = tmp_path / "questions.jsonl"
    bad.write_text('{"id": "q1", "question": "Q?", "key_points": "one"}\n')
    with pytest.raises(DatasetError, match=r"questions.jsonl:1: field 'key_points' must be a non-empty list"):
        load_key_point_questions(bad)
    monkeypatch.setenv("LLM_TWIN_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(app, ["eval", "answers", "--key-points", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 2 and "error: --key-points: no such file" in result.stderr


def test_evaluator_scores_key_points():
    settings = load_settings(helper_llm_backend="none", expand_to_n=1)
    source = passage("A match statement compares a subject value against case patterns until one fits.")
    where = RAGPipeline(FakeRetrieval([source]), FakeLLM("Guido wrote about pattern matching in [1]."), settings)
    result = AnswerEvaluator(where).run(PATTERNS)
    assert result.score is not None and result.score.key_points == 0.0 and result.score.cited_answer_doc is False
    metrics = summarize([result])
    assert metrics["key_points"] == 0.0 and metrics["key_point_any"] == 0.0 and metrics["answer_hit"] is None
