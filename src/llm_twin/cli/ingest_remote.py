"""`llm-twin ingest --url URL PATH ...`: send JSONL files to a running service (``POST /documents``).

Lines are checked here first (the same reader the service uses), so bad lines are reported as
``file:line`` and left out like a local ingest does; the rest go in batches of whole lines, each
under the service's record and byte limits, blank lines kept so that a line number the service
names in an error maps back to the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from llm_twin.cli.errors import fail
from llm_twin.cli.progress import progress_reporter
from llm_twin.domain.limits import MAX_DOCUMENTS_BODY_BYTES, MAX_DOCUMENTS_PER_REQUEST
from llm_twin.errors import EXIT_FAILED, EXIT_USAGE
from llm_twin.ingest.reader import BadLine, parse_line

#: Room left in a request for what is not the lines themselves.
_BODY_MARGIN = 4096
_LINE_FIELD = re.compile(r"^line (\d+)")


@dataclass
class Batch:
    path: Path
    first_line: int
    lines: list[str] = field(default_factory=list)
    records: int = 0
    size: int = 0

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


@dataclass
class RemoteReport:
    written: int = 0
    skipped: int = 0
    chunks_written: int = 0
    seconds: float = 0.0
    requests: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    bad_lines: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, float | int]:
        return {**self.counts, "seconds": round(self.seconds, 2)}

    def table_rows(self) -> list[tuple[str, str]]:
        rows = [
            (key, str(self.counts.get(key, 0))) for key in ("articles", "posts", "repositories", "authors", "chunks")
        ]
        return [
            *rows,
            ("documents written / skipped", f"{self.written} / {self.skipped}"),
            ("chunks written", str(self.chunks_written)),
            ("requests", str(self.requests)),
            ("bad lines", str(len(self.bad_lines))),
            ("seconds (service)", f"{self.seconds:.1f}"),
        ]


def plan_batches(files: list[Path], batch: int) -> tuple[list[Batch], list[str]]:
    """Whole-line batches of at most ``batch`` records and the body limit; bad lines as ``file:line: why``."""
    batch = min(batch, MAX_DOCUMENTS_PER_REQUEST)
    limit = MAX_DOCUMENTS_BODY_BYTES - _BODY_MARGIN
    batches: list[Batch] = []
    bad: list[str] = []
    for path in files:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise fail(f"{path}: not valid UTF-8") from None
        except OSError as error:
            raise fail(f"{path}: cannot read file: {error.strerror or error}") from None
        current = Batch(path, 1)
        for number, line in enumerate(lines, start=1):
            size = len(line.encode("utf-8")) + 1
            if line.strip():
                parsed = parse_line(line, path, number)
                if size > limit:
                    parsed = BadLine(path, number, f"line longer than {limit} bytes")
                if isinstance(parsed, BadLine):
                    bad.append(str(parsed))
                    line, size = "", 1  # left out, its number kept
            if line and (current.records >= batch or current.size + size > limit):
                batches.append(current)
                current = Batch(path, number)
            current.lines.append(line)
            current.size += size
            current.records += 1 if line.strip() else 0
        if current.records:
            batches.append(current)
    return batches, bad


def _error_message(response: httpx.Response) -> tuple[str, str | None]:
    try:
        error = response.json()["error"]
        return str(error["message"]), error.get("field")
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}", None


def _refusal(response: httpx.Response, batch: Batch, url: str) -> Exception:
    message, field_name = _error_message(response)
    status = response.status_code
    if status in (401, 403):
        return fail(
            f"{url} refused the request (HTTP {status}: {message}); pass a key with --api-key or LLM_TWIN_API_KEY",
            EXIT_USAGE,
        )
    if status == 422:
        match = _LINE_FIELD.match(field_name or "")
        if match:  # the service counts lines from the batch's first; name the file's line instead
            line = batch.first_line + int(match.group(1)) - 1
            return fail(f"{batch.path}:{line}: {message.split(': ', 1)[-1]}", EXIT_USAGE)
        return fail(f"{batch.path} (lines from {batch.first_line}): {message}", EXIT_USAGE)
    if status == 413:
        return fail(f"{url}: {message} (send smaller batches with --batch)", EXIT_USAGE)
    return fail(f"{url}: HTTP {status}: {message}", EXIT_FAILED)


def send_files(url: str, files: list[Path], *, api_key: str | None, batch: int, quiet: bool) -> RemoteReport:
    """POST the files' records to ``url``/documents; the service's counts when all are in."""
    batches, bad = plan_batches(files, batch)
    report = RemoteReport(bad_lines=bad)
    headers = {"content-type": "application/x-ndjson"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    base = url.rstrip("/")
    try:
        with (
            httpx.Client(base_url=base, headers=headers, timeout=httpx.Timeout(600.0, connect=5.0)) as client,
            progress_reporter(f"ingest -> {base}", "documents", quiet=quiet) as progress,
        ):
            progress.total(sum(b.records for b in batches))
            for item in batches:
                response = client.post("/documents", content=item.text().encode("utf-8"))
                if response.status_code != 200:
                    raise _refusal(response, item, base)
                body: dict[str, Any] = response.json()
                report.requests += 1
                report.written += int(body["written"])
                report.skipped += int(body["skipped"])
                report.chunks_written += int(body["chunks_written"])
                report.seconds += float(body["seconds"])
                report.counts = dict(body["counts"])
                progress.advance(item.records)
    except httpx.HTTPError as error:
        raise fail(f"cannot reach {base}: {type(error).__name__}", EXIT_FAILED) from None
    except (ValueError, KeyError) as error:
        raise fail(f"{base} answered something other than the LLM twin API ({error})", EXIT_FAILED) from None
    return report
