"""Token-aware chunking against the embedder's window, preferring paragraph and line breaks."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Tokenizer

_PARAGRAPH = re.compile(r"\n\s*\n")
_LINE = re.compile(r"\n")
_SENTENCE = re.compile(r"[.!?;:]\s")


@dataclass(frozen=True)
class TextChunk:
    text: str
    tokens: int


class TokenChunker:
    """Splits text into windows of at most ``max_tokens`` tokens with ``overlap`` tokens of overlap.

    A window ends at the last paragraph break in its second half, else a line break, else a
    sentence end, else exactly at the limit. Short texts and tails are never dropped.
    """

    def __init__(self, tokenizer: Tokenizer, max_tokens: int = 240, overlap: int = 32) -> None:
        if overlap >= max_tokens // 2:
            raise ValueError("overlap must be smaller than half of max_tokens")
        # Our own copy without truncation: the embedder's tokenizer stops at its window.
        self.tokenizer = type(tokenizer).from_str(tokenizer.to_str())
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.max_tokens = max_tokens
        self.overlap = overlap

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def split(self, text: str, max_tokens: int | None = None) -> list[TextChunk]:
        limit = max(16, max_tokens or self.max_tokens)
        overlap = min(self.overlap, limit // 4)
        if not text.strip():
            return []
        encoding = self.tokenizer.encode(text, add_special_tokens=False)
        offsets = [o for o in encoding.offsets]
        n = len(offsets)
        if n <= limit:
            return [TextChunk(text=text, tokens=n)]
        starts = [o[0] for o in offsets]
        breaks = [self._token_breaks(pattern, text, starts) for pattern in (_PARAGRAPH, _LINE, _SENTENCE)]
        chunks: list[TextChunk] = []
        begin = 0
        while begin < n:
            end = min(begin + limit, n)
            if end < n:
                end = self._best_break(breaks, begin + limit // 2, end)
            piece = text[offsets[begin][0] : offsets[end - 1][1]].strip()
            if piece:
                chunks.append(TextChunk(text=piece, tokens=end - begin))
            if end >= n:
                break
            begin = max(self._overlap_start(breaks, text, offsets, end - overlap, end), begin + 1)
        return chunks

    @staticmethod
    def _token_breaks(pattern: re.Pattern[str], text: str, starts: list[int]) -> list[int]:
        """Token indices that begin right after a break of this kind."""
        result = []
        for match in pattern.finditer(text):
            index = bisect.bisect_left(starts, match.end())
            if index < len(starts):
                result.append(index)
        return result

    @staticmethod
    def _overlap_start(breaks: list[list[int]], text: str, offsets: list, low: int, end: int) -> int:
        """Start the overlap at a break (up to twice the overlap back), else at a word start."""
        reach = max(0, low - (end - low))
        for candidates in breaks:
            i = bisect.bisect_left(candidates, reach)
            if i < len(candidates) and candidates[i] < end:
                return candidates[i]
        while low < end - 1 and offsets[low][0] > 0 and not text[offsets[low][0] - 1].isspace():
            low += 1
        return low

    @staticmethod
    def _best_break(breaks: list[list[int]], low: int, high: int) -> int:
        for candidates in breaks:
            position = bisect.bisect_right(candidates, high) - 1
            if position >= 0 and candidates[position] > low:
                return candidates[position]
        return high
