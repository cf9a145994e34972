"""HyDE: a helper LLM writes a short hypothetical passage that the search blends into each query.

The passage carries the vocabulary a relevant document would use (Gao et al., 2022; query2doc does
the same for BM25). The retriever blends it into every query: dense = normalise(e(q) + w * e(p)),
BM25 = q's terms + w * p's terms. With the local Qwen2.5-Coder-1.5B it did not help on SciFact
(benchmarks/results/retrieval.md: slightly below hybrid DBSF without it), and it costs one
helper-LLM call per question, so it is opt-in (``LLM_TWIN_HYDE=true``), meant for a stronger
hosted helper. Failures and timeouts never fail retrieval: the search runs on the queries alone
and the result says why.
"""

from __future__ import annotations

from dataclasses import dataclass

from llm_twin.llm.base import ChatMessage, GenerationParams, LLMClient
from llm_twin.llm.helper import ask_helper

HYDE_SYSTEM = (
    "You write a short passage from a document that answers or discusses the user's question or claim. "
    "Write two or three factual sentences using the specific technical terms such a document would use. "
    "Do not mention the question, and do not add a preamble."
)
_PREAMBLES = ("here is", "here's", "sure", "certainly", "passage:", "in a scientific paper")


@dataclass
class HydeResult:
    passage: str | None  # None when disabled or failed
    error: str | None = None


def clean_passage(text: str, max_chars: int = 1200) -> str:
    """Strip a chatty first line ("Here is a passage:") and quotes; cap the length."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].casefold().startswith(_PREAMBLES) and lines[0].endswith(":"):
        lines = lines[1:]
    passage = " ".join(lines).strip().strip("\"“”'")
    return passage[:max_chars].strip()


class HypotheticalDocumentWriter:
    """Haystack-style component: ``run(query)`` -> ``HydeResult`` (one helper-LLM call)."""

    def __init__(
        self,
        llm: LLMClient | None,
        max_new_tokens: int = 96,
        timeout_s: float = 20.0,
        instruction: str | None = None,
    ) -> None:
        self.llm = llm
        self.max_new_tokens = max_new_tokens
        self.timeout_s = timeout_s
        # A domain instruction helps (the HyDE paper writes one per task). With a "{query}"
        # placeholder it is the whole user message; otherwise it is the system message.
        self.instruction = instruction or HYDE_SYSTEM

    def messages(self, query: str) -> list[ChatMessage]:
        if "{query}" in self.instruction:
            return [{"role": "user", "content": self.instruction.replace("{query}", query)}]
        return [{"role": "system", "content": self.instruction}, {"role": "user", "content": query}]

    def warm_up(self) -> None:
        if self.llm is not None:
            self.llm.warm_up()

    def run(self, query: str) -> HydeResult:
        if self.llm is None:
            return HydeResult(
                None, "HyDE needs a helper LLM (LLM_TWIN_HELPER_LLM_BACKEND is none); searched without it"
            )
        messages = self.messages(query)
        # Greedy: the passage should be the model's most typical wording, and reproducible.
        params = GenerationParams(
            max_new_tokens=self.max_new_tokens, temperature=0.0, top_p=1.0, repetition_penalty=1.1
        )
        answer = ask_helper(self.llm, messages, params, self.timeout_s)
        if answer.text is None:  # retrieval goes on without the passage
            return HydeResult(None, f"HyDE passage {answer.failure} ({answer.error_type}); searched without it")
        passage = clean_passage(answer.text)
        if len(passage) < 20:
            return HydeResult(None, "helper LLM returned no usable HyDE passage; searched without it")
        return HydeResult(passage)
