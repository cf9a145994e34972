"""Feature pipeline: read JSONL, clean, chunk, embed (dense + BM25), load into the store."""
