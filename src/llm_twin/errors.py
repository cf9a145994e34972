"""Errors shared across stages; messages are safe to show to users (no internals)."""


class LLMTwinError(RuntimeError):
    """Base class for expected, user-facing failures."""


class StoreUnavailableError(LLMTwinError):
    """The vector store cannot be opened or reached (HTTP 503)."""


class StoreLockedError(StoreUnavailableError):
    """Another process owns the embedded store directory."""


class InvalidInputError(LLMTwinError, ValueError):
    """User input is invalid; ``field`` names what was wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
