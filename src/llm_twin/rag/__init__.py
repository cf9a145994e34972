"""The /rag pipeline: retrieval, the grounded prompt, generation (blocking or streamed)."""
