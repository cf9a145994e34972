"""`llm-twin authors [--search TEXT] [--json]`: the people in the store, each with every name they write under."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from llm_twin.cli.errors import user_errors
from llm_twin.domain.authors import normalize_name
from llm_twin.domain.people import link_people, people_rows, read_aliases
from llm_twin.settings import load_settings
from llm_twin.store import read_authors


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
    # A Qdrant server's registry (LLM_TWIN_QDRANT_URL), else the sqlite file beside the vectors.
    with user_errors():
        everyone = read_authors(settings)
    people = link_people(everyone, aliases)
    rows = people_rows(everyone, people)
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
