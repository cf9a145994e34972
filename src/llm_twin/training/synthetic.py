"""Synthetic queries for passages of the user's corpus (InPars / Promptagator style), cached as JSONL.

Three sources, each row labelled with how it was made (``method``):

- ``llm:<model>``: the local LLM writes one question (or, for a claim-verification corpus such as
  SciFact, one claim) that the passage answers. About 2-5 s a passage on 2 cores, so the rows are
  appended as they come and a rerun resumes where the last one stopped.
- ``ict-sentence``: weak supervision at no cost (Inverse Cloze Task): one sentence of the passage
  stands in for the query, and the positive passage is shown without that sentence, so the model
  cannot learn plain string matching from it.
- ``title``: weak supervision at no cost: a document's title stands in for the query (a paper's title
  often states its finding, as a claim does; a PEP's names its topic, as a twin question does). It is
  matched against the bodies of the passages, every title line left out (``reranker_data``).

Whether a query is kept is decided later, by the round-trip filter (``reranker_data``).
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from llm_twin.domain.sentences import split_sentences
from llm_twin.llm.base import ChatMessage, GenerationParams, LLMClient

QueryStyle = Literal["question", "claim"]
ICT_METHOD = "ict-sentence"
TITLE_METHOD = "title"
#: Titles shorter than this say too little to stand for a query; longer ones are rare and odd.
TITLE_WORDS = (3, 40)
#: Characters of a passage shown to the LLM: enough for a SciFact abstract or one chunk.
PROMPT_CHARS = 1800

_INSTRUCTIONS: dict[str, str] = {
    "question": (
        "Write one question that a reader could ask and that the passage below answers. Use your own words, "
        "not a sentence copied from the passage. Reply with the question only."
    ),
    # Revision 2: with the first wording the 0.5B helper copied (107 of 300 SciFact claims were the title,
    # 196 used no word outside the passage). Asking for one short finding, with examples of the form written
    # here (not taken from any dataset), the 1.5B model: 18 of 360 titles, 163 without a new word.
    "claim": (
        "You write claims for a fact-checking dataset. Read the passage (a scientific abstract) and write ONE "
        "short claim (8 to 16 words) that it supports: a single finding stated plainly, as a reader would "
        "summarise it from memory. Do not copy a sentence: use different words and leave out methods, numbers "
        "in parentheses, and background. Examples of the form:\n"
        "Vitamin D supplements reduce the number of falls in elderly people.\n"
        "Loss of the FOXP2 gene impairs vocal learning in songbirds.\n"
        "Statin therapy lowers mortality after a first heart attack.\n"
        "Reply with the claim only."
    ),
}
#: Bumped when an instruction changes, and part of each row's ``method``: cached rows written with an
#: older wording are then redone, not mixed in as if they were new.
_REVISIONS: dict[str, str] = {"question": "", "claim": "claim-2"}


@dataclass(frozen=True)
class Source:
    """A passage queries are written for: a document (``kind="document"``) or one chunk of it."""

    id: str
    document_id: str
    kind: Literal["document", "chunk"]
    text: str
    title: str = ""  # the document's title (a chunk's: its document's)
    #: What kind of writing it is (article, post, repository): the sample draws from each alike.
    content_type: str = ""


@dataclass
class SyntheticQuery:
    query: str
    source_id: str
    document_id: str
    source_kind: str
    method: str
    seconds: float = 0.0
    #: Text left out of the positive passage (the ICT sentence); empty for LLM queries.
    removed: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


class LlmQueryWriter:
    """Asks a chat LLM for one query per passage; an unusable reply gives None."""

    def __init__(self, llm: LLMClient, style: QueryStyle = "question", max_new_tokens: int = 48) -> None:
        self.llm = llm
        self.style = style
        self.params = GenerationParams(max_new_tokens=max_new_tokens, temperature=0.0, stop=("\n",))
        revision = _REVISIONS[style]
        self.method = f"llm:{llm.model_name}" + (f"/{revision}" if revision else "")

    def warm_up(self) -> None:
        self.llm.warm_up()

    def run(self, text: str) -> str | None:
        messages: list[ChatMessage] = [
            {"role": "system", "content": _INSTRUCTIONS[self.style]},
            {"role": "user", "content": f"Passage:\n{text[:PROMPT_CHARS]}\n\n{self.style.capitalize()}:"},
        ]
        return clean_query(self.llm.complete(messages, self.params).text)


def clean_query(reply: str) -> str | None:
    """The first line without a "Question:" style label or quotes; None when too short or too long."""
    line = next((part.strip() for part in reply.strip().splitlines() if part.strip()), "")
    line = re.sub(r"^(question|claim|query)\s*[:\-]\s*", "", line, flags=re.IGNORECASE).strip().strip("\"'“”")
    words = len(line.split())
    return line if 3 <= words <= 60 else None


def ict_query(text: str, rng: random.Random) -> tuple[str, str] | None:
    """(a sentence of ``text`` as the pseudo-query, the same sentence to remove from the positive)."""
    sentences = [s for s in split_sentences(text) if 6 <= len(s.split()) <= 60]
    if len(sentences) < 3:  # the rest of the passage must still say something
        return None
    sentence = rng.choice(sentences)
    return sentence, sentence


def title_queries(sources: Iterable[Source]) -> list[SyntheticQuery]:
    """One row per document of ``sources`` whose title has a usable length; any chunk of the document
    is its positive (``source_kind="document"``)."""
    rows: list[SyntheticQuery] = []
    seen: set[str] = set()
    for source in sources:
        title = " ".join(source.title.split())
        if source.document_id in seen or not TITLE_WORDS[0] <= len(title.split()) <= TITLE_WORDS[1]:
            continue
        seen.add(source.document_id)
        rows.append(SyntheticQuery(title, source.document_id, source.document_id, "document", TITLE_METHOD))
    return rows


def read_cache(path: Path) -> list[SyntheticQuery]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                rows.append(SyntheticQuery(**json.loads(line)))
            except (ValueError, TypeError):
                continue  # a line cut short by an interrupted run: that passage is simply redone
    return rows


def generate_queries(
    sources: list[Source],
    cache: Path,
    writer: LlmQueryWriter | None,
    ict: bool = True,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    titles: bool = False,
) -> list[SyntheticQuery]:
    """One LLM query (when ``writer``) and one ICT query (when ``ict``) per source, and one title query
    per document of the sources (when ``titles``), resumed from ``cache``.

    Rows already in the cache are kept as they are; new ones are appended one by one, so an
    interrupted run loses at most the passage in progress."""
    say = progress or (lambda _: None)
    rows = read_cache(cache)
    done = {(r.source_id, r.method) for r in rows}
    cache.parent.mkdir(parents=True, exist_ok=True)
    with cache.open("a", encoding="utf-8") as out:
        if ict:
            for source in sources:
                picked = ict_query(source.text, random.Random(f"{seed}:{source.id}"))
                if picked is None or (source.id, ICT_METHOD) in done:
                    continue
                row = SyntheticQuery(
                    picked[0], source.id, source.document_id, source.kind, ICT_METHOD, removed=picked[1]
                )
                _append(out, rows, row)
        if titles:
            for row in title_queries(sources):
                if (row.source_id, TITLE_METHOD) not in done:
                    _append(out, rows, row)
        if writer is not None:
            todo = [s for s in sources if (s.id, writer.method) not in done]
            if todo:
                writer.warm_up()
            t0 = time.perf_counter()
            for n, source in enumerate(todo, 1):
                ts = time.perf_counter()
                query = writer.run(source.text)
                if query is not None:
                    row = SyntheticQuery(
                        query,
                        source.id,
                        source.document_id,
                        source.kind,
                        writer.method,
                        round(time.perf_counter() - ts, 2),
                    )
                    _append(out, rows, row)
                if n % 10 == 0 or n == len(todo):
                    rate = (time.perf_counter() - t0) / n
                    say(f"llm queries {n}/{len(todo)} ({rate:.1f} s each, ETA {rate * (len(todo) - n) / 60:.1f} min)")
    return rows


def _append(out: object, rows: list[SyntheticQuery], row: SyntheticQuery) -> None:
    rows.append(row)
    out.write(json.dumps(row.as_dict(), ensure_ascii=False) + "\n")  # type: ignore[attr-defined]
    out.flush()  # type: ignore[attr-defined]


def sample_sources(sources: Iterable[Source], limit: int, seed: int = 0) -> list[Source]:
    """A fixed random sample (the same for a given seed), so a rerun asks for the same passages.

    Sources of several content types are taken in turn, one of each while they last, so any prefix of
    the sample is balanced: the reranker scores candidates from every collection, and a plain sample
    of the demo's chunks (a PEP is cut into many) gave 18 of 1,273 training groups from a package
    README. One content type (a BEIR dataset) gives the plain shuffle.
    """
    by_type: dict[str, list[Source]] = {}
    for source in sources:
        by_type.setdefault(source.content_type, []).append(source)
    rng = random.Random(seed)
    groups = [by_type[name] for name in sorted(by_type)]
    for group in groups:
        rng.shuffle(group)
    pool = [group[i] for i in range(max(map(len, groups), default=0)) for group in groups if i < len(group)]
    return pool[:limit] if limit > 0 else pool
