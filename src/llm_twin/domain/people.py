"""One person, one twin: which author names in the corpus are the same person.

A person writes under several names: a PEP byline and a commit name ("Pablo Galindo Salgado" and
"Pablo Galindo"), with and without a middle initial ("Eric V. Smith", "Eric Smith"), or a handle
("ericsnowcurrently"). Each name is its own author (its id is derived from the name), so without
links an author filter finds only the writing filed under the one name the question used.

Links come from two places:

* **Name rules** suggest a link when it is unambiguous: two names with the same words up to
  punctuation ("R. David Murray" / "R David Murray"), or a name of at least two words whose words
  appear, in order, in exactly one longer name that starts with the same word and ends with the
  same word or extends it ("Eric Smith" in "Eric V. Smith", "Pablo Galindo" in "Pablo Galindo
  Salgado"). A shorter name that fits several longer ones links to none of them.
* **The aliases file** (TOML) confirms what no rule can see and overrides the rules::

      [[person]]
      name = "Alyssa Coghlan"             # the name the person is shown under
      aliases = ["Nick Coghlan", "ncoghlan"]

      [[distinct]]
      names = ["Eric Smith", "Eric V. Smith"]   # a rule link that is wrong

The shown name of a person is the file's ``name``, else the member with the most articles and
repositories (the byline), then the most documents. Everything here is pure and deterministic, so
every process and replica computes the same people from the same authors and file.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from llm_twin.domain.authors import Author, author_id, normalize_name
from llm_twin.errors import ConfigError

#: A name with one of these words is an organisation; its words are not a person's names.
ORGANISATION_WORDS = frozenset(
    [
        "authority",
        "association",
        "community",
        "company",
        "contributors",
        "corp",
        "corporation",
        "developers",
        "development",
        "foundation",
        "group",
        "inc",
        "institute",
        "labs",
        "llc",
        "ltd",
        "maintainers",
        "others",
        "organisation",
        "organization",
        "project",
        "services",
        "society",
        "software",
        "team",
        "university",
    ]
)
_WORD = re.compile(r"\w+")

LinkSource = Literal["same name", "name rule", "aliases file"]


class AliasesFileError(ConfigError):
    """The aliases file cannot be read or has the wrong shape; the message names the file and entry."""


@dataclass(frozen=True)
class AliasesSpec:
    """What the aliases file says: people (shown name -> other names) and pairs that are not one person."""

    people: dict[str, list[str]] = field(default_factory=dict)
    distinct: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Link:
    """``member`` is the same person as ``person`` (both author ids), and why we think so."""

    member: str
    person: str
    source: LinkSource


@dataclass
class People:
    """Author id -> the id of the person's shown author; one entry per author."""

    person_of: dict[str, str]
    links: list[Link]
    #: Names in the aliases file that match no author (reported, not fatal: the corpus may lag the file).
    unknown_names: list[str] = field(default_factory=list)

    def person(self, author: str) -> str:
        return self.person_of.get(author, author)

    def members(self, person: str) -> list[str]:
        """Every author id of the person, the shown one first."""
        others = sorted(a for a, p in self.person_of.items() if p == person and a != person)
        return [person, *others]


def name_words(name: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(normalize_name(name)))


def is_organisation(name: str) -> bool:
    return bool(ORGANISATION_WORDS.intersection(name_words(name)))


def _is_subsequence(short: tuple[str, ...], long: tuple[str, ...]) -> bool:
    it = iter(long)
    return all(word in it for word in short)


def _rule_fits(short: tuple[str, ...], long: tuple[str, ...]) -> bool:
    """``short`` names the same person as ``long``: same first word, in order, and either the same
    last word (middle names or initials dropped) or a prefix (a surname dropped)."""
    if len(short) < 2 or len(short) >= len(long) or short[0] != long[0]:
        return False
    if long[: len(short)] == short:
        return True
    return short[-1] == long[-1] and _is_subsequence(short, long)


def rule_links(authors: Iterable[Author]) -> list[Link]:
    """Links suggested by the name rules (see the module docstring); ``person`` is the longer name."""
    words: dict[str, tuple[str, ...]] = {}
    for author in authors:
        if not is_organisation(author.full_name) and name_words(author.full_name):
            words[author.id] = name_words(author.full_name)
    links: list[Link] = []
    by_words: dict[tuple[str, ...], list[str]] = {}
    for aid, key in words.items():
        by_words.setdefault(key, []).append(aid)
    for same in by_words.values():  # same words, different punctuation: one person
        first, *rest = sorted(same)
        links += [Link(member=aid, person=first, source="same name") for aid in rest]
    by_first: dict[str, list[str]] = {}
    for key, ids in by_words.items():
        by_first.setdefault(key[0], []).append(ids[0])
    for short_id, short in words.items():
        fits = {
            long_id
            for long_id in by_first.get(short[0], [])
            if long_id != short_id and _rule_fits(short, words[long_id])
        }
        if len(fits) == 1:  # several longer names fit: which one is unknowable from names alone
            links.append(Link(member=short_id, person=fits.pop(), source="name rule"))
    return links


def read_aliases(path: Path | None) -> AliasesSpec:
    """The aliases file, or nothing when it is unset or absent (links then come from rules alone)."""
    if path is None or not Path(path).is_file():
        return AliasesSpec()
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise AliasesFileError(f"aliases file {path}: {error}") from None
    people: dict[str, list[str]] = {}
    for number, entry in enumerate(data.get("person", []), start=1):
        name, aliases = (
            entry.get("name") if isinstance(entry, dict) else None,
            entry.get("aliases", []) if isinstance(entry, dict) else None,
        )
        if (
            not isinstance(name, str)
            or not name.strip()
            or not isinstance(aliases, list)
            or not all(isinstance(a, str) for a in aliases)
        ):
            raise AliasesFileError(
                f'aliases file {path}: [[person]] #{number} needs name = "..." and aliases = ["..."]'
            )
        people.setdefault(name.strip(), []).extend(a.strip() for a in aliases if a.strip())
    distinct: list[tuple[str, str]] = []
    for number, entry in enumerate(data.get("distinct", []), start=1):
        names = entry.get("names") if isinstance(entry, dict) else None
        if not isinstance(names, list) or len(names) != 2 or not all(isinstance(n, str) and n.strip() for n in names):
            raise AliasesFileError(f'aliases file {path}: [[distinct]] #{number} needs names = ["A", "B"]')
        distinct.append((names[0].strip(), names[1].strip()))
    return AliasesSpec(people=people, distinct=distinct)


def _rank(author: Author) -> tuple[int, int, int, str]:
    counts = author.counts
    byline = counts.get("article", 0) + counts.get("repository", 0)
    return (byline, sum(counts.values()), len(author.full_name), author.full_name)


def link_people(authors: Iterable[Author], spec: AliasesSpec | None = None) -> People:
    """Group the authors into people: rule links minus the file's ``distinct`` pairs, plus its ``person`` entries."""
    spec = spec or AliasesSpec()
    by_id: Mapping[str, Author] = {a.id: a for a in authors}
    parent = {aid: aid for aid in by_id}

    def find(aid: str) -> str:
        while parent[aid] != aid:
            parent[aid] = parent[parent[aid]]
            aid = parent[aid]
        return aid

    unknown: list[str] = []

    def known(name: str) -> str | None:
        aid = author_id(name)
        if aid not in by_id:
            unknown.append(name)
            return None
        return aid

    rejected = set()
    for a, b in spec.distinct:
        ia, ib = known(a), known(b)
        if ia and ib:
            rejected.add(frozenset((ia, ib)))
    sources: dict[str, LinkSource] = {}
    for link in rule_links(by_id.values()):
        if frozenset((link.member, link.person)) in rejected:
            continue
        parent[find(link.member)] = find(link.person)
        sources[link.member] = link.source
    shown: dict[str, str] = {}  # a group's root -> the author the file says it is shown as
    for name, aliases in spec.people.items():
        head = known(name)
        if head is None:
            continue
        for alias in aliases:
            member = known(alias)
            if member is not None and member != head:
                parent[find(member)] = find(head)
                sources[member] = "aliases file"
        shown[find(head)] = head
    groups: dict[str, list[str]] = {}
    for aid in by_id:
        groups.setdefault(find(aid), []).append(aid)
    person_of: dict[str, str] = {}
    links: list[Link] = []
    for root, members in groups.items():
        head = shown.get(root) or max(members, key=lambda aid: _rank(by_id[aid]))
        for member in members:
            person_of[member] = head
            if member != head:
                links.append(Link(member=member, person=head, source=sources.get(member, "name rule")))
    links.sort(key=lambda link: (by_id[link.person].full_name, by_id[link.member].full_name))
    return People(person_of=person_of, links=links, unknown_names=sorted(set(unknown)))


def people_rows(authors: list[Author], people: People) -> list[dict[str, Any]]:
    """One row per person (``llm-twin authors --json``, the MCP authors resource): the shown name, the
    other names with why they are linked, summed document counts; most documents first."""
    by_id = {a.id: a for a in authors}
    sources = {link.member: link.source for link in people.links}
    members: dict[str, list[Author]] = {}
    for author in authors:
        members.setdefault(people.person(author.id), []).append(author)
    rows = []
    for person, group in members.items():
        counts: dict[str, int] = {}
        for member in group:
            for kind, n in member.counts.items():
                counts[kind] = counts.get(kind, 0) + n
        rows.append(
            {
                "id": person,
                "name": by_id[person].full_name,
                "names": [
                    {"name": m.full_name, "id": m.id, "linked_by": sources[m.id]}
                    for m in sorted(group, key=lambda m: m.full_name)
                    if m.id != person
                ],
                "documents": counts,
            }
        )
    return sorted(rows, key=lambda r: (-sum(r["documents"].values()), normalize_name(r["name"])))
