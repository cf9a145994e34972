"""Generation on a SageMaker endpoint running HuggingFace TGI, over plain boto3 ``sagemaker-runtime``.

Payload is TGI's ``/generate`` format; streaming uses ``invoke_endpoint_with_response_stream``,
whose PayloadPart chunks carry server-sent-event lines (``data:{"token": {"text": ...}}``) cut at
arbitrary byte offsets. ``AWS_ENDPOINT_URL`` is honoured by botocore itself (moto, LocalStack).
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from llm_twin.errors import LLMError, LLMTimeoutError, LLMUnavailableError
from llm_twin.llm.base import ChatMessage, Completion, GenerationParams
from llm_twin.llm.chat_templates import ChatTemplate, template_for

if TYPE_CHECKING:
    from llm_twin.settings import Settings

logger = logging.getLogger(__name__)

#: TGI rejects more stop sequences than its ``--max-stop-sequences`` (default 4).
MAX_STOP_SEQUENCES = 4
_MAX_CONNECT_TIMEOUT_S = 10.0
_TRANSIENT_CODES = frozenset({"ThrottlingException", "ServiceUnavailable", "InternalFailure", "ModelNotReadyException"})


class SagemakerTGIClient:
    """``LLMClient`` for a TGI endpoint (optionally an inference component) on SageMaker."""

    def __init__(self, settings: Settings, *, client: Any = None, chat_template: ChatTemplate | None = None) -> None:
        self.model_name = settings.hf_model_id
        self.context_window = settings.max_total_tokens
        self.endpoint_name = settings.sagemaker_endpoint_name
        self._inference_component = settings.sagemaker_inference_component
        self._region = settings.aws_region
        self._timeout_s = settings.llm_timeout_s
        self._boto_config = Config(
            connect_timeout=min(settings.llm_timeout_s, _MAX_CONNECT_TIMEOUT_S),
            read_timeout=settings.llm_timeout_s,
            retries={"total_max_attempts": settings.llm_max_retries + 1, "mode": "standard"},
        )
        self._render = chat_template or template_for(settings.sagemaker_chat_template, settings.hf_model_id)
        self._client = client
        self._lock = threading.Lock()

    # --- LLMClient -------------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Create the boto3 client once (no network call); idempotent and thread-safe."""
        self._runtime()

    def count_tokens(self, text: str) -> int:
        return max(1, math.ceil(len(text) / 4)) if text else 0  # ~4 chars/token for English BPE

    def complete(self, messages: list[ChatMessage], params: GenerationParams) -> Completion:
        request = self._request(messages, params, stream=False)
        try:
            response = self._runtime().invoke_endpoint(**request)
            raw = response["Body"].read()
        except (BotoCoreError, ClientError) as error:
            raise self._map_error(error) from error
        text, details = parse_generation(raw)
        return Completion(
            text=text,
            completion_tokens=details.get("generated_tokens"),
            finish_reason=details.get("finish_reason"),
            extra={"endpoint": self.endpoint_name},
        )

    def stream(self, messages: list[ChatMessage], params: GenerationParams) -> Generator[str, None, None]:
        request = self._request(messages, params, stream=True)
        try:
            body = self._runtime().invoke_endpoint_with_response_stream(**request)["Body"]
            try:
                # Errors can also surface mid-stream (read timeout, ModelStreamError event).
                yield from iter_tgi_stream(
                    event["PayloadPart"].get("Bytes", b"") for event in body if "PayloadPart" in event
                )
            finally:
                close = getattr(body, "close", None)
                if close is not None:  # frees the connection when the consumer stops early
                    close()
        except (BotoCoreError, ClientError) as error:
            raise self._map_error(error) from error

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # --- internals -------------------------------------------------------------------------------
    def _runtime(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    session = boto3.session.Session()  # the default session is not thread-safe
                    self._client = session.client(
                        "sagemaker-runtime", region_name=self._region, config=self._boto_config
                    )
        return self._client

    def _request(self, messages: list[ChatMessage], params: GenerationParams, *, stream: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {"inputs": self._render(messages), "parameters": tgi_parameters(params)}
        if stream:
            payload["stream"] = True
        request: dict[str, Any] = {
            "EndpointName": self.endpoint_name,
            "ContentType": "application/json",
            "Body": json.dumps(payload).encode("utf-8"),
        }
        if not stream:
            request["Accept"] = "application/json"
        if self._inference_component:
            request["InferenceComponentName"] = self._inference_component
        return request

    def _map_error(self, error: Exception) -> LLMError:
        """A short, safe message; the raw error goes to the log only."""
        where = f"SageMaker endpoint {self.endpoint_name!r}"
        if isinstance(error, ReadTimeoutError):
            mapped: LLMError = LLMTimeoutError(f"{where} did not answer within {self._timeout_s:g}s")
        elif isinstance(error, (BotoConnectionError, HTTPClientError)):
            mapped = LLMUnavailableError(f"{where} cannot be reached")
        elif isinstance(error, NoCredentialsError):
            mapped = LLMUnavailableError(f"{where}: no AWS credentials configured")
        elif isinstance(error, ClientError):
            mapped = LLMUnavailableError(f"{where}: {_describe_client_error(error)}")
        else:
            mapped = LLMUnavailableError(f"{where}: call failed ({type(error).__name__})")
        logger.warning("%s (%s)", mapped, type(error).__name__)
        logger.debug("SageMaker error detail", exc_info=error)
        return mapped


def tgi_parameters(params: GenerationParams) -> dict[str, Any]:
    """TGI generate parameters; values TGI would reject are left out rather than sent."""
    parameters: dict[str, Any] = {
        "max_new_tokens": params.max_new_tokens,
        "return_full_text": False,
        "repetition_penalty": params.repetition_penalty,
    }
    if params.temperature > 0:  # TGI requires temperature > 0; 0 means greedy (no sampling)
        parameters["temperature"] = params.temperature
        if params.top_p < 1.0:  # TGI requires 0 < top_p < 1
            parameters["top_p"] = params.top_p
    if params.stop:
        parameters["stop"] = list(params.stop[:MAX_STOP_SEQUENCES])
    return parameters


def parse_generation(raw: bytes) -> tuple[str, dict[str, Any]]:
    """``[{"generated_text": ..., "details": {...}?}]`` -> (text, details)."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise LLMUnavailableError("SageMaker endpoint returned a response that is not JSON") from None
    first = data[0] if isinstance(data, list) and data else data
    if isinstance(first, dict) and isinstance(first.get("generated_text"), str):
        details = first.get("details")
        return first["generated_text"], details if isinstance(details, dict) else {}
    if isinstance(first, dict) and "error" in first:
        raise LLMUnavailableError(f"SageMaker endpoint reported an error ({first.get('error_type', 'generation')})")
    raise LLMUnavailableError("SageMaker endpoint returned an unexpected response shape")


def iter_tgi_stream(chunks: Iterable[bytes]) -> Iterator[str]:
    """Token texts from TGI server-sent events, whatever the chunk boundaries.

    Bytes are buffered and only complete lines are decoded, so a line (or a multi-byte UTF-8
    character) split across PayloadParts is handled. Special tokens (EOS) are skipped.
    """
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            text = _token_text(line)
            if text:
                yield text
    text = _token_text(buffer)  # a final event without a trailing newline
    if text:
        yield text


def _token_text(line: bytes) -> str | None:
    line = line.strip()
    if not line.startswith(b"data:"):
        return None  # blank separators, comments, ``event:`` lines
    try:
        event = json.loads(line[len(b"data:") :])
    except (ValueError, UnicodeDecodeError):
        raise LLMUnavailableError("SageMaker endpoint sent a malformed stream event") from None
    if not isinstance(event, dict):
        return None
    if "error" in event:
        raise LLMUnavailableError(f"SageMaker endpoint reported an error ({event.get('error_type', 'generation')})")
    token = event.get("token") or {}
    if token.get("special"):
        return None
    return token.get("text") or None


def _describe_client_error(error: ClientError) -> str:
    info = error.response.get("Error", {})
    code = str(info.get("Code", "Unknown"))
    message = str(info.get("Message", "")).lower()
    if code == "ModelError":
        status = error.response.get("OriginalStatusCode")
        return f"model error (status {status})" if status else "model error"
    if code in {"ValidationError", "ValidationException"} and ("not found" in message or "could not find" in message):
        return "endpoint not found"
    if code in _TRANSIENT_CODES:
        return f"temporarily unavailable ({code})"
    return f"call failed ({code})"
