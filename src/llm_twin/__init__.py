"""LLM Twin: RAG inference that answers in the voice and knowledge of a set of authors."""

__version__ = "0.1.0"
