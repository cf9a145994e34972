"""`llm-twin authors [--search TEXT] [--json]`: the people in the store, each with every name they write under."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from llm_twin.cli.errors import fail, user_errors
from llm_twin.domain.authors import Author, normalize_name
from llm_twin.domain.people import link_people, read_aliases
from llm_twin.errors import EXIT_FAILED
from llm_twin.settings import load_settings
from llm_twin.store.registry import AuthorRegistry


def people_rows(authors: list[Author], person_of: dict[str, str], sources: Mapping[str, str]) -> list[dict[str, Any]]:
    """One row per person: the shown name, the other names with why they are linked, summed counts."""
    by_id = {a.id: a for a in authors}
    members: dict[str, list[Author]] = {}
    for author in authors:
        members.setdefault(person_of.get(author.id, author.id), []).append(author)
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


def authors(
    search: Annotated[
        Optional[str], typer.Option("--search", help="Only people with a name containing this text.")
    ] = None,
    linked: Annotated[bool, typer.Option("--linked", help="Only people who write under more than one name.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """List the people in the store: each person's names (and what links them) and document counts."""
    with user_errors():
        settings = load_settings()
        aliases = read_aliases(settings.aliases_file)
    if not settings.registry_path.exists():
        raise fail(f"no author registry at {settings.registry_path}: run `llm-twin ingest` first", EXIT_FAILED)
    registry = AuthorRegistry(settings.registry_path, read_only=True)
    try:
        everyone = registry.authors()
    finally:
        registry.close()
    people = link_people(everyone, aliases)
    sources = {link.member: link.source for link in people.links}
    rows = people_rows(everyone, people.person_of, sources)
    if search:
        needle = normalize_name(search)
        rows = [
            r for r in rows if any(needle in normalize_name(n) for n in [r["name"], *(m["name"] for m in r["names"])])
        ]
    if linked:
        rows = [r for r in rows if r["names"]]
    for name in people.unknown_names:
        sys.stderr.write(f"warning: {settings.aliases_file} names {name!r}, who has no documents here\n")
    if as_json:
        sys.stdout.write(json.dumps(rows, ensure_ascii=False) + "\n")
        return
    table = Table(title=f"{len(rows)} people ({len(everyone)} names, {len(people.links)} linked)")
    for column in ("person", "also writes as", "articles", "posts", "repositories"):
        table.add_column(column, justify="right" if column in ("articles", "posts", "repositories") else "left")
    for row in rows:
        others = ", ".join(f"{m['name']} ({m['linked_by']})" for m in row["names"])
        docs = row["documents"]
        table.add_row(row["name"], others, *(str(docs.get(kind, 0)) for kind in ("article", "post", "repository")))
    Console().print(table)


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    app.command("authors")(authors)
