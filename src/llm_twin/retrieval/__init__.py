"""Retrieval: self-query, query expansion, batched hybrid search, reranking."""
