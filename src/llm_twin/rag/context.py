"""Extractive context selection: the sentences of the retrieved chunks that bear on the question.

On CPU the model's time to the first token is mostly prompt evaluation, and five whole chunks are
~1.3k tokens of which a few sentences answer the question (RECOMP, Provence and LongLLMLingua
report the same quality at 3-10x fewer tokens). So each chunk is split into sentences, every
sentence is scored against the question with the retrieval embedder (one batched call), and the
best sentences are kept under a token budget, in their original order within each chunk. A chunk
none of whose sentences is kept leaves the context; citations still point at whole sources.

The best sentence score is also the evidence score: when even the best sentence is far from the
question, the writing does not answer it, and the pipeline says so without calling the model.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from llm_twin.domain.documents import EmbeddedChunk
from llm_twin.domain.sentences import split_sentences
from llm_twin.embedding.onnx_embedder import OnnxSentenceEmbedder

_WORD = re.compile(r"\w+")
#: Words per token for the budget estimate (the embedder's word-piece ratio on English prose);
#: the prompt builder counts exact tokens afterwards, this only decides what to keep.
TOKENS_PER_WORD = 1.35
ELLIPSIS = " … "


@dataclass(frozen=True)
class Sentence:
    chunk: int
    position: int
    text: str
    words: int


@dataclass
class SelectedContext:
    """The chunks to put in the prompt (content replaced by the kept sentences) and the evidence."""

    chunks: list[EmbeddedChunk]
    #: Best sentence-to-question cosine over all chunks (0 when there were none).
    evidence: float
    #: Tokens of the kept text and of the chunks as retrieved (the model's count when given, else estimated).
    tokens: int
    tokens_before: int


def estimate_tokens(words: int) -> int:
    return int(words * TOKENS_PER_WORD) + 1


class ExtractiveContextSelector:
    """Haystack-style component: ``run(question, chunks)`` -> ``SelectedContext``.

    ``budget_tokens``: the kept text over all chunks (the prompt adds headers and instructions).
    Sentences are chosen by score alone, best first, so the budget holds what bears most on the
    question wherever it is; one scoring below ``relative_floor`` times the best is left out even
    when there is room (unrelated text costs prompt time and invites the model to use it). A
    sentence longer than ``max_sentence_words`` keeps its start. ``count_tokens``: the generation
    model's tokenizer, so the budget is in the tokens the model reads (PEP text with code and
    punctuation costs about twice the word-based estimate used without it).
    """

    def __init__(
        self,
        embedder: OnnxSentenceEmbedder,
        budget_tokens: int = 240,
        relative_floor: float = 0.3,
        max_sentence_words: int = 80,
        count_tokens: Callable[[str], int] | None = None,
    ) -> None:
        self.embedder = embedder
        self.budget_tokens = budget_tokens
        self.relative_floor = relative_floor
        self.max_sentence_words = max_sentence_words
        self.count_tokens = count_tokens

    def warm_up(self) -> None:
        self.embedder.warm_up()

    def run(self, question: str, chunks: list[EmbeddedChunk]) -> SelectedContext:
        sentences: list[Sentence] = []
        for index, chunk in enumerate(chunks):
            for position, text in enumerate(split_sentences(chunk.content)):
                words = _WORD.findall(text)
                if len(words) > self.max_sentence_words:  # a long run-on (a table, code): its start
                    text = " ".join(text.split()[: self.max_sentence_words]) + " …"
                sentences.append(Sentence(index, position, text, min(len(words), self.max_sentence_words)))
        before = sum(self._cost(c.content, len(_WORD.findall(c.content))) for c in chunks)
        if not sentences:
            return SelectedContext(chunks=[], evidence=0.0, tokens=0, tokens_before=before)
        vectors = self.embedder.embed([question] + [s.text for s in sentences])
        scores = vectors[1:] @ vectors[0]  # unit vectors: cosine
        keep: set[int] = set()
        spent = 0
        cutoff = float(scores.max()) * self.relative_floor
        for i in np.argsort(-scores, kind="stable"):
            if scores[i] < cutoff:
                break
            cost = self._cost(sentences[i].text, sentences[i].words)
            if spent + cost > self.budget_tokens and keep:
                continue  # a shorter, lower-scored sentence may still fit
            keep.add(int(i))
            spent += cost
        out: list[EmbeddedChunk] = []
        for index, chunk in enumerate(chunks):
            kept = [s for n, s in enumerate(sentences) if n in keep and s.chunk == index]
            if not kept:
                continue
            best = max(float(scores[n]) for n, s in enumerate(sentences) if n in keep and s.chunk == index)
            text = ELLIPSIS.join(s.text for s in sorted(kept, key=lambda s: s.position))
            metadata = {**chunk.metadata, "passage_score": round(best, 4), "passage_of_chars": len(chunk.content)}
            out.append(chunk.model_copy(update={"content": text, "metadata": metadata}))
        return SelectedContext(chunks=out, evidence=float(scores.max()), tokens=spent, tokens_before=before)

    def _cost(self, text: str, words: int) -> int:
        return self.count_tokens(text) if self.count_tokens is not None else estimate_tokens(words)
