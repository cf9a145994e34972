"""Text embedders (dense) and the BM25 sparse encoder."""
