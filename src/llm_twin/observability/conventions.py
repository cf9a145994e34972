"""Span attribute names, in one place: the OpenInference conventions trace UIs read, and our own.

OpenInference (Arize Phoenix, and Opik's OpenTelemetry ingestion) reads a span's role from
``openinference.span.kind`` and shows ``input.value`` / ``output.value``, retrieved documents,
model names, invocation parameters and token counts from the names below. The constants are
written out rather than taken from ``openinference-semantic-conventions`` to keep the service's
dependencies small; the names are the published ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llm_twin.domain.documents import EmbeddedChunk

# --- OpenInference ------------------------------------------------------------------------------
SPAN_KIND = "openinference.span.kind"
CHAIN = "CHAIN"
RETRIEVER = "RETRIEVER"
RERANKER = "RERANKER"
LLM = "LLM"
EMBEDDING = "EMBEDDING"

INPUT_VALUE = "input.value"
INPUT_MIME_TYPE = "input.mime_type"
OUTPUT_VALUE = "output.value"
OUTPUT_MIME_TYPE = "output.mime_type"
MIME_JSON = "application/json"
MIME_TEXT = "text/plain"

RETRIEVAL_DOCUMENTS = "retrieval.documents"
RERANKER_INPUT_DOCUMENTS = "reranker.input_documents"
RERANKER_OUTPUT_DOCUMENTS = "reranker.output_documents"
RERANKER_QUERY = "reranker.query"
RERANKER_MODEL_NAME = "reranker.model_name"
RERANKER_TOP_K = "reranker.top_k"
DOCUMENT_ID = "document.id"
DOCUMENT_SCORE = "document.score"
DOCUMENT_CONTENT = "document.content"
DOCUMENT_METADATA = "document.metadata"

EMBEDDING_MODEL_NAME = "embedding.model_name"
EMBEDDING_EMBEDDINGS = "embedding.embeddings"
EMBEDDING_TEXT = "embedding.text"

LLM_MODEL_NAME = "llm.model_name"
LLM_INVOCATION_PARAMETERS = "llm.invocation_parameters"
LLM_INPUT_MESSAGES = "llm.input_messages"
LLM_OUTPUT_MESSAGES = "llm.output_messages"
MESSAGE_ROLE = "message.role"
MESSAGE_CONTENT = "message.content"
LLM_TOKEN_COUNT_PROMPT = "llm.token_count.prompt"
LLM_TOKEN_COUNT_COMPLETION = "llm.token_count.completion"
LLM_TOKEN_COUNT_TOTAL = "llm.token_count.total"

METADATA = "metadata"
SESSION_ID = "session.id"

# --- ours (``llm_twin.`` keeps them apart from the standard names) ------------------------------
AUTHOR_FILTER = "llm_twin.author.id"
AUTHOR_REASON = "llm_twin.author.reason"
EXPANDED_QUERIES = "llm_twin.expanded_queries"
SEARCH_QUERIES = "llm_twin.search_queries"
K = "llm_twin.k"
FUSION = "llm_twin.fusion"
SEARCH_MODE = "llm_twin.search_mode"
DEGRADATIONS = "llm_twin.degradations"
RERANK_CANDIDATES = "llm_twin.rerank.candidates"
REQUEST_ID = "llm_twin.request_id"

# --- user feedback (the shape of an Opik feedback score, as span attributes) --------------------
FEEDBACK_SCORE_NAME = "feedback.name"
FEEDBACK_SCORE_VALUE = "feedback.score"
FEEDBACK_REASON = "feedback.comment"
FEEDBACK_EVENT = "feedback"

#: Characters of a document kept on a span: enough to recognise it in a trace UI.
DOCUMENT_CONTENT_CHARS = 1000


def documents(prefix: str, chunks: Sequence[EmbeddedChunk], *, content: bool = True) -> dict[str, Any]:
    """``prefix.N.document.id/score/content/metadata`` for each chunk, flattened as OpenInference lists are."""
    attributes: dict[str, Any] = {}
    for i, chunk in enumerate(chunks):
        base = f"{prefix}.{i}."
        attributes[base + DOCUMENT_ID] = chunk.id
        attributes[base + DOCUMENT_SCORE] = float(chunk.score)
        if content:
            attributes[base + DOCUMENT_CONTENT] = chunk.content[:DOCUMENT_CONTENT_CHARS]
        attributes[base + DOCUMENT_METADATA] = json.dumps(
            {"document_id": chunk.document_id, "title": chunk.title or chunk.name, "author": chunk.author_full_name},
            ensure_ascii=False,
        )
    return attributes


def messages(prefix: str, chat: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """``prefix.N.message.role/content`` for chat messages (``llm.input_messages``)."""
    attributes: dict[str, Any] = {}
    for i, message in enumerate(chat):
        attributes[f"{prefix}.{i}.{MESSAGE_ROLE}"] = message.get("role", "")
        attributes[f"{prefix}.{i}.{MESSAGE_CONTENT}"] = message.get("content", "")
    return attributes


def as_json(value: Mapping[str, Any]) -> str:
    """A JSON attribute value (``llm.invocation_parameters``, ``metadata``), None entries left out."""
    return json.dumps({key: item for key, item in value.items() if item is not None}, ensure_ascii=False)
