"""A slice of the demo corpus for tests (importable from any test module)."""

from __future__ import annotations

import json
from pathlib import Path

from llm_twin.settings import SHARED_DIR

DEMO = SHARED_DIR / "data" / "demo"
ARTICLE_IDS = ["pep-0634", "pep-0008", "pep-0001", "pep-0484", "pep-0020"]
POST_AUTHORS = {"Guido van Rossum": 6, "Łukasz Langa": 4, "Brett Cannon": 4, "larryhastings": 2, "Larry Hastings": 2}
REPOSITORY_IDS = 3
TEXT_CHARS = 5000  # enough for several chunks per article, small enough for a fast ingest


def _demo_records(name: str) -> list[dict]:
    with (DEMO / name).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def write_small_corpus(directory: Path) -> list[Path]:
    """Three JSONL files in the demo format: 5 PEPs, 18 commits, 3 READMEs (texts shortened)."""
    directory.mkdir(parents=True, exist_ok=True)
    articles = [r for r in _demo_records("peps.jsonl") if r["id"] in ARTICLE_IDS]
    posts, wanted = [], dict(POST_AUTHORS)
    for record in _demo_records("peps_commits.jsonl"):
        if wanted.get(record["author"], 0) > 0:
            wanted[record["author"]] -= 1
            posts.append(record)
    repositories = _demo_records("packages.jsonl")[:REPOSITORY_IDS]
    paths = []
    for name, records in (("articles.jsonl", articles), ("posts.jsonl", posts), ("repositories.jsonl", repositories)):
        path = directory / name
        with path.open("w", encoding="utf-8") as handle:
            for record in records:
                record = dict(record, text=record["text"][:TEXT_CHARS])
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        paths.append(path)
    return paths


def write_tiny_beir(root: Path, documents: int = 12, queries: int = 4, split: str = "test") -> Path:
    """A BEIR-format set from SciFact's first documents; each query is a document's title,
    relevant to that document only."""
    scifact = SHARED_DIR / "data" / "scifact"
    root.mkdir(parents=True, exist_ok=True)
    with (scifact / "corpus.jsonl").open(encoding="utf-8") as handle:
        docs = [json.loads(next(handle)) for _ in range(documents)]
    (root / "qrels").mkdir(exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    rows = [{"_id": f"q{i}", "text": d["title"]} for i, d in enumerate(docs[:queries])]
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in rows), encoding="utf-8")
    qrels = ["query-id\tcorpus-id\tscore"] + [f"q{i}\t{d['_id']}\t1" for i, d in enumerate(docs[:queries])]
    (root / "qrels" / f"{split}.tsv").write_text("\n".join(qrels) + "\n", encoding="utf-8")
    return root
