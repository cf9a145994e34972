"""Follow-up questions: a standalone question for search, and the author the conversation is about.

A follow-up ("And why did he reject it?") cannot be searched as asked. ``HelperLLMQuestionRewriter``
asks the helper LLM for a standalone question; ``FollowUpResolver`` adds the author: when the
follow-up names nobody, the person the latest user turn named carries over. That step is the
deterministic ``AuthorResolver`` (no LLM), so the author still carries over when the helper LLM is
off, fails or is too small to rewrite well. A first turn (no history) runs none of this.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from llm_twin.domain.conversation import Turn, without_references
from llm_twin.domain.limits import MAX_QUERY_CHARS
from llm_twin.llm.base import ChatMessage, GenerationParams, LLMClient
from llm_twin.llm.helper import ask_helper
from llm_twin.retrieval.author_resolver import AuthorResolver, shares_a_word
from llm_twin.retrieval.types import REWRITE_FAILED, AuthorMatch

#: With the example, Qwen2.5-Coder-1.5B rewrote both follow-ups of a hand check ("What else did he write
#: about code style?" -> "What else did Guido van Rossum write about code style?"); without it, it
#: continued the conversation with an answer. SmolLM2-135M answers either way (``parse_rewrite`` refuses it).
REWRITE_SYSTEM = (
    "You rewrite a follow-up question from a conversation as a standalone question that can be understood "
    "without the conversation: replace pronouns such as he, she, they, it or this with the names or things "
    "they refer to, and keep every name and technical term. Never answer the question. Reply with the "
    "standalone question only.\n\n"
    "Example:\nConversation:\nUser: What did Ada Lovelace write about the Analytical Engine?\n"
    "Assistant: She described how it could compute Bernoulli numbers [1].\n"
    "Follow-up question: What else did she write about?\n"
    "Standalone question: What else did Ada Lovelace write about?"
)
#: The helper sees the latest turns only, each cut short: a rewrite needs the recent referents, and
#: a short prompt keeps it one quick helper call.
MAX_REWRITE_TURNS = 6
MAX_REWRITE_TURN_CHARS = 600
_LABEL = re.compile(r"^(?:standalone|rewritten|reformulated)?\s*(?:question|query)\s*:\s*", re.IGNORECASE)
_ANSWER_SHAPED = re.compile(r"^(?:a|answer|response)\s*:", re.IGNORECASE)
_QUOTES = "\"'`“”‘’«»*"


def parse_rewrite(text: str, question: str) -> str | None:
    """The first line of the helper's answer without labels and quotes; None when it is no question."""
    line = next((row.strip() for row in text.strip().splitlines() if row.strip()), "")
    if _ANSWER_SHAPED.match(line):  # small models answer instead of rewriting
        return None
    line = _LABEL.sub("", line).strip().strip(_QUOTES).strip()
    # A rewrite adds referents, not paragraphs: much longer than the question means it answered.
    if not line or len(line) > min(MAX_QUERY_CHARS, 4 * len(question) + 200):
        return None
    # A question rewritten as a statement is an answer (a small model's "Guido wrote about [1] ...").
    if question.rstrip().endswith("?") and not line.endswith("?"):
        return None
    return line


def conversation_text(history: Sequence[Turn], max_turns: int, max_chars: int) -> str:
    """The latest turns as "User: ..." / "Assistant: ..." lines, references dropped, each cut to ``max_chars``."""
    lines = []
    for turn in history[-max_turns:]:
        text = " ".join(without_references(turn.content).split())
        if len(text) > max_chars:
            text = text[: max_chars - 1].rstrip() + "…"
        lines.append(f"{turn.role.capitalize()}: {text}")
    return "\n".join(lines)


@dataclass(frozen=True)
class RewriteResult:
    question: str  # the standalone question, or the follow-up as asked when there is none
    error: str | None = None  # why the follow-up is searched as asked
    #: ``REWRITE_FAILED`` when the helper was asked and gave nothing usable (not when none is configured).
    degraded: str | None = None


class HelperLLMQuestionRewriter:
    """Haystack-style component: ``run(question, history)`` -> the standalone question (helper LLM).

    Never raises: without a helper LLM, or when it fails, times out or answers with no question,
    the result is the follow-up as asked and ``error`` says why.
    """

    def __init__(
        self,
        llm: LLMClient | None,
        timeout_s: float = 20.0,
        *,
        max_turns: int = MAX_REWRITE_TURNS,
        max_turn_chars: int = MAX_REWRITE_TURN_CHARS,
    ) -> None:
        self.llm = llm
        self.timeout_s = timeout_s
        self.max_turns = max_turns
        self.max_turn_chars = max_turn_chars

    def warm_up(self) -> None:
        if self.llm is not None:
            self.llm.warm_up()

    def run(self, question: str, history: Sequence[Turn]) -> RewriteResult:
        if not history:
            return RewriteResult(question)
        if self.llm is None:
            return RewriteResult(question, "no helper LLM configured; the follow-up was searched as asked")
        conversation = conversation_text(history, self.max_turns, self.max_turn_chars)
        messages: list[ChatMessage] = [
            {"role": "system", "content": REWRITE_SYSTEM},
            {
                "role": "user",
                "content": f"Conversation:\n{conversation}\nFollow-up question: {question}\nStandalone question:",
            },
        ]
        params = GenerationParams(max_new_tokens=64, temperature=0.0)
        answer = ask_helper(self.llm, messages, params, self.timeout_s)
        if answer.text is None:
            return RewriteResult(
                question,
                f"question rewrite {answer.failure} ({answer.error}); the follow-up was searched as asked",
                REWRITE_FAILED,
            )
        rewritten = parse_rewrite(answer.text, question)
        if rewritten is None:
            return RewriteResult(
                question, "helper LLM returned no usable question; the follow-up was searched as asked", REWRITE_FAILED
            )
        return RewriteResult(rewritten)


@dataclass
class FollowUp:
    """What a follow-up is searched as: the standalone ``question``, and the ``author`` carried over
    from the conversation (None: self-query decides on ``question``)."""

    asked: str
    question: str
    author: AuthorMatch | None = None
    warnings: list[str] = field(default_factory=list)
    degraded: list[str] = field(default_factory=list)
    #: Every turn and the follow-up, for checking that a name in the rewrite came from the conversation.
    conversation: str = ""

    def grounded(self, match: AuthorMatch) -> AuthorMatch:
        """``match`` (self-query on the rewrite), or no author when its name occurs nowhere in the
        conversation: a small helper model can put a name into a rewrite that nobody wrote."""
        if match.author is None or match.matched_text is None or shares_a_word(match.matched_text, self.conversation):
            return match
        return AuthorMatch(author=None, reason=f"{match.reason}, but that name is not in the conversation; no filter")


def author_from_history(resolver: AuthorResolver, history: Sequence[Turn]) -> AuthorMatch | None:
    """The author of the latest user turn that names somebody; None when it names several people,
    an ambiguous name, or when no user turn names anybody."""
    for turn in reversed(history):
        if turn.role != "user":
            continue
        match = resolver.run(turn.content)
        if match.status == "none":
            continue
        if match.author is None:
            return None  # the latest mention is ambiguous: carrying an older author would guess
        return AuthorMatch(
            author=match.author,
            reason=f"carried over from the conversation: {match.reason}",
            matched_text=match.matched_text,
        )
    return None


class FollowUpResolver:
    """Haystack-style component: ``run(question, history)`` -> ``FollowUp`` (rewrite + author carry-over)."""

    def __init__(self, rewriter: HelperLLMQuestionRewriter) -> None:
        self.rewriter = rewriter

    def warm_up(self) -> None:
        self.rewriter.warm_up()

    def run(self, question: str, history: Sequence[Turn], resolver: AuthorResolver) -> FollowUp:
        rewrite = self.rewriter.run(question, history)
        followup = FollowUp(
            asked=question,
            question=rewrite.question,
            warnings=[rewrite.error] if rewrite.error else [],
            degraded=[rewrite.degraded] if rewrite.degraded else [],
            conversation="\n".join([*(turn.content for turn in history), question]),
        )
        if resolver.run(question).status == "none":  # the follow-up names nobody: "he", "she", "they"
            followup.author = author_from_history(resolver, history)
        return followup
