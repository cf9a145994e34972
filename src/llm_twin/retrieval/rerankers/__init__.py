"""Rerankers, one backend per module: a cross-encoder (ONNX Runtime, or sentence-transformers when
installed), an LLM judging yes/no, or none; ``factory.build_reranker`` picks one from settings.

Every backend scores only the first ``top_n`` candidates (the fused search order): scoring is the
expensive part and the tail rarely reaches the top. Scored candidates come first, best first, with
``score`` set to the reranker's score and the search score kept in ``metadata["search_score"]``;
unscored candidates follow in search order (keeping their search score) only to fill ``top_k``
when it exceeds ``top_n``. Input chunks are never mutated (they may be shared across threads).
"""
