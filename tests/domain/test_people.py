"""One person, several names: the name rules, the aliases file, and the people they make."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_twin.domain.authors import Author
from llm_twin.domain.people import AliasesFileError, AliasesSpec, link_people, read_aliases, rule_links


def _author(name: str, **counts: int) -> Author:
    return Author.from_name(name).model_copy(update={"counts": counts})


def _names(authors: list[Author]) -> dict[str, str]:
    return {a.id: a.full_name for a in authors}


def _pairs(authors: list[Author]) -> set[tuple[str, str]]:
    names = _names(authors)
    return {(names[link.member], names[link.person]) for link in rule_links(authors)}


def test_rules_link_dropped_middle_names_prefixes_and_punctuation() -> None:
    authors = [
        _author("Eric V. Smith"),
        _author("Eric Smith"),
        _author("Pablo Galindo Salgado"),
        _author("Pablo Galindo"),
        _author("R. David Murray"),
        _author("R David Murray"),
        _author("Emma Harper Smith"),
        _author("Emma Smith"),
    ]
    pairs = _pairs(authors)
    murray = {("R. David Murray", "R David Murray"), ("R David Murray", "R. David Murray")}
    assert len(pairs & murray) == 1, "same words, different punctuation: one joins the other"
    assert pairs - murray == {
        ("Eric Smith", "Eric V. Smith"),
        ("Pablo Galindo", "Pablo Galindo Salgado"),
        ("Emma Smith", "Emma Harper Smith"),
    }


@pytest.mark.parametrize(
    ("names", "why"),
    [
        (["Guido van Rossum", "Just van Rossum"], "same surname, different first name"),
        (["Brett Cannon", "Joshua Cannon"], "same surname"),
        (["Eric Smith", "Eric V. Smith", "Eric W. Smith"], "a short name that fits two longer ones"),
        (["Alice", "Alice Smith"], "one word is too little to go on"),
        (["Python Packaging Authority", "Python Packaging Authority Team"], "organisations are not people"),
    ],
)
def test_rules_never_link_on_a_shared_surname_or_an_ambiguous_fit(names: list[str], why: str) -> None:
    assert _pairs([_author(n) for n in names]) == set(), why


def test_people_show_the_byline_name_and_group_every_member() -> None:
    eric, commits = _author("Eric V. Smith", article=4, post=164), _author("Eric Smith", post=7)
    people = link_people([eric, commits, _author("Guido van Rossum", article=20)])
    assert people.person(commits.id) == eric.id
    assert people.members(eric.id) == [eric.id, commits.id]
    assert [(link.member, link.person, link.source) for link in people.links] == [(commits.id, eric.id, "name rule")]


def test_the_aliases_file_adds_people_names_cannot_show_and_rejects_wrong_rule_links(tmp_path: Path) -> None:
    alyssa, nick = _author("Alyssa Coghlan", article=50), _author("Nick Coghlan", post=668)
    eric, commits = _author("Eric V. Smith", article=4), _author("Eric Smith", post=7)
    path = tmp_path / "aliases.toml"
    path.write_text(
        '[[person]]\nname = "Alyssa Coghlan"\naliases = ["Nick Coghlan", "Nobody Known"]\n\n'
        '[[distinct]]\nnames = ["Eric Smith", "Eric V. Smith"]\n',
        encoding="utf-8",
    )
    people = link_people([alyssa, nick, eric, commits], read_aliases(path))
    assert people.person(nick.id) == alyssa.id, "the file's name is shown even though Nick has more documents"
    assert people.person(commits.id) == commits.id, "the distinct pair overrides the rule"
    assert people.unknown_names == ["Nobody Known"]
    assert {link.source for link in people.links} == {"aliases file"}


def test_a_missing_aliases_file_means_rules_only(tmp_path: Path) -> None:
    assert read_aliases(tmp_path / "absent.toml") == AliasesSpec()
    assert read_aliases(None) == AliasesSpec()


@pytest.mark.parametrize(
    "text",
    [
        "[[person]]\nname = 3\n",
        '[[person]]\nname = "A"\naliases = "B"\n',
        '[[distinct]]\nnames = ["A"]\n',
        "not toml [",
    ],
)
def test_a_malformed_aliases_file_is_a_config_error_naming_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "aliases.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(AliasesFileError, match=r"aliases\.toml"):
        read_aliases(path)
