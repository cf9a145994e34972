#!/usr/bin/env python3
"""Validate the twin dev set (questions.jsonl) against the demo corpus.

Usage:
    python3 evaluation/twin_dev/check_questions.py [CORPUS_DIR] [QUESTIONS_JSONL]

CORPUS_DIR defaults to ../shared/data/demo relative to the project root;
QUESTIONS_JSONL defaults to questions.jsonl next to this script.
Stdlib only. Exits 1 and lists every problem if any check fails.
"""
import collections
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parents[1]
DEFAULT_CORPUS = PROJECT_ROOT.parent / "shared" / "data" / "demo"
CORPUS_FILES = ("peps.jsonl", "peps_commits.jsonl", "packages.jsonl")
CONTENT_TYPES = {"article", "post", "repository"}
PHRASINGS = {"title-like", "paraphrase"}
REQUIRED = ("id", "question", "author", "author_aliases", "content_type",
            "answer_doc_ids", "key_points", "phrasing", "notes")


def doc_authors(doc):
    """Author names of a corpus document (articles/repositories: authors, posts: author)."""
    names = list(doc.get("authors") or [])
    if doc.get("author"):
        names.append(doc["author"])
    return names


def load_corpus(corpus_dir):
    docs = {}
    for name in CORPUS_FILES:
        path = corpus_dir / name
        if not path.exists():
            raise SystemExit(f"corpus file missing: {path}")
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    doc = json.loads(line)
                    docs[doc["id"]] = doc
    return docs


def main(argv):
    corpus_dir = Path(argv[1]) if len(argv) > 1 else DEFAULT_CORPUS
    qpath = Path(argv[2]) if len(argv) > 2 else HERE / "questions.jsonl"
    docs = load_corpus(corpus_dir)
    all_names = {n for d in docs.values() for n in doc_authors(d)}

    problems = []
    questions = []
    with qpath.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                questions.append(json.loads(line))
            except json.JSONDecodeError as exc:
                problems.append(f"line {lineno}: invalid JSON ({exc})")

    seen = collections.Counter(q.get("id") for q in questions)
    for qid, n in seen.items():
        if n > 1:
            problems.append(f"{qid}: id used {n} times")

    for q in questions:
        qid = q.get("id", "?")
        missing = [k for k in REQUIRED if k not in q]
        if missing:
            problems.append(f"{qid}: missing fields {missing}")
            continue
        if not str(q["question"]).strip():
            problems.append(f"{qid}: empty question")
        if q["content_type"] not in CONTENT_TYPES:
            problems.append(f"{qid}: bad content_type {q['content_type']!r}")
        if q["phrasing"] not in PHRASINGS:
            problems.append(f"{qid}: bad phrasing {q['phrasing']!r}")
        kps = q["key_points"]
        if not isinstance(kps, list) or not 2 <= len(kps) <= 4 or not all(str(k).strip() for k in kps):
            problems.append(f"{qid}: needs 2-4 non-empty key points (has {len(kps) if isinstance(kps, list) else kps!r})")
        aliases = q["author_aliases"]
        if not isinstance(aliases, list):
            problems.append(f"{qid}: author_aliases must be a list")
            aliases = []
        ids = q["answer_doc_ids"]
        if not isinstance(ids, list) or not ids:
            problems.append(f"{qid}: answer_doc_ids must be a non-empty list")
            continue
        if len(set(ids)) != len(ids):
            problems.append(f"{qid}: duplicate answer_doc_ids")
        unknown = [i for i in ids if i not in docs]
        for i in unknown:
            problems.append(f"{qid}: answer doc {i!r} not in corpus")
        if ids[0] in docs and docs[ids[0]].get("content_type") != q["content_type"]:
            problems.append(f"{qid}: content_type {q['content_type']!r} but first answer doc "
                            f"{ids[0]} is {docs[ids[0]].get('content_type')!r}")
        author = q["author"]
        if author is None:
            if aliases:
                problems.append(f"{qid}: aliases given without an author")
            continue
        if author not in all_names:
            problems.append(f"{qid}: author {author!r} is not an author name in the corpus")
        for alias in aliases:
            if alias not in all_names:
                problems.append(f"{qid}: alias {alias!r} is not an author name in the corpus")
        person = {author, *aliases}
        for i in ids:
            if i in docs and not person & set(doc_authors(docs[i])):
                problems.append(f"{qid}: {sorted(person)} not among authors of {i} {doc_authors(docs[i])}")

    by_type = collections.Counter(q.get("content_type") for q in questions)
    print(f"{len(questions)} questions; by content_type: {dict(sorted(by_type.items()))}; "
          f"no-author: {sum(q.get('author') is None for q in questions)}; "
          f"paraphrase: {sum(q.get('phrasing') == 'paraphrase' for q in questions)}")
    if problems:
        print(f"{len(problems)} problem(s):")
        for p in problems:
            print("  -", p)
        return 1
    print("OK: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
