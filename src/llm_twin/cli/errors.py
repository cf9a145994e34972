"""The one CLI error handler: an expected failure is one ``error: ...`` line on stderr and its exit
code (``LLMTwinError.exit_code``: 2 for bad input or configuration, 1 for a failed dependency),
never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import typer

from llm_twin.errors import EXIT_USAGE, InvalidInputError, LLMTwinError

EXIT_INTERRUPTED = 130


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print ``error: message`` on stderr and return the ``typer.Exit`` to raise."""
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    return typer.Exit(code)


@contextmanager
def user_errors(
    options: Mapping[str, str] | None = None, hints: Mapping[type[BaseException], str] | None = None
) -> Iterator[None]:
    """Turn expected failures inside the block into one line and an exit code.

    ``options`` maps a pipeline field to the command-line option that set it (``k`` -> ``--k``),
    so an invalid value is reported under the name the user typed. ``hints`` adds a sentence for
    an error kind (e.g. how to reach a running server when the store is locked).
    """
    try:
        yield
    except InvalidInputError as error:
        name = (options or {}).get(error.field)
        raise fail(f"{name}: {error.message}" if name else str(error), error.exit_code) from None
    except LLMTwinError as error:
        hint = next((text for kind, text in (hints or {}).items() if isinstance(error, kind)), "")
        raise fail(f"{error}{hint}", error.exit_code) from None
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        raise typer.Exit(EXIT_INTERRUPTED) from None
