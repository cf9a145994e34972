"""Self-query: find the author a question is about, resolved against the author registry.

The matching itself is ``AuthorResolver`` (``author_resolver.py``); this component loads it once
from the registry and, optionally, asks the helper LLM for a name the matcher did not find.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from llm_twin.domain.authors import Author
from llm_twin.domain.people import read_aliases
from llm_twin.llm.base import ChatMessage, GenerationParams, LLMClient
from llm_twin.llm.helper import ask_helper
from llm_twin.retrieval.author_resolver import AuthorResolver, shares_a_word
from llm_twin.retrieval.types import AuthorMatch

if TYPE_CHECKING:
    from llm_twin.settings import Settings

logger = logging.getLogger(__name__)

EXTRACT_SYSTEM = (
    "Find the person a question is about. Reply with only that person's name exactly as written in "
    "the question, or with the single word none if no person is named."
)
_NONE_ANSWERS = {"none", "no", "n/a", "na", "nobody", "unknown", "null", ""}


def parse_extracted_name(text: str) -> str | None:
    """First line of the helper LLM's answer, without quotes, labels and trailing punctuation."""
    line = next((row.strip() for row in text.strip().splitlines() if row.strip()), "")
    line = re.sub(r"^(?:name|author|person|answer)\s*:\s*", "", line, flags=re.IGNORECASE)
    line = line.strip(" \t\"'`“”‘’*.,;:!?")
    return None if line.casefold() in _NONE_ANSWERS else line


class SelfQuery:
    """Haystack-style component: ``warm_up()`` reads the registry once, ``run(query)`` -> ``AuthorMatch``.

    With ``use_llm`` and a helper LLM, a question in which the matcher finds nobody is sent to the
    LLM for a name; that name is then resolved like an explicit ``--author`` and accepted only if
    one of its words occurs in the question (a small model invents names). LLM failures and
    timeouts end up in ``reason``; they are never raised.
    """

    def __init__(
        self,
        registry_path: Path | None = None,
        *,
        aliases_file: Path | None = None,
        resolver: AuthorResolver | None = None,
        llm: LLMClient | None = None,
        use_llm: bool = False,
        timeout_s: float = 20.0,
        authors: Callable[[], list[Author]] | None = None,
        refresh_s: float | None = None,
    ) -> None:
        if registry_path is None and resolver is None and authors is None:
            raise ValueError("SelfQuery needs a registry path, an authors source or a resolver")
        self.registry_path = registry_path
        #: Where the authors are read when they are not in a local file (a registry in Qdrant).
        self.authors_source = authors
        #: Re-read the authors this often (a shared registry that other processes write); None: never.
        self.refresh_s = refresh_s
        self._loaded_at = 0.0
        self._refreshing = threading.Event()
        self.aliases_file = aliases_file
        self.llm = llm
        self.use_llm = use_llm and llm is not None
        self.timeout_s = timeout_s
        self._resolver = resolver
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        helper_llm: LLMClient | None = None,
        authors: Callable[[], list[Author]] | None = None,
    ) -> SelfQuery:
        """``authors``: a shared registry's reader (Qdrant), re-read every ``LLM_TWIN_REGISTRY_REFRESH_S``."""
        return cls(
            settings.registry_path,
            aliases_file=settings.aliases_file,
            llm=helper_llm,
            use_llm=settings.self_query_llm,
            timeout_s=settings.helper_llm_timeout_s,
            authors=authors,
            refresh_s=settings.registry_refresh_s if authors is not None else None,
        )

    def _load(self) -> AuthorResolver:
        if self.authors_source is not None:
            return AuthorResolver(self.authors_source(), read_aliases(self.aliases_file))
        assert self.registry_path is not None
        return AuthorResolver.from_registry(self.registry_path, self.aliases_file)

    def warm_up(self) -> None:
        if self._resolver is not None:
            return
        with self._lock:
            if self._resolver is None:
                self._resolver = self._load()
                self._loaded_at = time.monotonic()
                logger.info("self-query: %d authors indexed", len(self._resolver))

    def refresh(self) -> None:
        """Re-read the registry (after an ingest in this process, or when the shared one may have changed)."""
        if self.registry_path is None and self.authors_source is None:
            return
        resolver = self._load()
        with self._lock:
            self._resolver = resolver
            self._loaded_at = time.monotonic()

    def _refresh_in_background(self) -> None:
        try:
            self.refresh()
        except Exception as error:  # keep answering with the authors read before
            logger.warning("self-query: re-reading the authors failed: %s", error)
            self._loaded_at = time.monotonic()
        finally:
            self._refreshing.clear()

    @property
    def resolver(self) -> AuthorResolver:
        self.warm_up()
        stale = self.refresh_s is not None and time.monotonic() - self._loaded_at >= self.refresh_s
        if stale and not self._refreshing.is_set():
            # A request never waits for the re-read: it uses the authors read before, this once.
            self._refreshing.set()
            threading.Thread(target=self._refresh_in_background, name="authors-refresh", daemon=True).start()
        assert self._resolver is not None
        return self._resolver

    def resolve_name(self, name: str) -> AuthorMatch:
        return self.resolver.resolve_name(name)

    def run(self, query: str) -> AuthorMatch:
        match = self.resolver.run(query)
        if match.author is not None or match.candidates or not self.use_llm:
            return match
        return self._ask_llm(query, match)

    def _ask_llm(self, query: str, fallback: AuthorMatch) -> AuthorMatch:
        assert self.llm is not None
        messages: list[ChatMessage] = [
            {"role": "system", "content": EXTRACT_SYSTEM},
            {"role": "user", "content": f"Question: {query}\nName:"},
        ]
        params = GenerationParams(max_new_tokens=16, temperature=0.0, stop=("\n",))
        answer = ask_helper(self.llm, messages, params, self.timeout_s)
        if answer.text is None:  # any helper failure degrades to "no filter"
            return AuthorMatch(
                author=None, reason=f"{fallback.reason}; helper LLM failed: {answer.error}", helper_failed=True
            )
        name = parse_extracted_name(answer.text)
        if name is None:
            return AuthorMatch(author=None, reason=f"{fallback.reason}; helper LLM found no name either")
        if not shares_a_word(name, query):
            return AuthorMatch(
                author=None, reason=f"{fallback.reason}; helper LLM answered {name!r}, not in the question"
            )
        resolved = self.resolver.resolve_name(name)
        ambiguous = resolved.status == "ambiguous"
        prefix = f"helper LLM extracted {name!r}: "
        return AuthorMatch(
            author=resolved.author,
            reason=prefix + resolved.reason,
            # An ambiguous name's candidates are the people meant; for a miss they are only look-alikes.
            candidates=resolved.candidates if ambiguous else [],
            matched_text=name,
            status="ambiguous" if ambiguous else "none",
        )
