"""Query expansion: a helper LLM writes N-1 reformulations; the original query always comes first.

The helper is any ``LLMClient`` (the local GGUF by default, or an OpenAI-compatible endpoint).
Failures and timeouts never fail retrieval: the result holds just the original query and says why.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from llm_twin.llm.base import ChatMessage, GenerationParams, LLMClient
from llm_twin.llm.helper import ask_helper
from llm_twin.retrieval.types import EXPANSION_FAILED, ExpansionResult

if TYPE_CHECKING:
    from llm_twin.settings import Settings

SEPARATOR = "#next-question#"
EXPAND_SYSTEM = (
    "You rewrite search questions for a search engine. Given a question, write {k} alternative versions "
    "of it, each using different words, synonyms or related technical terms, keeping its meaning and "
    "every name in it. Do not answer the question. Output a numbered list with exactly {k} lines, like:\n"
    "1. ...\n2. ..."
)
MAX_QUERY_CHARS = 500

# "1.", "1)", "(1)", "1 -", "Q1:", "Question 2:", "-", "*", "•", "a)"
_LEADER = re.compile(
    r"^\s*(?:[-*•·–—>]+|\(?\d{1,2}[.):\]]|\d{1,2}\s+-|q\d{1,2}\s*[:.)-]?|question\s*\d*\s*[:.)-]|[a-h][.)])\s*",
    re.IGNORECASE,
)
_QUOTES = "\"'`“”‘’«»"
_PREAMBLE = re.compile(
    r"^(?:sure|here\s+(?:are|is)|certainly|okay|ok\b|alternative|reformulat|rewritten|versions?\b)", re.IGNORECASE
)
_ANSWER_SHAPED = re.compile(r"^(?:a|answer|response)\s*:", re.IGNORECASE)  # small models answer instead
_HASH_SEPARATOR = re.compile(r"#+\s*next[-_ ]?question\s*#*|\s#+\s", re.IGNORECASE)
_INTERJECTION = re.compile(r"^(?:sure|certainly|okay|ok|of course)\s*[!,.:]\s*", re.IGNORECASE)


def _dedupe_key(text: str) -> str:
    return re.sub(r"[\s?.!]+", " ", text.casefold()).strip()


def _json_items(text: str) -> list[str] | None:
    start, end = text.find("["), text.rfind("]")
    if start < 0 or end <= start:
        start, end = text.find("{"), text.rfind("}")
        if start < 0 or end <= start:
            return None
    try:
        data = json.loads(text[start : end + 1])
    except ValueError:
        return None
    if isinstance(data, dict):  # {"questions": [...]} and the like
        data = next((v for v in data.values() if isinstance(v, list)), None)
    if not isinstance(data, list):
        return None
    items = []
    for item in data:
        if isinstance(item, dict):  # [{"question": "..."}]
            item = next((v for v in item.values() if isinstance(v, str)), None)
        if isinstance(item, str):
            items.append(item)
    return items


def _clean(item: str) -> str:
    item = _INTERJECTION.sub("", item.strip())
    for _ in range(2):  # "1. "What...?"" has a leader and then quotes
        item = _LEADER.sub("", item, count=1).strip()
        item = item.strip(_QUOTES).strip().rstrip(",").strip().strip(_QUOTES).strip()
    item = re.sub(r"^\*\*(.*)\*\*$", r"\1", item)  # markdown bold
    return re.sub(r"\s+", " ", item)


def parse_reformulations(text: str, original: str, want: int) -> list[str]:
    """Up to ``want`` reformulations from a helper LLM's answer, never including ``original``.

    Accepts one per line (numbered "1." / "1)" or bulleted), a JSON array (or an object holding
    one), ``#next-question#`` or ``#`` separators, quotes and blank lines; drops preambles
    ("Here are 2 questions:"), duplicates (case-insensitive) and copies of the original.
    """
    if want <= 0 or not text or not text.strip():
        return []
    body = re.sub(r"```(?:json|text)?", "", text, flags=re.IGNORECASE)
    items = _json_items(body)
    if items is None:
        body = _HASH_SEPARATOR.sub("\n", body)
        items = [line for line in body.splitlines() if line.strip()]
        if len(items) == 1 and "#" in items[0] and "c#" not in items[0].casefold():
            items = items[0].split("#")
    seen = {_dedupe_key(original)}
    # A reformulation is a query, not an essay: longer than this it is an answer or a ramble.
    max_chars = min(MAX_QUERY_CHARS, max(3 * len(original), 200))
    out: list[str] = []
    for raw in items:
        if _ANSWER_SHAPED.match(raw.strip()):
            continue
        item = _clean(raw)
        if len(item) < 3 or len(item) > max_chars:
            continue
        if item.endswith(":") or (_PREAMBLE.match(item) and not item.endswith("?")):
            continue
        key = _dedupe_key(item)
        if not key or key in seen:
            continue
        seen.add(key)
        out.append(item)
        if len(out) == want:
            break
    return out


class QueryExpander:
    """Haystack-style component: config in ``__init__``, ``run(query, n)`` -> ``ExpansionResult``.

    Thread-safe: it holds no per-call state (the LLM client serialises its own use).
    """

    def __init__(self, llm: LLMClient | None, max_n: int = 5, timeout_s: float = 20.0) -> None:
        self.llm = llm
        self.max_n = max(1, max_n)
        self.timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: Settings, helper_llm: LLMClient | None) -> QueryExpander:
        """``n`` per call comes from the request or ``settings.expand_to_n``; ``expand_max`` caps it."""
        return cls(helper_llm, max_n=settings.expand_max, timeout_s=settings.helper_llm_timeout_s)

    def warm_up(self) -> None:
        if self.llm is not None:
            self.llm.warm_up()

    def run(self, query: str, n: int = 3) -> ExpansionResult:
        n = max(1, min(n, self.max_n))
        if n == 1:
            return ExpansionResult(queries=[query])
        if self.llm is None:
            return ExpansionResult(
                queries=[query], error="no helper LLM configured; searched with the original query only"
            )
        want = n - 1
        messages: list[ChatMessage] = [
            # One more than needed: small models often repeat the question as their first line.
            {"role": "system", "content": EXPAND_SYSTEM.format(k=want + 1)},
            {"role": "user", "content": f"Question: {query}"},
        ]
        params = GenerationParams(max_new_tokens=min(48 * (want + 1) + 32, 512), temperature=0.3, top_p=0.9)
        answer = ask_helper(self.llm, messages, params, self.timeout_s)
        if answer.text is None:  # retrieval goes on with the original query
            return ExpansionResult(
                queries=[query],
                error=f"query expansion {answer.failure} ({answer.error}); searched with the original query only",
                degraded=EXPANSION_FAILED,
            )
        extra = parse_reformulations(answer.text, query, want)
        if not extra:
            return ExpansionResult(
                queries=[query],
                error="helper LLM returned no usable reformulation; searched with the original query only",
                degraded=EXPANSION_FAILED,
            )
        return ExpansionResult(queries=[query, *extra])
