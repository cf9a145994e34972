"""Self-query: find the author a question is about, resolved against the author registry.

The matching itself is ``AuthorResolver`` (``author_resolver.py``); this component loads it once
from the registry and, optionally, asks the helper LLM for a name the matcher did not find.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING

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
    ) -> None:
        if registry_path is None and resolver is None:
            raise ValueError("SelfQuery needs a registry path or a resolver")
        self.registry_path = registry_path
        self.aliases_file = aliases_file
        self.llm = llm
        self.use_llm = use_llm and llm is not None
        self.timeout_s = timeout_s
        self._resolver = resolver
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, helper_llm: LLMClient | None = None) -> SelfQuery:
        return cls(
            settings.registry_path,
            aliases_file=settings.aliases_file,
            llm=helper_llm,
            use_llm=settings.self_query_llm,
            timeout_s=settings.helper_llm_timeout_s,
        )

    def warm_up(self) -> None:
        if self._resolver is not None:
            return
        with self._lock:
            if self._resolver is None:
                assert self.registry_path is not None
                self._resolver = AuthorResolver.from_registry(self.registry_path, self.aliases_file)
                logger.info("self-query: %d authors indexed from %s", len(self._resolver), self.registry_path)

    def refresh(self) -> None:
        """Re-read the registry (after an ingest in the same process)."""
        if self.registry_path is None:
            return
        resolver = AuthorResolver.from_registry(self.registry_path, self.aliases_file)
        with self._lock:
            self._resolver = resolver

    @property
    def resolver(self) -> AuthorResolver:
        self.warm_up()
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
            return AuthorMatch(author=None, reason=f"{fallback.reason}; helper LLM failed: {answer.error}")
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
