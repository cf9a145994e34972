"""A conversation's earlier turns, as the pipeline receives them with a follow-up question.

Only user and assistant turns are history: system prompts belong to the client, not to the twin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["user", "assistant"]
ROLES: tuple[Role, ...] = ("user", "assistant")

#: Heading of the numbered references that answers sent to chat clients end with (``/v1``). A client
#: sends its earlier answers back as history, references included; they are citations, not content.
SOURCES_HEADING = "Sources:"


@dataclass(frozen=True)
class Turn:
    role: Role
    content: str


def without_references(text: str) -> str:
    """``text`` without a trailing references section ("\\n\\nSources:\\n[1] ...")."""
    cut = text.rfind(f"\n\n{SOURCES_HEADING}\n")
    return text[:cut].rstrip() if cut >= 0 else text
