"""All configuration in one pydantic-settings class (env prefix ``LLM_TWIN_``, ``.env`` supported)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from llm_twin.domain.documents import ContentType
from llm_twin.domain.limits import MAX_K, MIN_EXPAND_TO_N, MIN_K
from llm_twin.errors import ConfigError
from llm_twin.scheduling import INGEST_NICENESS, REQUEST_NICENESS

ENV_PREFIX = "LLM_TWIN_"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHARED_DIR = PROJECT_ROOT.parent / "shared"

DEMO_FILES = ("peps.jsonl", "peps_commits.jsonl", "packages.jsonl")


class SettingsError(ConfigError):
    """Configuration is invalid; the message names the environment variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- storage -----------------------------------------------------------------------
    data_dir: Path = Field(
        default=PROJECT_ROOT / "data", description="Vectors, author registry, assembled model files."
    )
    demo_data_dir: Path = SHARED_DIR / "data" / "demo"
    collection_articles: str = "embedded_articles"
    collection_posts: str = "embedded_posts"
    collection_repositories: str = "embedded_repositories"
    qdrant_url: str | None = Field(default=None, description="Use a Qdrant server instead of the embedded engine.")
    qdrant_api_key: SecretStr | None = None
    qdrant_timeout_s: float = Field(default=10.0, gt=0)
    registry_collection_prefix: str = Field(
        default="llm_twin_",
        description="With a Qdrant server: the author registry and the ingest ledger are the payload-only "
        "collections <prefix>authors and <prefix>documents (the embedded engine keeps authors.sqlite).",
    )
    registry_refresh_s: float = Field(
        default=30.0,
        gt=0,
        description="With a Qdrant server: how often each API replica re-reads the authors (new ones written by "
        "an ingest elsewhere become known without a restart).",
    )
    dense_quantization: Literal["int8", "none"] = Field(
        default="int8",
        description="int8: the HNSW search walks a scalar int8 copy of the dense vectors held in RAM, then rescores "
        "the candidates with the originals (exact cosines). Applied by the next ingest.",
    )
    quantization_oversampling: float = Field(
        default=2.0, ge=1.0, le=16.0, description="Candidates rescored per result when dense_quantization=int8."
    )

    # --- embedding and chunking ------------------------------------------------------------
    embedding_model: str = Field(
        default="sentence-transformers/all-MiniLM-L6-v2",
        description="Model id or local directory holding model.onnx (or onnx/model.onnx) and tokenizer.json.",
    )
    embedding_precision: Literal["int8-dynamic", "as-is"] = Field(
        default="int8-dynamic",
        description="int8-dynamic: a dynamically quantized copy (int8 MatMuls, ~1.9x faster on CPU); as-is: the file unchanged.",
    )
    embedding_batch_size: int = Field(default=32, ge=1, le=1024)
    embedding_threads: int | None = Field(default=None, ge=1)
    embedding_thread_spinning: bool = Field(
        default=False,
        description="Let ONNX Runtime's idle threads spin between calls. Off: on few cores the spinning "
        "threads compete with the vector search that follows each embedding (p95 ~18 -> ~11 ms measured).",
    )
    embedding_packing: bool = Field(
        default=True,
        description="Pack the texts of a call into shared rows (restarted positions, attention kept within each "
        "text) instead of padding them to the longest; same vectors, less work for mixed lengths.",
    )
    max_seq_tokens: int = Field(default=256, ge=16, le=512, description="Embedder window, in tokens.")
    chunk_tokens: int = Field(default=240, ge=16, le=512)
    chunk_overlap_tokens: int = Field(default=32, ge=0)
    bm25_avg_len: float = Field(default=180.0, gt=0)

    # --- retrieval ------------------------------------------------------------------------------
    k: int = Field(default=5, ge=MIN_K, le=MAX_K)
    expand_to_n: int = Field(default=3, ge=MIN_EXPAND_TO_N)
    expand_max: int = Field(default=5, ge=1, le=10)
    expand_below_cosine: float = Field(
        default=0.65,
        ge=0.0,
        le=1.0,
        description="Search the question alone first and expand it only when no sentence found is at least this "
        "close to it (cosine, with the sentence-embedding reranker); a close match makes the reformulations "
        "cost seconds of helper-model time for nothing. 0 always expands.",
    )
    search_mode: Literal["dense", "sparse", "hybrid"] = "hybrid"
    fusion: Literal["rrf", "dbsf"] = Field(
        default="rrf", description="Hybrid fusion: reciprocal rank (rrf) or distribution-based score fusion (dbsf)."
    )
    rrf_k: int = Field(default=60, ge=1)
    prefetch_limit: int = Field(default=50, ge=1, description="Candidates per branch before fusion.")
    k_split: Literal["relevance", "balanced", "equal", "global"] = Field(
        default="relevance",
        description="relevance (hybrid): one ranking across collections (dense and BM25 lists merged across "
        "collections, then RRF), chunks grouped by document; equal: k/3 per collection; global: best k of the "
        "per-collection fused scores; balanced: k/3 per collection first, free slots to the best of the rest.",
    )
    max_chunks_per_document: int = Field(
        default=4, ge=1, le=100, description="k_split=relevance: chunks one document may fill before the next one."
    )
    rerank_backend: Literal["auto", "cross-encoder", "sentence-embedding", "llm", "none"] = Field(
        default="auto",
        description="auto: a cross-encoder when one is configured or found under models/cross-encoder, else "
        "sentence-embedding (each candidate's best sentence by the retrieval embedder, fused with the search rank).",
    )
    rerank_model: str | None = Field(default=None, description="Cross-encoder id or local directory.")
    rerank_top_n: int = Field(default=20, ge=1, description="Candidates reranked (and grouped by document).")
    rerank_search_weight: float | None = Field(
        default=None,
        ge=0.0,
        description="cross-encoder: weight of the search against the model when their scores are combined "
        "(1: equal; 0: the model's order alone, as the reference). Unset: the weight the model's own training "
        "chose on labelled held-out queries (its training.json), else 2. A small model trained here is fused, "
        "so it cannot undo the search.",
    )
    rerank_fusion: Literal["score", "rank"] = Field(
        default="score",
        description="cross-encoder: score = min-max(model) + weight x min-max(search score) over the reranked "
        "candidates; rank = RRF of the two rankings, the search rank weighted. score keeps how sure the model is "
        "(benchmarks/results/reranker.md compares both).",
    )
    rerank_relative_floor: float = Field(
        default=0.8,
        ge=0.0,
        lt=1.0,
        description="sentence-embedding: leave out candidates whose best sentence scores below this share of the "
        "best candidate's (0 keeps all): fewer, closer sources in the prompt.",
    )
    aliases_file: Path | None = Field(
        default=PROJECT_ROOT / "aliases.toml",
        description="TOML file linking the names one person writes under ([[person]] name/aliases) and "
        "rejecting wrong name-rule links ([[distinct]] names); absent: name rules alone.",
    )
    search_topic_only: bool = Field(
        default=True,
        description="Once self-query resolved an author (a filter), search with the question minus their name "
        "and its framing ('What did X write about Y?' -> 'Y?'): a name in the search text ranks texts that "
        "merely mention the person (commits) above texts on the topic.",
    )
    self_query_llm: bool = Field(
        default=False, description="Ask the helper LLM for an author when the matcher finds none."
    )
    hyde: bool = Field(
        default=False,
        description="HyDE: the helper LLM writes a hypothetical passage that is blended into every query; one "
        "more helper-LLM call per question. Off: with the local helper model it did not help on SciFact (nDCG@10 "
        "0.730-0.732 with, 0.736 without); it is meant for a stronger hosted helper LLM.",
    )
    hyde_weight: float = Field(default=0.5, gt=0.0, le=2.0, description="Weight of the HyDE passage against the query.")
    hyde_max_new_tokens: int = Field(default=96, ge=16, le=512)
    hyde_instruction: str | None = Field(
        default=None,
        description="Instruction for the HyDE passage (default: a generic one); with {query} it is the whole prompt.",
    )

    # --- helper LLM (query expansion, self-query extraction) ------------------------------------
    helper_llm_backend: Literal["llama-cpp", "openai", "none"] = "llama-cpp"
    helper_llm_model: str = Field(default="gpt-4o-mini", description="Model name for the openai helper backend.")
    helper_llm_local_model: str | None = Field(
        default="auto",
        description="llama-cpp helper: its own GGUF (a packaged id or a path), e.g. qwen2.5-coder-0.5b-instruct; "
        "unset: the generation model, shared in memory and queued on the same lock; auto: the packaged 0.5B "
        "when it is installed and the generation model is the packaged 1.5B, else shared.",
    )
    helper_llm_base_url: str | None = None
    helper_llm_api_key: SecretStr | None = None
    helper_llm_timeout_s: float = Field(default=20.0, gt=0)

    # --- generation LLM ------------------------------------------------------------------------
    llm_backend: Literal["llama-cpp", "sagemaker", "openai"] = "llama-cpp"
    llm_model: str = Field(
        default="qwen2.5-coder-1.5b-instruct",
        description="llama-cpp: a known id or a path to a .gguf file; openai: the served model name.",
    )
    llm_n_ctx: int = Field(default=4096, ge=512)
    llm_n_threads: int | None = Field(default=None, ge=1)
    llm_prompt_cache_mb: int = Field(
        default=256,
        ge=0,
        description="llama-cpp: RAM for model states of earlier prompts, so a prompt starts from the longest "
        "matching one (the fixed system prompts are not evaluated again); 0 turns it off.",
    )
    llm_base_url: str | None = Field(
        default=None, description="OpenAI-compatible base URL (vLLM, TGI, llama.cpp server)."
    )
    llm_api_key: SecretStr | None = None
    llm_timeout_s: float = Field(default=120.0, gt=0)
    llm_max_retries: int = Field(default=2, ge=0, le=10)
    context_selection: Literal["sentences", "chunks"] = Field(
        default="sentences",
        description="sentences: the prompt holds the sentences of the retrieved chunks that bear most on the "
        "question (scored by the embedder) under context_budget_tokens; chunks: the retrieved chunks whole.",
    )
    context_links: bool = Field(
        default=False,
        description="Put each context block's link in the prompt. Off: the response's sources carry the links, "
        "and a commit URL costs ~30 prompt tokens per block that the model reads before its first word.",
    )
    context_budget_tokens: int = Field(
        default=240, ge=32, le=8192, description="Tokens of kept sentences (sentences mode)."
    )
    evidence_floor: float = Field(
        default=0.43,
        ge=0.0,
        le=1.0,
        description="sentences mode: below this best sentence-to-question cosine the writing does not answer "
        "the question, and the answer says so without calling the LLM (0 turns it off).",
    )
    max_new_tokens: int = Field(default=256, ge=1, le=8192)
    temperature: float = Field(default=0.1, ge=0.0, le=2.0)
    top_p: float = Field(default=0.9, gt=0.0, le=1.0)
    repetition_penalty: float = Field(default=1.1, gt=0.0)
    llm_queue_timeout_s: float = Field(default=300.0, gt=0, description="How long a request waits for the local model.")

    # --- SageMaker inference and deployment ------------------------------------------------------
    aws_region: str = "eu-central-1"
    sagemaker_endpoint_name: str = "twin"
    sagemaker_endpoint_config_name: str = "twin"
    sagemaker_model_name: str = "twin"
    sagemaker_inference_component: str | None = None
    sagemaker_chat_template: Literal["auto", "llama3", "chatml", "alpaca"] = Field(
        default="auto",
        description="Prompt format sent to TGI; auto picks from hf_model_id (Llama 3 headers by default).",
    )
    sagemaker_role_arn: str | None = None
    sagemaker_instance_type: str = "ml.g5.2xlarge"
    sagemaker_instance_count: int = Field(default=1, ge=1)
    hf_model_id: str = "mlabonne/TwinLlama-3.1-8B-DPO"
    sm_num_gpus: int = Field(default=1, ge=1)
    max_input_length: int = Field(default=2048, ge=1)
    max_total_tokens: int = Field(default=4096, ge=2)
    max_batch_total_tokens: int = Field(default=8192, ge=2)
    hf_model_quantize: str | None = None
    hugging_face_hub_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("HUGGING_FACE_HUB_TOKEN", "HF_TOKEN", f"{ENV_PREFIX}HUGGING_FACE_HUB_TOKEN"),
    )
    autoscaling_enabled: bool = False
    autoscaling_min_instances: int = Field(default=1, ge=0)
    autoscaling_max_instances: int = Field(default=2, ge=1)
    autoscaling_target_invocations: float = Field(
        default=50.0, gt=0, description="Invocations per instance per minute."
    )
    autoscaling_scale_in_cooldown_s: int = Field(default=300, ge=0)
    autoscaling_scale_out_cooldown_s: int = Field(default=60, ge=0)
    deploy_timeout_s: float = Field(default=1800.0, gt=0)

    # --- API and observability ------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    api_workers: int = Field(
        default=32,
        ge=1,
        description="Requests answered at once, streamed or not; more wait in arrival order. "
        "The local model's fair queue orders the generations among them.",
    )
    # --- access and limits (api/security.py, api/admission.py) -----------------------------------
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Keys a client must send as `Authorization: Bearer <key>`, comma-separated or a JSON list; "
        "empty: no keys asked. /, /static, /health, /ready, /metrics and the API docs stay open.",
    )
    metrics_require_key: bool = Field(default=False, description="Ask for a key on /metrics too.")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins allowed to call the API from a browser (comma-separated or a JSON list, * for any); "
        "empty: CORS off.",
    )
    max_body_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Largest request body; larger ones get 413 before they are read."
    )
    max_queue: int = Field(
        default=32,
        ge=0,
        description="Requests that may wait for one of the LLM_TWIN_API_WORKERS slots; one more gets 429 with "
        "Retry-After (from the measured service time) at once instead of a long wait.",
    )
    rate_limit_per_minute: float = Field(
        default=0.0, ge=0.0, description="Requests per minute per API key (or client address); 0: no limit."
    )
    worker_niceness: int = Field(
        default=REQUEST_NICENESS,
        ge=0,
        le=19,
        description="Nice value of the threads that answer (retrieval, generation), so the event loop answers "
        "/health, /metrics and 429s at once while they compute (llm_twin/scheduling.py); 0: unchanged.",
    )
    ingest_niceness: int = Field(
        default=INGEST_NICENESS,
        ge=0,
        le=19,
        description="Nice value of the background ingest (serve --ingest/--watch), so answering comes first.",
    )
    request_deadline_s: float = Field(
        default=300.0,
        gt=0,
        description="Overall time a request may take; the stages share it (helper-LLM calls get what is left).",
    )
    tracing: Literal["auto", "none", "console", "otlp", "opik"] = Field(
        default="auto",
        description="auto: otlp when OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set, else none (spans cost nothing).",
    )
    otlp_endpoint: str | None = None
    otlp_timeout_s: float = Field(
        default=2.0, gt=0, le=60, description="One span export, retries included; shutdown waits about as long."
    )
    otlp_queue_size: int = Field(
        default=2048, ge=1, le=1_000_000, description="Spans waiting for export; beyond it spans are dropped (counted)."
    )
    opik_project: str = "llm-twin"
    trace_content: bool = Field(
        default=True,
        description="Put the question, the answer and the retrieved text on spans (input.value, output.value, "
        "documents); off: only ids, scores, counts and timings leave the process.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="json: one object per line with request_id and trace_id (for log pipelines)."
    )
    log_questions: bool = Field(default=False, description="Log the question text of each /rag request.")

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _list_from_text(cls, value: object) -> object:
        """``a,b`` or ``["a", "b"]`` (an environment variable holds text); blanks dropped."""
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except ValueError:
                    raise ValueError("not a valid JSON list") from None
            else:
                value = text.split(",")
        if isinstance(value, list):
            return [item for item in (_plain(v).strip() for v in value) if item]
        return value

    @field_validator(
        "qdrant_url",
        "llm_base_url",
        "helper_llm_base_url",
        "rerank_model",
        "sagemaker_role_arn",
        "sagemaker_inference_component",
        "hf_model_quantize",
        "otlp_endpoint",
        "hyde_instruction",
        "aliases_file",
        "helper_llm_local_model",
        mode="before",
    )
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.chunk_overlap_tokens >= self.chunk_tokens // 2:
            raise ValueError(f"{ENV_PREFIX}CHUNK_OVERLAP_TOKENS must be less than half of {ENV_PREFIX}CHUNK_TOKENS")
        if self.chunk_tokens > self.max_seq_tokens - 2:
            raise ValueError(f"{ENV_PREFIX}CHUNK_TOKENS must fit the embedder window ({ENV_PREFIX}MAX_SEQ_TOKENS - 2)")
        if self.expand_to_n > self.expand_max:
            raise ValueError(f"{ENV_PREFIX}EXPAND_TO_N must not exceed {ENV_PREFIX}EXPAND_MAX")
        return self

    # --- derived -------------------------------------------------------------------------------
    @property
    def collections(self) -> dict[ContentType, str]:
        return {
            "article": self.collection_articles,
            "post": self.collection_posts,
            "repository": self.collection_repositories,
        }

    @property
    def demo_files(self) -> list[Path]:
        """The sample corpus `llm-twin ingest` loads when given no paths."""
        return [self.demo_data_dir / name for name in DEMO_FILES]

    @property
    def vectors_dir(self) -> Path:
        return self.data_dir / "vectors"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def registry_path(self) -> Path:
        return self.data_dir / "authors.sqlite"


def _plain(value: object) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else str(value)


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        if not item["loc"]:  # a rule across fields: the message names them
            lines.append(str(item["msg"]).removeprefix("Value error, "))
            continue
        field = str(item["loc"][0])
        var = field if field.isupper() else f"{ENV_PREFIX}{field.upper()}"
        # Secrets (keys, tokens) are never echoed, not even when they are invalid.
        got = "hidden" if "key" in field.lower() or "token" in field.lower() else repr(item.get("input"))
        lines.append(f"{var}: {item['msg']} (got {got})")
    return "invalid configuration: " + "; ".join(lines)


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment; errors name the variable, e.g. ``LLM_TWIN_K``."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]  # pydantic validates the values; errors below
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
