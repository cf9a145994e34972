"""Self-query: author resolution against a real (temporary) registry, and the helper-LLM fallback."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest

from llm_fakes import FakeLLM
from llm_twin.domain.authors import Author
from llm_twin.errors import InvalidInputError, LLMUnavailableError
from llm_twin.retrieval.author_resolver import AuthorResolver
from llm_twin.retrieval.self_query import SelfQuery, parse_extracted_name
from llm_twin.store.registry import AuthorRegistry

NAMES = [
    "Guido van Rossum",
    "Łukasz Langa",
    "Nathaniel J. Smith",
    "Brett Cannon",
    "Alyssa Coghlan",
    "Nick Coghlan",
    "till",  # one-word commit authors from the demo data: also ordinary words
    "John",
    "kj",
    "Python Packaging Authority",  # organisations from the demo's package metadata
    "The IPython Development Team",
    "Joshua Lock",
]


@pytest.fixture(scope="module")
def registry_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("registry") / "authors.sqlite"
    registry = AuthorRegistry(path)
    authors = [Author.from_name(n) for n in NAMES]
    authors.append(Author.from_name("Larry Hastings").model_copy(update={"aliases": ["larryhastings"]}))
    registry.upsert_authors(authors)
    registry.close()
    return path


@pytest.fixture(scope="module")
def resolver(registry_path: Path) -> AuthorResolver:
    return AuthorResolver.from_registry(registry_path)


def _name(match) -> str | None:
    return match.author.full_name if match.author else None


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What did Guido van Rossum write about pattern matching?", "Guido van Rossum"),
        ("what did guido van rossum write about pattern matching?", "Guido van Rossum"),  # case
        ("What did Lukasz Langa say about Black?", "Łukasz Langa"),  # accents
        ("What does ŁUKASZ LANGA think?", "Łukasz Langa"),
        ("Summarise Langa's proposals", "Łukasz Langa"),  # possessive last name
        ("What is Guido's view on typing?", "Guido van Rossum"),  # possessive first name
        ("What did van Rossum's PEP 3107 say?", "Guido van Rossum"),  # particle + possessive
        ("Nathaniel Smith on structured concurrency", "Nathaniel J. Smith"),  # middle initial dropped
        ("What does Brett Cannon think about packaging?", "Brett Cannon"),
        ("Nick Coghlan on context managers", "Nick Coghlan"),  # longest match beats ambiguous "Coghlan"
        ("commits by larryhastings", "Larry Hastings"),  # handle-shaped lowercase alias
        ("What did @kj change?", "kj"),  # explicit @handle
        ("What did Till write?", "till"),  # capitalised one-word name mid-sentence
        ("What does the Python Packaging Authority recommend?", "Python Packaging Authority"),
        ("README of IPython Development Team", "The IPython Development Team"),  # "The" optional
        ("Summarise Guido's PEP on pattern matching", "Guido van Rossum"),  # possessive before a Title word
        ("What did Lock change in the packaging tools?", "Joshua Lock"),
        ("I read about Python. Guido wrote what?", "Guido van Rossum"),  # a sentence break ends the run
    ],
)
def test_run_finds_the_author(resolver: AuthorResolver, question: str, expected: str) -> None:
    match = resolver.run(question)
    assert _name(match) == expected, match.reason
    assert match.candidates == []
    assert match.matched_text and match.matched_text in question


@pytest.mark.parametrize(
    "question",
    [
        "How do I use asyncio?",
        "wait till the release is out",  # handle "till" as an ordinary word
        "Till the next release, what changes?",  # sentence-initial common word
        "what did john say about it",  # lowercase one-word name
        "tell me about kj",  # too short to be handle-shaped in lower case
        "Who wrote the walrus operator PEP?",
        "How should I package a Python library?",  # "Python" is no first name of the PyPA
        "Which Authority signs the wheels?",
        "How do I start IPython?",
        "What is the Global Interpreter Lock removal plan?",  # "Lock" in a Title Case term
        "Is the Lock Free Queue in the stdlib?",
    ],
)
def test_run_ignores_ordinary_words(resolver: AuthorResolver, question: str) -> None:
    match = resolver.run(question)
    assert match.author is None
    assert match.candidates == []
    assert "no known author" in match.reason


def test_ambiguous_last_name_gives_candidates_and_no_author(resolver: AuthorResolver) -> None:
    match = resolver.run("What does Coghlan think about PEP 8?")
    assert match.author is None
    assert {a.full_name for a in match.candidates} == {"Alyssa Coghlan", "Nick Coghlan"}
    assert "ambiguous" in match.reason
    assert match.matched_text == "Coghlan"


def test_several_authors_give_no_filter(resolver: AuthorResolver) -> None:
    match = resolver.run("Compare Brett Cannon and Guido van Rossum on imports")
    assert match.author is None
    assert {a.full_name for a in match.candidates} == {"Brett Cannon", "Guido van Rossum"}
    assert "several authors" in match.reason


def test_resolve_name_is_lenient_but_never_invents(resolver: AuthorResolver) -> None:
    assert _name(resolver.resolve_name("lukasz langa")) == "Łukasz Langa"
    assert _name(resolver.resolve_name("KJ")) == "kj"  # explicit: no capitalisation rule
    assert _name(resolver.resolve_name("john")) == "John"
    langa = resolver.resolve_name("Łukasz Langa").author
    assert langa is not None and _name(resolver.resolve_name(langa.id)) == "Łukasz Langa"
    ambiguous = resolver.resolve_name("coghlan")
    assert ambiguous.author is None and len(ambiguous.candidates) == 2
    unknown = resolver.resolve_name("Gudio van Rosum")
    assert unknown.author is None
    assert unknown.candidates[0].full_name == "Guido van Rossum"
    assert "closest: Guido van Rossum" in unknown.reason


def test_require_raises_with_the_closest_authors(resolver: AuthorResolver) -> None:
    assert resolver.require("Brett Cannon").author.full_name == "Brett Cannon"
    with pytest.raises(InvalidInputError) as info:
        resolver.require("Bret Canon")
    assert info.value.field == "author"
    assert "Brett Cannon" in str(info.value)


def test_closest_ranks_partial_names(resolver: AuthorResolver) -> None:
    names = [a.full_name for a in resolver.closest("Rossum", n=3)]
    assert names[0] == "Guido van Rossum"
    assert len(names) <= 3
    assert resolver.closest("") == []


def test_registry_is_never_written(tmp_path: Path) -> None:
    path = tmp_path / "authors.sqlite"
    registry = AuthorRegistry(path)
    registry.upsert_authors([Author.from_name("Brett Cannon")])
    registry.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    files_before = sorted(p.name for p in tmp_path.iterdir())

    component = SelfQuery(path)
    component.warm_up()
    assert component.run("What about Nobody Special?").author is None
    assert component.resolve_name("Someone Else").author is None
    assert _name(component.run("What did Brett Cannon write?")) == "Brett Cannon"

    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    # SQLite's read-only WAL readers may create the -shm index and an empty -wal: no data is written.
    extra = {p.name for p in tmp_path.iterdir()} - set(files_before)
    assert extra <= {"authors.sqlite-wal", "authors.sqlite-shm"}
    wal = tmp_path / "authors.sqlite-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    assert [a.full_name for a in AuthorRegistry(path, read_only=True).authors()] == ["Brett Cannon"]


def test_missing_registry_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "none" / "authors.sqlite"
    match = SelfQuery(path).run("What did Guido van Rossum write?")
    assert match.author is None
    assert not path.parent.exists()


# --- helper-LLM extraction -----------------------------------------------------------------------


def test_llm_extraction_is_resolved_through_the_registry(resolver: AuthorResolver) -> None:
    llm = FakeLLM(answer='"stufft"')
    component = SelfQuery(resolver=resolver, llm=llm, use_llm=True)
    # "cannon" in lower case is missed by the matcher (a 6-letter word); the LLM's answer is resolved.
    component.llm = FakeLLM(answer="Name: cannon.")
    match = component.run("what did cannon write about imports")
    assert _name(match) == "Brett Cannon"
    assert "helper LLM extracted 'cannon'" in match.reason
    # A name the registry does not know is never created.
    component.llm = llm
    match = component.run("what did stufft write about packaging")
    assert match.author is None and "no author named 'stufft'" in match.reason


def test_llm_extraction_rejects_names_not_in_the_question(resolver: AuthorResolver) -> None:
    llm = FakeLLM(answer="Guido van Rossum")
    match = SelfQuery(resolver=resolver, llm=llm, use_llm=True).run("who created python?")
    assert match.author is None
    assert "not in the question" in match.reason


def test_llm_is_not_asked_when_the_matcher_decides(resolver: AuthorResolver) -> None:
    llm = FakeLLM(answer="Brett Cannon")
    component = SelfQuery(resolver=resolver, llm=llm, use_llm=True)
    assert _name(component.run("What did Guido van Rossum write?")) == "Guido van Rossum"
    assert component.run("What does Coghlan think?").author is None  # ambiguous: reported, not guessed
    assert not llm.calls


def test_llm_failures_are_reported_not_raised(resolver: AuthorResolver) -> None:
    failing = SelfQuery(resolver=resolver, llm=FakeLLM(error=LLMUnavailableError("down")), use_llm=True)
    match = failing.run("what did cannon write")
    assert match.author is None and "helper LLM failed: LLMUnavailableError: down" in match.reason

    slow = SelfQuery(resolver=resolver, llm=FakeLLM(answer="cannon", delay_s=2.0), use_llm=True, timeout_s=0.2)
    started = time.perf_counter()
    match = slow.run("what did cannon write")
    assert time.perf_counter() - started < 1.5
    assert match.author is None and "LLMTimeoutError" in match.reason

    nothing = SelfQuery(resolver=resolver, llm=FakeLLM(answer="None."), use_llm=True)
    assert "found no name" in nothing.run("what is new in python 3.13").reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Brett Cannon", "Brett Cannon"),
        ('"Guido van Rossum".\nBecause...', "Guido van Rossum"),
        ("Author: Łukasz Langa", "Łukasz Langa"),
        ("none", None),
        ("None.", None),
        ("", None),
        ("  \n N/A", None),
    ],
)
def test_parse_extracted_name(text: str, expected: str | None) -> None:
    assert parse_extracted_name(text) == expected


def test_resolver_is_thread_safe(resolver: AuthorResolver) -> None:
    questions = ["What did Brett Cannon write?", "Langa's PEPs", "What does Coghlan think?"] * 20
    results: list[str | None] = [None] * len(questions)

    def work(i: int) -> None:
        results[i] = _name(resolver.run(questions[i]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(questions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [_name(resolver.run(q)) for q in questions]
    assert results[:3] == ["Brett Cannon", "Łukasz Langa", None]


def test_status_says_what_was_found(resolver: AuthorResolver) -> None:
    assert resolver.run("What did Brett Cannon write?").status == "matched"
    assert resolver.run("What does Coghlan think about PEP 8?").status == "ambiguous"
    assert resolver.run("Compare Brett Cannon and Guido van Rossum on imports").status == "several"
    assert resolver.run("How do I use asyncio?").status == "none"
    assert resolver.resolve_name("coghlan").status == "ambiguous"
    assert resolver.resolve_name("Gudio van Rosum").status == "none"


def test_one_person_under_several_names_resolves_to_the_byline_and_filters_on_all_names() -> None:
    """The issue's cases: "Pablo Galindo" (commits) is "Pablo Galindo Salgado" (PEPs), and "Eric Smith"
    (a few old commits) is "Eric V. Smith" (PEPs) — before linking, the first found only commits and
    the second was ambiguous between the two spellings."""
    pablo = Author.from_name("Pablo Galindo Salgado").model_copy(update={"counts": {"article": 15, "post": 58}})
    pablo_commits = Author.from_name("Pablo Galindo").model_copy(update={"counts": {"post": 38}})
    eric = Author.from_name("Eric V. Smith").model_copy(update={"counts": {"article": 4, "post": 164}})
    eric_commits = Author.from_name("Eric Smith").model_copy(update={"counts": {"post": 7}})
    resolver = AuthorResolver([pablo, pablo_commits, eric, eric_commits, Author.from_name("Guido van Rossum")])

    match = resolver.run("What did Pablo Galindo write about the PEG parser?")
    assert match.author is not None and match.author.full_name == "Pablo Galindo Salgado"
    assert "Pablo Galindo" in match.author.aliases and match.author.counts == {"article": 15, "post": 96}
    assert resolver.author_ids(match.author) == [pablo.id, pablo_commits.id]

    match = resolver.run("How did Eric Smith propose f-strings?")
    assert match.author is not None and match.author.full_name == "Eric V. Smith"
    assert sorted(resolver.author_ids(match.author)) == sorted([eric.id, eric_commits.id])
    assert resolver.resolve_name(eric_commits.id).author == match.author, "an author id resolves to its person"


def test_a_month_is_a_date_not_a_surname() -> None:
    guido, july = Author.from_name("Guido van Rossum"), Author.from_name("Anna July")
    resolver = AuthorResolver([guido, july])
    match = resolver.run("What did Guido relent on when he tidied up the proposal in July 2018?")
    assert match.author is not None and match.author.full_name == "Guido van Rossum"
    assert resolver.run("What did Anna July write?").author == july, "a full name still matches"
