"""The page at ``/`` in a real browser: Playwright drives Debian's chromium against the app on a loopback port.

Most tests use the fakes (fixed sources by two people, a scripted model); one slow test uses the real
SmolLM2 and a small ingested corpus. Each test saves screenshots to ``test-artifacts/``. Without
Playwright or ``/usr/bin/chromium`` (``make test`` installs both) the tests skip, saying which is missing.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rag_fakes import FakeLLM, PeopleFakeRetrieval

from conftest import serve, slow_settings
from llm_fakes import FakeLLM as FakeHelperLLM
from llm_twin.api.app import create_app
from llm_twin.domain.authors import Author
from llm_twin.rag.pipeline import RAGPipeline
from llm_twin.settings import load_settings
from llm_twin.store.registry import AuthorRegistry

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
#: Chromium with nothing that reaches the network on its own (the page itself needs only the app).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--metrics-recording-only",
    "--disable-dev-shm-usage",
]
TIMEOUT_MS = 20_000  # generous: the test machine may be busy
REWRITE = "What did Barry Warsaw write about the PEP process?"

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: `make test` installs it (apt-get install -y chromium)")
    with sync_api.sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        except Exception as error:  # e.g. missing shared libraries: say so rather than fail every test
            pytest.skip(f"chromium at {CHROMIUM} does not start: {str(error).splitlines()[0]}")
        try:
            yield launched
        finally:
            launched.close()


def write_people(data_dir: Path) -> None:
    """The registry behind GET /authors: the two people the fake retrieval has chunks by."""
    guido, barry = Author.from_name("Guido van Rossum"), Author.from_name("Barry Warsaw")
    registry = AuthorRegistry(load_settings(data_dir=data_dir).registry_path)
    try:
        registry.upsert_authors([guido, barry])
        registry.record_documents(
            [
                *((f"pep-{i}", "article", "h", 1, [guido.id]) for i in range(3)),
                ("pep-0008", "article", "h", 1, [barry.id]),
                *((f"cpython@{i}", "repository", "h", 1, [barry.id]) for i in range(2)),
            ]
        )
        registry.refresh_counts()
    finally:
        registry.close()


class Site:
    """The app with fakes behind uvicorn, and a browser page on it."""

    def __init__(self, url: str, llm: FakeLLM, retrieval: PeopleFakeRetrieval, page: Any, name: str) -> None:
        self.url, self.llm, self.retrieval, self.page, self.name = url, llm, retrieval, page, name
        self.shots = 0

    def shot(self, label: str) -> None:
        self.shots += 1
        self.page.screenshot(path=str(ARTIFACTS / f"{self.name}-{self.shots}-{label}.png"), full_page=True)

    def ask(self, question: str) -> None:
        self.page.fill("#query", question)
        self.page.click("#submit")

    def wait_done(self, turn: int) -> None:
        self.page.wait_for_function(
            f"() => /Answered in|Stopped/.test(document.getElementById('status-{turn}')?.textContent || '')",
            timeout=TIMEOUT_MS,
        )


@pytest.fixture
def site(browser: Any, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Site]:
    ARTIFACTS.mkdir(exist_ok=True)
    write_people(tmp_path)
    settings = load_settings(data_dir=tmp_path)
    retrieval, llm = PeopleFakeRetrieval(FakeHelperLLM(REWRITE)), FakeLLM()
    width = getattr(request, "param", 1000)
    with serve(create_app(settings, RAGPipeline(retrieval, llm, settings))) as url:
        context = browser.new_context(viewport={"width": width, "height": 900})
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url + "/")
        try:
            yield Site(url, llm, retrieval, page, request.node.name.replace("[", "-").replace("]", ""))
        finally:
            context.close()


def sources_text(site: Site, turn: int) -> list[str]:
    return site.page.locator(f"#turn-{turn} .doc-facts").all_inner_texts()


def test_a_question_shows_status_then_streamed_text_then_the_sources(site: Site) -> None:
    site.llm.gate = threading.Event()  # hold generation: the page must show where it is meanwhile
    site.ask("What did Guido van Rossum write about pattern matching?")
    status = site.page.locator("#status-0")
    status.filter(has_text=re.compile(r"Writing the answer… \(\d+\.\d s\)")).wait_for()
    assert site.page.locator("#answer-0").inner_text() == ""
    assert site.page.locator("#turn-0 .passage").count() == 2  # the sources arrived before any text
    site.shot("writing")
    site.llm.gate.set()
    site.wait_done(0)
    assert site.page.locator("#answer-0").inner_text() == "Pattern matching was proposed [1]."
    assert site.page.locator("#answer-0").get_attribute("aria-live") == "polite"
    site.page.click("#turn-0 details.about summary")
    stages = site.page.locator("#turn-0 .stages li").all_inner_texts()
    assert [s.split(" — ")[1] for s in stages] == ["Reading 2 sources", "Writing the answer"]
    assert "as Guido van Rossum" in site.page.locator("#turn-0 .turn-meta").inner_text()
    # two chunks of different PEPs: two documents, each with its type, author, link and passage
    assert site.page.locator("#turn-0 .doc").count() == 2
    assert (
        site.page.locator("#turn-0 .doc a.doc-title").first.get_attribute("href") == "https://peps.python.org/pep-0001/"
    )
    assert sources_text(site, 0)[0] == "article · Guido van Rossum"
    assert "null" not in site.page.locator("#turn-0").inner_text()
    site.shot("done")


def test_a_citation_link_highlights_its_source(site: Site) -> None:
    site.ask("What did Guido van Rossum write about pattern matching?")
    site.wait_done(0)
    link = site.page.locator("#answer-0 a.cite")
    assert link.inner_text() == "[1]"
    link.focus()
    site.page.keyboard.press("Enter")  # keyboard only
    source = site.page.locator("#t0-s1")
    assert "highlight" in (source.get_attribute("class") or "")
    assert site.page.evaluate("document.activeElement.id") == "t0-s1"
    assert site.page.locator(".passage.highlight").count() == 1
    site.shot("highlighted")


def test_the_author_picker_searches_authors_and_filters_the_sources(site: Site) -> None:
    site.page.locator("#author-info").filter(has_text="2 people in the corpus").wait_for()
    site.page.fill("#author", "barr")
    site.page.locator("#author-info").filter(has_text="1 person match “barr”.").wait_for()
    options = site.page.locator("#author-options option")
    assert options.count() == 1 and options.get_attribute("value") == "Barry Warsaw"
    site.page.fill("#author", "Barry Warsaw")
    site.page.locator("#author-info").filter(has_text="Barry Warsaw: 1 article, 2 repositories").wait_for()
    site.shot("picker")
    site.ask("What about pattern matching?")  # names nobody: only the picker restricts it
    site.wait_done(0)
    assert site.retrieval.calls[-1]["author"] == "Barry Warsaw"
    assert sources_text(site, 0) and all("Barry Warsaw" in s for s in sources_text(site, 0))
    assert "as Barry Warsaw" in site.page.locator("#turn-0 .turn-meta").inner_text()
    site.shot("filtered")


def test_a_follow_up_keeps_the_author_and_the_conversation_survives_a_reload(site: Site) -> None:
    bodies: list[dict] = []
    site.page.on(
        "request", lambda r: bodies.append(json.loads(r.post_data or "{}")) if r.url.endswith("/rag") else None
    )
    site.ask("What did Barry Warsaw write about the PEP process?")
    site.wait_done(0)
    site.ask("And why?")
    site.wait_done(1)
    assert bodies[1]["history"] == [
        {"role": "user", "content": "What did Barry Warsaw write about the PEP process?"},
        {"role": "assistant", "content": "Pattern matching was proposed [1]."},
    ]
    assert "author" not in bodies[1]  # carried by the server from the conversation, not by the picker
    meta = site.page.locator("#turn-1 .turn-meta").inner_text()
    assert "as Barry Warsaw" in meta and REWRITE in meta
    assert all("Barry Warsaw" in s for s in sources_text(site, 1))
    site.shot("follow-up")
    site.page.reload()
    site.page.locator("#turn-1").wait_for()
    assert site.page.locator(".turn h2.question").all_inner_texts() == [
        "What did Barry Warsaw write about the PEP process?",
        "And why?",
    ]
    assert site.page.locator("#query-label").inner_text() == "Your follow-up question"
    site.page.click("#new-conversation")
    assert site.page.locator(".turn").count() == 0
    site.page.reload()
    site.page.locator("#query").wait_for()
    assert site.page.locator(".turn").count() == 0
    site.shot("new-conversation")


def test_an_empty_question_shows_an_error_and_sends_nothing(site: Site) -> None:
    site.page.fill("#query", "   ")
    site.page.focus("#query")
    site.page.keyboard.press("Control+Enter")
    error = site.page.locator("#form-error")
    error.filter(has_text="Please type a question first.").wait_for()
    assert error.get_attribute("role") == "alert"
    assert site.page.locator("#query").get_attribute("aria-invalid") == "true"
    assert site.page.locator(".turn").count() == 0 and site.retrieval.calls == []
    site.shot("empty")


def test_stop_ends_generation_on_the_server(site: Site) -> None:
    site.llm.pieces = tuple(f"word{i} " for i in range(3000))
    original = site.llm.stream

    def slow_stream(messages: Any, params: Any) -> Iterator[str]:
        for piece in original(messages, params):
            time.sleep(0.005)  # ~15 s for the whole answer
            yield piece

    site.llm.stream = slow_stream  # type: ignore[method-assign]
    site.ask("What did Guido van Rossum write about pattern matching?")
    site.page.locator("#answer-0").filter(has_text="word3 ").wait_for()
    site.page.click("#stop")
    assert site.llm.stream_closed.wait(5), "generation kept running after Stop"
    site.page.locator("#status-0").filter(has_text="Stopped.").wait_for()
    assert len(site.page.locator("#answer-0").inner_text().split()) < 3000
    assert site.page.locator("#stop").is_hidden() and site.page.locator("#submit").is_enabled()
    site.shot("stopped")


@pytest.mark.parametrize("site", [375], indirect=True)
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_page_at_375px_has_no_horizontal_scroll(site: Site, scheme: str) -> None:
    site.page.emulate_media(color_scheme=scheme)
    site.ask("What did Guido van Rossum write about pattern matching, in the long words of " + "x" * 120 + "?")
    site.wait_done(0)
    site.page.click("#turn-0 details.about summary")
    width = site.page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the page is {width} px wide at a 375 px viewport"
    background = site.page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert (background == "rgb(255, 255, 255)") == (scheme == "light")
    site.shot(scheme)


@pytest.mark.slow
def test_the_real_model_answers_with_status_text_and_sources(browser: Any, demo_data_dir: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    with serve(create_app(slow_settings(demo_data_dir))) as url:
        context = browser.new_context(viewport={"width": 1000, "height": 900})
        page = context.new_page()
        page.set_default_timeout(180_000)  # the first token takes long on a busy 2-core machine
        try:
            seen: list[str] = []
            page.expose_function("recordStatus", lambda text: seen.append(text))
            page.add_init_script(
                "new MutationObserver(() => { const s = document.getElementById('status-0');"
                " if (s && s.textContent) window.recordStatus(s.textContent); })"
                ".observe(document, {subtree: true, childList: true, characterData: true});"
            )
            page.goto(url + "/")
            page.fill("#author", "Guido van Rossum")
            page.fill("#query", "What did Guido van Rossum write about pattern matching?")
            page.click("#submit")
            page.wait_for_function("() => /Answered in/.test(document.getElementById('status-0')?.textContent || '')")
            assert page.locator("#answer-0").inner_text().strip()
            assert page.locator("#turn-0 .passage").count() >= 1
            assert all("Guido van Rossum" in s for s in page.locator("#turn-0 .doc-facts").all_inner_texts())
            assert any(s.startswith("Resolving the author") for s in seen)
            assert any(s.startswith("Searching") for s in seen)
            assert any(s.startswith("Writing the answer") for s in seen)
            page.screenshot(path=str(ARTIFACTS / "real-model.png"), full_page=True)
        finally:
            context.close()


def test_thumbs_down_with_a_comment_goes_to_feedback(site: Site) -> None:
    site.page.wait_for_function("() => document.body.dataset.feedback === 'true'")  # /feedback is in /openapi.json
    site.ask("What did Guido van Rossum write about pattern matching?")
    site.wait_done(0)
    trace_id = site.page.locator("#turn-0 .trace code").text_content() or ""
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id)
    site.page.click("#turn-0 .thumb-down")
    assert site.page.locator("#turn-0 .thumb-down").get_attribute("aria-pressed") == "true"
    assert site.page.evaluate("document.activeElement.id") == "comment-0"  # the comment field is next
    site.page.keyboard.type("It cites the wrong PEP.")
    with site.page.expect_request(lambda r: r.url.endswith("/feedback")) as sent:
        site.page.click("#turn-0 .send-feedback")
    assert json.loads(sent.value.post_data or "{}") == {
        "trace_id": trace_id,
        "score": -1,
        "comment": "It cites the wrong PEP.",
    }
    site.page.locator("#turn-0 .feedback").filter(has_text="Thanks, your feedback was recorded.").wait_for()
    metrics = site.page.request.get(site.url + "/metrics").text()
    assert 'llm_twin_feedback_total{verdict="negative"} 1.0' in metrics
    site.shot("feedback")


def test_a_background_ingest_is_shown_until_it_is_done(site: Site) -> None:
    progress = {"state": "running", "source": "demo", "documents_total": 300, "documents_done": 120}
    ready = {"status": "ready", "model": "fake-llm", "ingest": progress | {"eta_s": 90}}
    site.page.route("**/ready", lambda route: route.fulfill(json=ready))
    site.page.reload()
    line = site.page.locator("#ingest")
    line.filter(has_text="Indexing demo: 120 of 300 documents, about 2 min left.").wait_for()
    assert line.get_attribute("role") == "status"
    site.shot("indexing")
    ready["ingest"] = progress | {"state": "done", "documents_done": 300}
    line.wait_for(state="hidden", timeout=15_000)  # polled every 5 s while it runs
