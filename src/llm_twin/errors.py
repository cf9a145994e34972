"""The one error root. Every expected failure is an ``LLMTwinError`` subclass that carries how it
is reported: the HTTP status, a stable machine-readable code and a message that is safe to show
(the API never returns exception text it did not write for users), and the CLI exit code.

The API maps errors in one place (``api/errors.py``) and the CLI in one place (``cli/errors.py``),
both from these attributes, so a new error kind needs no new ``except`` clause anywhere.
"""

from __future__ import annotations

from typing import ClassVar

EXIT_FAILED = 1  # a dependency is unavailable or a step failed
EXIT_USAGE = 2  # the input or the configuration is invalid


class LLMTwinError(RuntimeError):
    """Base class for expected failures."""

    http_status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    #: Shown to API clients instead of the exception text; ``None``: the text itself is safe.
    public_message: ClassVar[str | None] = "internal server error"
    exit_code: ClassVar[int] = EXIT_FAILED
    #: The request field at fault, when one is (reported with the error).
    field: str | None = None
    #: Seconds a client should wait before trying again (the API sends it as ``Retry-After``).
    retry_after_s: float | None = None

    @property
    def safe_message(self) -> str:
        return self.public_message if self.public_message is not None else str(self)


class InvalidInputError(LLMTwinError, ValueError):
    """User input is invalid; ``field`` names what was wrong."""

    http_status = 422
    code = "invalid_input"
    public_message = None
    exit_code = EXIT_USAGE
    field: str

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class PayloadTooLargeError(InvalidInputError):
    """A request body over its limit (the field names the limit)."""

    http_status = 413
    code = "payload_too_large"


class NotFoundError(LLMTwinError, LookupError):
    """What the request names does not exist; ``field`` names where it was named."""

    http_status = 404
    code = "not_found"
    public_message = None
    exit_code = EXIT_USAGE

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class ConfigError(LLMTwinError, ValueError):
    """Configuration is invalid; the message names the setting (environment variable or option)."""

    http_status = 503
    code = "not_ready"
    public_message = "the service is starting or failed to start; see /ready"
    exit_code = EXIT_USAGE


class UnavailableError(LLMTwinError):
    """A dependency (store, model file, optional package) is missing or cannot be reached."""

    http_status = 503
    code = "not_ready"
    public_message = "the service is starting or failed to start; see /ready"


class StoreUnavailableError(UnavailableError):
    """The vector store cannot be opened or reached."""

    code = "store_unavailable"
    public_message = "the vector store is unavailable (run `llm-twin ingest` first, or check the Qdrant server)"


class StoreLockedError(StoreUnavailableError):
    """Another process owns the embedded store directory."""

    public_message = "the vector store is locked by another process; try again later"


class LLMError(LLMTwinError):
    """The language model failed; the message is safe to log, never returned verbatim to API clients."""

    http_status = 502
    code = "llm_error"
    public_message = "the language model failed to produce an answer"


class LLMUnavailableError(LLMError):
    """The endpoint or model cannot be reached or loaded."""

    http_status = 503
    code = "llm_unavailable"
    public_message = "the language model is unavailable"


class LLMTimeoutError(LLMError):
    """The endpoint did not answer in time."""

    http_status = 504
    code = "llm_timeout"
    public_message = "the language model did not answer in time; try again"


class DeadlineExceededError(LLMTwinError):
    """The request's overall deadline (``LLM_TWIN_REQUEST_DEADLINE_S``) passed before it was answered."""

    http_status = 504
    code = "deadline_exceeded"
    public_message = "the request did not finish within its deadline; try again"


class OverloadedError(LLMTwinError):
    """Too many requests are already waiting for the model: the client should come back later."""

    http_status = 429
    code = "overloaded"
    public_message = "the service is busy; retry after the number of seconds in Retry-After"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RateLimitedError(OverloadedError):
    """This client (API key) sent more requests than ``LLM_TWIN_RATE_LIMIT_PER_MINUTE`` allows."""

    code = "rate_limited"
    public_message = "too many requests for this API key; retry after the number of seconds in Retry-After"
