"""Progress a person sees in every mode: a rich bar on a terminal, one line every few seconds
otherwise (logs, CI), nothing with ``--json`` off a terminal."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from llm_twin.ingest.progress import format_duration

#: Off a terminal: one progress line at most this often.
LINE_INTERVAL_S = 10.0


@dataclass
class ProgressReporter:
    """``total(n)`` once the amount of work is known, ``advance(n)`` as it is done."""

    label: str
    unit: str
    console: Console
    bar: Progress | None = None
    lines: bool = False
    _task: int = 0
    _total: int | None = None
    _done: int = 0
    _started: float = field(default_factory=time.monotonic)
    _last_line: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> int:
        return self._done

    def total(self, total: int) -> None:
        self._total = total
        if self.bar is not None:
            self.bar.update(self._task, total=total)  # type: ignore[arg-type]  # rich's TaskID is an int

    def advance(self, done: int) -> None:
        self._done += done
        elapsed = time.monotonic() - self._started
        rate = self._done / elapsed if elapsed > 0 else 0.0
        if self.bar is not None:
            self.bar.update(self._task, advance=done, rate=f"{rate:.1f}")  # type: ignore[arg-type]
        elif self.lines and time.monotonic() - self._last_line >= LINE_INTERVAL_S:
            self._last_line = time.monotonic()
            self.console.print(self.line(), highlight=False, soft_wrap=True)

    def line(self) -> str:
        elapsed = time.monotonic() - self._started
        rate = self._done / elapsed if elapsed > 0 else 0.0
        text = f"{self.label}: {self._done}"
        if self._total:
            text += f"/{self._total} {self.unit} ({100 * self._done / self._total:.1f}%)"
            if rate > 0:
                text += f", ETA {format_duration((self._total - self._done) / rate)}"
        else:
            text += f" {self.unit}"
        return text + f", {rate:.1f} {self.unit}/s, elapsed {format_duration(elapsed)}"


@contextmanager
def progress_reporter(label: str, unit: str, *, quiet: bool = False) -> Iterator[ProgressReporter]:
    """On stderr: a bar on a terminal, else a line every ``LINE_INTERVAL_S`` (none when ``quiet``)."""
    err = Console(stderr=True)
    if not err.is_terminal:
        reporter = ProgressReporter(label, unit, err, lines=not quiet)
        yield reporter
        if not quiet and reporter.done:
            err.print(reporter.line(), highlight=False, soft_wrap=True)
        return
    with Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(f"{unit}  {{task.fields[rate]}} {unit}/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
    ) as bar:
        task = bar.add_task(label, total=None, rate="-")
        yield ProgressReporter(label, unit, err, bar=bar, _task=task)
