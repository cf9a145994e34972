"""``AuthorResolver``: the registry's authors, found in a question or by an explicitly given name.

Only authors that exist in the registry can be returned: nothing here creates one, because an
invented author has no documents, so an author filter on it would silently match nothing.

Matching rules (all comparisons on ``normalize_name``: case- and accent-insensitive,
"Łukasz" == "lukasz"):

* Keys, most specific first: full names (also without middle initials, and first + last) and
  aliases/handles; then last names ("Rossum", "van Rossum"); then first names ("Guido"). A key
  shared by several authors at its best level is ambiguous: no filter, the candidates are reported.
* Organisations ("Python Packaging Authority", "The pip developers", "Amazon Web Services") match
  by their whole name only (a leading "The" optional): their words are not first and last names,
  and "Python" alone must not filter every question about Python to the PyPA.
* Possessives ("Guido's", "van Rossum's") and "@handle" are accepted.
* The longest key wins where keys overlap ("Nick Coghlan" beats "Coghlan").
* Multi-word keys match in any case ("guido van rossum").
* Single-word keys (a last name, first name, handle or one-word name) are where ordinary words
  collide with names (handles "till", "John", "Alice", "kj" exist in the demo data), so a single
  word matches only when it is written capitalised ("Langa", "Till") or as "@handle", or, in lower
  case, when it looks like a handle: at least 8 characters or containing a digit, "-", "_" or "."
  ("larryhastings", "wyz23x2"). A capitalised word that starts a sentence must also not be a
  common English word ("Will", "May", "Till", ...). First names match only when capitalised.
  A single capitalised word inside a Title Case run that is no name ("the Global Interpreter Lock")
  is a term, not a surname.
* A question that names several different authors gets no filter (candidates reported), unless
  the mentions narrow down to one person ("Nick ... Coghlan").

``resolve_name`` (an explicit ``--author``) drops the capitalisation rules: the user said it is a name.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from llm_twin.domain.authors import Author, normalize_name
from llm_twin.domain.people import ORGANISATION_WORDS, AliasesSpec, People, link_people, read_aliases
from llm_twin.domain.twins import TwinCatalog
from llm_twin.errors import InvalidInputError
from llm_twin.retrieval.types import AuthorMatch
from llm_twin.store.registry import AuthorRegistry

# Words (possessive "'s" and a leading "@" are split off afterwards).
_WORD = re.compile(r"@?\w+(?:[-.'’]\w+)*")
_SENTENCE_END = re.compile(r"[.!?\n]\s*$")
_HANDLE_SHAPED = re.compile(r"[\d\-_.]")
MIN_LOWERCASE_HANDLE = 8
#: What is left of "What did <person> write about X?" once the person is gone: only "X" is the topic.
_FRAMING = re.compile(
    r"\b(?:write|writes|wrote|written|writing|say|says|said|think|thinks|thought)\b(?:\s+(?:about|on|regarding)\b)?",
    re.IGNORECASE,
)
_ASKED_WHAT = re.compile(r"^(?:what|which)\s+(?:did|does|do|has|have|had)\s+", re.IGNORECASE)
_MAX_KEY_TOKENS = 6

FULL, LAST, FIRST = 0, 1, 2  # key levels, most specific first
_LEVEL_NAMES = {FULL: "full name or alias", LAST: "last name", FIRST: "first name"}
_PARTICLES = {
    "van",
    "von",
    "de",
    "der",
    "den",
    "da",
    "di",
    "du",
    "la",
    "le",
    "del",
    "della",
    "dos",
    "das",
    "ter",
    "ten",
    "st",
    "bin",
    "ibn",
    "al",
    "el",
    "mac",
}
_SUFFIXES = {"jr", "sr", "ii", "iii", "iv", "phd"}

#: Capitalised wherever they stand, so only a possessive or a longer name makes them a name.
CALENDAR_WORDS = frozenset(
    [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ]
)

#: Capitalised at the start of a sentence these are ordinary words, not names.
COMMON_WORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "also",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "cannot",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "give",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "him",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "just",
        "list",
        "me",
        "more",
        "most",
        "my",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "out",
        "over",
        "own",
        "please",
        "same",
        "she",
        "should",
        "show",
        "so",
        "some",
        "such",
        "summarize",
        "summarise",
        "tell",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "till",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "compare",
        "describe",
        "explain",
        "find",
        "according",
        "based",
        "write",
        "wrote",
        "written",
        "say",
        "said",
        "says",
        "may",
        "might",
        "must",
        "shall",
        "mark",
        "will",
    ]
)


@dataclass(frozen=True)
class _Token:
    norm: str
    raw: str
    start: int
    end: int
    capitalised: bool
    possessive: bool
    at: bool
    sentence_start: bool


def _tokens(text: str) -> list[_Token]:
    out = []
    for match in _WORD.finditer(text):
        raw = match.group()
        start, end = match.start(), match.end()
        at = raw.startswith("@")
        word = raw[1:] if at else raw
        possessive = False
        if len(word) > 2 and word[-2:].lower() in ("'s", "’s"):
            word, possessive = word[:-2], True
        first = word[0]
        # Scripts without case (e.g. CJK) count as capitalised: there is no lower-case form to confuse.
        capitalised = first.isupper() or (first.isalpha() and first.lower() == first.upper())
        norm = normalize_name(word).replace("’", "'")
        sentence_start = not text[:start].strip() or bool(_SENTENCE_END.search(text[:start]))
        out.append(_Token(norm, raw, start, end, capitalised, possessive, at, sentence_start))
    return out


def _name_tokens(name: str) -> tuple[str, ...]:
    return tuple(t.norm for t in _tokens(name))


def shares_a_word(name: str, text: str) -> bool:
    """Whether a word of ``name`` occurs in ``text`` (compared as names are: any case, any accent)."""
    words = {t.norm for t in _tokens(text)}
    return any(t in words for t in _name_tokens(name))


def _name_keys(full_name: str) -> dict[int, set[tuple[str, ...]]]:
    """Keys of one full name by level (see module docstring)."""
    tokens = list(_name_tokens(full_name))
    keys: dict[int, set[tuple[str, ...]]] = {FULL: set(), LAST: set(), FIRST: set()}
    if not tokens:
        return keys
    keys[FULL].add(tuple(tokens))
    if ORGANISATION_WORDS.intersection(tokens):
        if len(tokens) > 1 and tokens[0] == "the":
            keys[FULL].add(tuple(tokens[1:]))
        return keys
    core = [t for t in tokens if t not in _SUFFIXES] or tokens
    without_initials = [t for t in core if len(t) > 1]
    if len(without_initials) >= 2:
        keys[FULL].add(tuple(without_initials))
    if len(core) >= 3:
        keys[FULL].add((core[0], core[-1]))
    if len(core) >= 2:
        # Last name, extended over particles: "van rossum" and "rossum".
        start = len(core) - 1
        while start > 1 and core[start - 1] in _PARTICLES:
            start -= 1
        keys[LAST].add(tuple(core[start:]))
        keys[LAST].add((core[-1],))
        if len(core[0]) > 1:
            keys[FIRST].add((core[0],))
    return keys


def _in_title_phrase(tokens: list[_Token], i: int) -> bool:
    """A capitalised word inside a run of capitalised words that is no name ("the Global Interpreter
    Lock", "Python Packaging Guide") is a term, not a surname: the word before it is capitalised
    mid-sentence, or, unless it is possessive ("Guido's PEP"), the word after it is."""
    token = tokens[i]
    if token.at or not token.capitalised:
        return False
    before = tokens[i - 1] if i > 0 else None
    after = tokens[i + 1] if i + 1 < len(tokens) else None
    if (
        before is not None
        and before.capitalised
        and not (token.sentence_start or before.sentence_start or before.possessive)
    ):
        return True
    return after is not None and after.capitalised and not token.possessive and not after.sentence_start


@dataclass
class _Mention:
    authors: frozenset[str]
    level: int
    text: str


class AuthorResolver:
    """Immutable index of the registry's authors (thread-safe); build once, after ingest."""

    def __init__(self, authors: Iterable[Author], aliases: AliasesSpec | None = None) -> None:
        everyone = list(authors)
        #: Several names of one person are one entry: a mention of any of them resolves to the
        #: person, and a name two of their spellings share ("Eric Smith") is not ambiguous.
        self.people: People = link_people(everyone, aliases)
        self._all: dict[str, Author] = {a.id: a for a in everyone}
        self._authors: dict[str, Author] = {
            person: self._as_person(person) for person in set(self.people.person_of.values())
        }
        index: dict[tuple[str, ...], dict[int, set[str]]] = {}
        for author in everyone:
            person = self.people.person(author.id)
            levels = _name_keys(author.full_name)
            for alias in author.aliases:
                key = _name_tokens(alias)
                if key:
                    levels[FULL].add(key)
            for level, keys in levels.items():
                for key in keys:
                    index.setdefault(key, {}).setdefault(level, set()).add(person)
        # Keep only the most specific level of each key: "till" the one-word name beats "Till" the
        # surname of somebody else.
        self._index: dict[tuple[str, ...], tuple[int, frozenset[str]]] = {
            key: (min(levels), frozenset(levels[min(levels)])) for key, levels in index.items()
        }
        self._max_len = min(_MAX_KEY_TOKENS, max((len(k) for k in self._index), default=1))
        # For ``closest``: every spelling a person goes by.
        self._spellings: list[tuple[str, str]] = []
        for author in self._authors.values():
            for spelling in {author.full_name, *author.aliases}:
                self._spellings.append((normalize_name(spelling), author.id))

    def _as_person(self, person: str) -> Author:
        """The shown author of a person, with the other names as aliases and the counts summed."""
        head = self._all[person]
        members = [self._all[m] for m in self.people.members(person)]
        if len(members) == 1:
            return head
        counts: dict[str, int] = {}
        for member in members:
            for kind, n in member.counts.items():
                counts[kind] = counts.get(kind, 0) + n
        names = {alias for m in members for alias in (m.full_name, *m.aliases)} - {head.full_name}
        return head.model_copy(update={"aliases": sorted(names), "counts": counts})

    def author_ids(self, author: Author) -> list[str]:
        """Every author id the person writes under: what an author filter must match."""
        return self.people.members(self.people.person(author.id))

    @classmethod
    def from_registry(cls, path: Path, aliases_file: Path | None = None) -> AuthorResolver:
        """Read the authors through a read-only connection: self-query never writes the registry."""
        aliases = read_aliases(aliases_file)
        registry = AuthorRegistry(path, read_only=True)
        try:
            return cls(registry.authors(), aliases)
        finally:
            registry.close()

    def __len__(self) -> int:
        return len(self._authors)

    @property
    def authors(self) -> list[Author]:
        return list(self._authors.values())

    @cached_property
    def twins(self) -> TwinCatalog:
        """The people as model ids (``/v1/models``); built once per index, which never changes."""
        return TwinCatalog(self._authors.values())

    # --- matching -------------------------------------------------------------------------------

    def _single_word_ok(self, token: _Token, level: int, strict: bool) -> bool:
        if not strict or token.at:
            return True
        if token.capitalised:
            if token.sentence_start and not token.possessive and token.norm in COMMON_WORDS:
                return False
            # Months and weekdays are capitalised anywhere in a sentence ("in July 2018"); as one word
            # they are a date, not a name.
            return token.possessive or token.norm not in CALENDAR_WORDS
        if level == FIRST or token.norm in COMMON_WORDS:
            return False
        return len(token.norm) >= MIN_LOWERCASE_HANDLE or bool(_HANDLE_SHAPED.search(token.norm))

    def _mentions(self, text: str, strict: bool) -> list[_Mention]:
        """Author keys found in ``text``, longest first at each position."""
        tokens = _tokens(text)
        mentions: list[_Mention] = []
        i = 0
        while i < len(tokens):
            for length in range(min(self._max_len, len(tokens) - i), 0, -1):
                window = tokens[i : i + length]
                if any(t.possessive for t in window[:-1]):
                    continue  # "Guido's van Rossum" is not one name
                entry = self._index.get(tuple(t.norm for t in window))
                if entry is None:
                    continue
                level, ids = entry
                if length == 1 and not (
                    self._single_word_ok(window[0], level, strict) and not (strict and _in_title_phrase(tokens, i))
                ):
                    continue
                mentions.append(_Mention(ids, level, text[window[0].start : window[-1].end]))
                i += length
                break
            else:
                i += 1
        return mentions

    def _decide(self, mentions: list[_Mention], source: str) -> AuthorMatch | None:
        if not mentions:
            return None
        texts = ", ".join(repr(m.text) for m in mentions)
        single = {next(iter(m.authors)) for m in mentions if len(m.authors) == 1}
        ambiguous = [m for m in mentions if len(m.authors) > 1]
        every = set().union(*(m.authors for m in mentions))
        if len(single) == 1:
            (author_id,) = single
            if all(author_id in m.authors for m in ambiguous):
                mention = next(m for m in mentions if m.authors == {author_id})
                return AuthorMatch(
                    author=self._authors[author_id],
                    reason=f"{source}: matched {_LEVEL_NAMES[mention.level]} {mention.text!r}",
                    matched_text=mention.text,
                )
        elif not single:
            common = frozenset.intersection(*(m.authors for m in ambiguous))
            if len(common) == 1 and len(ambiguous) > 1:
                (author_id,) = common
                return AuthorMatch(
                    author=self._authors[author_id],
                    reason=f"{source}: {texts} together name one author",
                    matched_text=ambiguous[0].text,
                )
            if len(ambiguous) == 1 or len(common) > 1:
                return AuthorMatch(
                    author=None,
                    reason=f"{source}: {texts} is ambiguous ({len(every)} authors); no author filter",
                    candidates=self._sorted(every),
                    matched_text=ambiguous[0].text,
                    status="ambiguous",
                )
        return AuthorMatch(
            author=None,
            reason=f"{source}: several authors mentioned ({texts}); no author filter",
            candidates=self._sorted(every),
            matched_text=mentions[0].text,
            status="several",
        )

    def _sorted(self, ids: Iterable[str]) -> list[Author]:
        return sorted((self._authors[i] for i in ids), key=lambda a: normalize_name(a.full_name))

    def run(self, query: str) -> AuthorMatch:
        """The author a free-text question is about, or none, with the reason."""
        decided = self._decide(self._mentions(query, strict=True), "question")
        return decided or AuthorMatch(author=None, reason="no known author mentioned in the question")

    def resolve_name(self, name: str) -> AuthorMatch:
        """An explicitly given name (``--author``, or the helper LLM's answer): any case, any spelling we know."""
        name = name.strip()
        if name in self._all:  # an author id
            person = self._authors[self.people.person(name)]
            return AuthorMatch(author=person, reason="author id", matched_text=name)
        key = _name_tokens(name)
        entry = self._index.get(key) if key else None
        if entry is not None:
            level, ids = entry
            if len(ids) == 1:
                return AuthorMatch(
                    author=self._authors[next(iter(ids))],
                    reason=f"name: matched {_LEVEL_NAMES[level]} {name!r}",
                    matched_text=name,
                )
            return AuthorMatch(
                author=None,
                reason=f"name: {name!r} is ambiguous ({len(ids)} authors)",
                candidates=self._sorted(ids),
                matched_text=name,
                status="ambiguous",
            )
        decided = self._decide(self._mentions(name, strict=False), "name") if key else None
        if decided is not None:
            return decided
        closest = self.closest(name)
        hint = "; closest: " + ", ".join(a.full_name for a in closest) if closest else ""
        return AuthorMatch(author=None, reason=f"no author named {name!r}{hint}", candidates=closest)

    def without_person(self, text: str, author: Author) -> str:
        """``text`` with every mention of ``author``'s person removed (any of their names, a possessive
        or "@handle" included), and the framing that only pointed at them ("... write about").

        Once the person is a filter, their name in the search text only makes BM25 and the embedder
        prefer texts that name them (a commit "Add van Rossum as co-author") over texts about the topic.
        Returns ``text`` unchanged when nothing would be left of it.
        """
        person = self.people.person(author.id)
        spans = [m for m in self._mentions(text, strict=False) if person in m.authors]
        if not spans:
            return text
        out = text
        for mention in spans:
            out = re.sub(re.escape(mention.text) + r"(?:['’]s\b)?", " ", out, count=1)
        out, framed = _FRAMING.subn(" ", out)
        if framed:  # "What did write about X?" -> "X?"
            out = _ASKED_WHAT.sub("", out.strip())
        out = re.sub(r"\s+", " ", out).strip(" ,;:-")
        out = re.sub(r"\s+([?.!,])", r"\1", out)
        return out if len(_WORD.findall(out)) >= 2 else text

    def require(self, name: str) -> AuthorMatch:
        """``resolve_name`` with an author, or ``InvalidInputError`` naming the candidates or the
        closest names (an explicit ``--author`` / ``author`` must name exactly one author)."""
        match = self.resolve_name(name)
        if match.author is None:
            raise InvalidInputError("author", match.reason)
        return match

    def closest(self, name: str, n: int = 5, cutoff: float = 0.4) -> list[Author]:
        """Known authors whose name or alias looks most like ``name`` (for error messages)."""
        target = normalize_name(name)
        if not target:
            return []
        best: dict[str, float] = {}
        for spelling, author_id in self._spellings:
            ratio = difflib.SequenceMatcher(None, target, spelling, autojunk=False).ratio()
            # A partial name ("Rossum") should rank its owner first, not a similar-length stranger.
            if target in spelling.split() or (len(target) >= 4 and target in spelling):
                ratio = max(ratio, 0.9)
            if ratio > best.get(author_id, 0.0):
                best[author_id] = ratio
        ranked = sorted((r, normalize_name(self._authors[a].full_name), a) for a, r in best.items() if r >= cutoff)
        ranked.sort(key=lambda item: -item[0])
        return [self._authors[a] for _r, _n, a in ranked[:n]]
