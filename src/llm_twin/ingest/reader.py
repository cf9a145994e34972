"""Read JSONL records (the format of the demo corpus) into documents; bad lines become errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_twin.domain.authors import Author, normalize_name
from llm_twin.domain.documents import CONTENT_TYPES, Document
from llm_twin.errors import EXIT_USAGE, LLMTwinError
from llm_twin.ingest.clean import clean_text

_KNOWN = {
    "id",
    "content_type",
    "text",
    "authors",
    "author",
    "title",
    "link",
    "url",
    "urls",
    "date",
    "created",
    "name",
    "source",
}


@dataclass(frozen=True)
class BadLine:
    path: Path
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass(frozen=True)
class RawRecord:
    path: Path
    line: int
    data: dict[str, Any]
    author_names: list[str]


class RecordError(LLMTwinError, ValueError):
    """One input line is malformed; the reader adds its file:line."""

    exit_code = EXIT_USAGE


def _string(data: dict[str, Any], key: str, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise RecordError(f"missing field {key!r}")
        return None
    if not isinstance(value, str):
        raise RecordError(f"field {key!r} must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise RecordError(f"field {key!r} is empty")
    return value.strip() or None


def _authors(data: dict[str, Any]) -> list[str]:
    if "authors" in data and data["authors"] is not None:
        names = data["authors"]
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise RecordError("field 'authors' must be a list of strings")
    elif isinstance(data.get("author"), str):
        names = [data["author"]]
    elif data.get("author") is not None:
        raise RecordError("field 'author' must be a string")
    else:
        raise RecordError("missing field 'authors' (list) or 'author' (string)")
    cleaned: list[str] = []
    for name in names:
        name = " ".join(name.split())
        if name and normalize_name(name) not in {normalize_name(c) for c in cleaned}:
            cleaned.append(name)
    if not cleaned:
        raise RecordError("no author name given")
    return cleaned


def read_jsonl(path: Path) -> Iterator[RawRecord | BadLine]:
    """Yield one record or one BadLine per non-blank line; never raises on content."""
    try:
        handle = path.open("r", encoding="utf-8", errors="strict")
    except OSError as error:
        yield BadLine(path, 0, f"cannot read file: {error.strerror or error}")
        return
    with handle:
        line_no = 0
        while True:
            try:
                line = handle.readline()
            except UnicodeDecodeError:
                yield BadLine(path, line_no + 1, "not valid UTF-8")
                return
            if not line:
                break
            line_no += 1
            if line.strip():
                yield parse_line(line, path, line_no)


#: Where records of a request body are said to come from in errors.
REQUEST_BODY = Path("request")


def parse_body(text: str) -> tuple[list[RawRecord | BadLine], str]:
    """A request body: a JSON array of records, or JSONL. The records and what a position is
    called in errors ("item" of an array, "line" of JSONL; both counted from 1)."""
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise RecordError(f"invalid JSON array ({error.msg} at line {error.lineno} column {error.colno})") from None
        if not isinstance(data, list):
            raise RecordError("expected a JSON array of records")
        return [parse_record(item, REQUEST_BODY, i) for i, item in enumerate(data, start=1)], "item"
    lines = text.splitlines()
    return [parse_line(line, REQUEST_BODY, i) for i, line in enumerate(lines, start=1) if line.strip()], "line"


def parse_line(line: str, path: Path, line_no: int) -> RawRecord | BadLine:
    """One JSONL line (``path`` and ``line_no`` name it in errors: a file, or a request body)."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        return BadLine(path, line_no, f"invalid JSON ({error.msg} at column {error.colno})")
    return parse_record(data, path, line_no)


def parse_record(data: Any, path: Path, line_no: int) -> RawRecord | BadLine:
    """One decoded record (a JSONL line's object, or an element of a JSON array)."""
    if not isinstance(data, dict):
        return BadLine(path, line_no, "a record must be a JSON object")
    try:
        _validate(data)
        return RawRecord(path, line_no, data, _authors(data))
    except RecordError as error:
        return BadLine(path, line_no, str(error))


def _validate(data: dict[str, Any]) -> None:
    _string(data, "id", required=True)
    content_type = _string(data, "content_type", required=True)
    if content_type not in CONTENT_TYPES:
        raise RecordError(f"content_type must be one of {', '.join(CONTENT_TYPES)}, got {content_type!r}")
    _string(data, "text", required=True)
    for key in ("title", "link", "url", "date", "created", "name", "source"):
        _string(data, key)
    urls = data.get("urls")
    if urls is not None and not (isinstance(urls, list) and all(isinstance(u, str) for u in urls)):
        raise RecordError("field 'urls' must be a list of strings")


def _link(data: dict[str, Any]) -> str | None:
    for key in ("link", "url"):
        if isinstance(data.get(key), str) and data[key].strip():
            return data[key].strip()
    urls = data.get("urls") or []
    # PyPI-style "Label, https://..." entries: prefer the source repository.
    parsed = [(u.split(",", 1)[0].strip().lower(), u.split(",", 1)[-1].strip()) for u in urls]
    for preferred in ("source", "repository", "source code", "homepage"):
        for label, url in parsed:
            if label == preferred and url.startswith("http"):
                return url
    for _, url in parsed:
        if url.startswith("http"):
            return url
    source = data.get("source")
    if isinstance(source, str) and source.startswith("github:") and " commit " in source:
        repo, sha = source[len("github:") :].split(" commit ", 1)
        return f"https://github.com/{repo.strip()}/commit/{sha.strip()}"
    if data.get("content_type") == "article" and str(data.get("id", "")).startswith("pep-"):
        return f"https://peps.python.org/{data['id']}/"
    return None


def to_document(record: RawRecord, authors: list[Author]) -> Document:
    data = record.data
    text = clean_text(data["text"])
    if not text:
        raise RecordError("field 'text' is empty after cleaning")
    title = _string(data, "title")
    if title is None and data["content_type"] == "post":
        title = text.split("\n", 1)[0][:120]  # a commit's subject line names it best
    metadata = {k: v for k, v in data.items() if k not in _KNOWN and isinstance(v, (str, int, float, bool)) and v != ""}
    return Document(
        id=data["id"].strip(),
        content_type=data["content_type"],
        text=text,
        authors=authors,
        title=title,
        link=_link(data),
        date=_string(data, "date") or _string(data, "created"),
        name=_string(data, "name") or (title if data["content_type"] == "repository" else None),
        metadata=metadata,
    )
