"""Sentences of a chunk of writing: the unit context selection and the sentence reranker score."""

from __future__ import annotations

import re

#: Sentence ends: . ! ? (not inside "e.g." / "3.1" style tokens) followed by space, or line breaks
#: that end a paragraph, a list item or a heading (reStructuredText and Markdown are common here).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9`*])|\n\s*\n|\n(?=\s*(?:[-*+•]|\d+[.)]|#+)\s)")
_WORD = re.compile(r"\w+")
#: Pieces shorter than this are merged into the next: a heading alone carries no evidence.
MIN_SENTENCE_WORDS = 5


def split_sentences(text: str) -> list[str]:
    """Sentences (and list items, headings merged into what follows), whitespace normalised."""
    pieces = [" ".join(p.split()) for p in _SENTENCE_END.split(text)]
    out: list[str] = []
    carry = ""
    for piece in pieces:
        if not piece:
            continue
        piece = f"{carry} {piece}".strip() if carry else piece
        if len(_WORD.findall(piece)) < MIN_SENTENCE_WORDS:
            carry = piece
            continue
        out.append(piece)
        carry = ""
    if carry:
        if out:
            out[-1] = f"{out[-1]} {carry}"
        else:
            out.append(carry)
    return out
