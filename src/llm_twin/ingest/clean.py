"""Cleaning that keeps structure: newlines, indentation and code punctuation survive.

(The reference cleaner removed both, so every document became one long line and chunk sizes
never applied.)
"""

from __future__ import annotations

import re
import unicodedata

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BLANK_RUN = re.compile(r"\n{3,}")
# RST/Markdown underlines and rules ("=====", "-----"): structure worth keeping, length is not.
_RULE = re.compile(r"^([=\-~^*#+_])\1{3,}$", re.MULTILINE)


def clean_text(text: str) -> str:
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text).replace("\t", "    ").replace("\u00a0", " ")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = _RULE.sub(lambda m: m.group(1) * 3, text)
    return _BLANK_RUN.sub("\n\n", text).strip()
