"""Request and response models of the OpenAI-compatible API (``/v1``), as the OpenAI SDKs read them.

Only what a twin can honour is declared; other fields OpenAI clients send (``user``, ``seed``,
``presence_penalty``, ...) are accepted and ignored, so stock clients work unchanged. The extension
fields (``sources``, ``author``, ``rewritten_query``, ``warnings``) are additions the SDKs keep as extra attributes.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from llm_twin.api.schemas import AuthorRef, Source
from llm_twin.domain.limits import MAX_REQUEST_NEW_TOKENS, MAX_STOP_CHARS, MAX_STOP_SEQUENCES

# --- request ------------------------------------------------------------------------------------


class ContentPart(BaseModel):
    """One part of a message's content; only ``text`` parts can be answered."""

    model_config = ConfigDict(extra="allow", strict=True)

    type: str
    text: str | None = None


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    include_usage: bool = False


StopSequence = Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]
NewTokens = Annotated[int | None, Field(ge=1, le=MAX_REQUEST_NEW_TOKENS)]


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        # JSON types as the schema declares them: `"temperature": false` or `"stream": 0` is refused, not guessed.
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "model": "twin-guido-van-rossum",
                    "messages": [{"role": "user", "content": "What did you write about pattern matching?"}],
                }
            ]
        },
    )

    model: Annotated[str, Field(min_length=1, description="`twin` (every author) or a `twin-<name>` from /v1/models.")]
    messages: Annotated[
        list[ChatMessageIn],
        Field(
            min_length=1,
            description="The last message is the question (role user); earlier user and assistant messages are the "
            "conversation; system, developer and tool messages are ignored (the twin keeps its own instructions).",
        ),
    ]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: NewTokens = None
    max_completion_tokens: Annotated[
        int | None, Field(ge=1, le=MAX_REQUEST_NEW_TOKENS, description="Preferred over `max_tokens` when both are set.")
    ] = None
    temperature: Annotated[float | None, Field(ge=0.0, le=2.0)] = None
    top_p: Annotated[float | None, Field(gt=0.0, le=1.0)] = None
    stop: Annotated[
        list[StopSequence] | None,
        # The schema says what is accepted (one string or a list); the model holds the list.
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "string", "minLength": 1, "maxLength": MAX_STOP_CHARS},
                    {
                        "type": "array",
                        "items": {"type": "string", "minLength": 1, "maxLength": MAX_STOP_CHARS},
                        "maxItems": MAX_STOP_SEQUENCES,
                    },
                    {"type": "null"},
                ],
                "description": "A string or a list of strings that end the answer.",
            }
        ),
        Field(max_length=MAX_STOP_SEQUENCES),
    ] = None
    n: Annotated[int | None, Field(ge=1, le=1, description="One answer per request.")] = None

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop_is_a_list(cls, value: object) -> object:
        # OpenAI accepts one string or a list; one shape here keeps the errors about ``stop`` readable.
        return [value] if isinstance(value, str) else value


# --- responses ----------------------------------------------------------------------------------

FinishReason = Literal["stop", "length"]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: None = None


class TwinExtension(BaseModel):
    """What a twin adds to OpenAI's shapes (extra attributes in the SDKs: ``completion.sources``)."""

    sources: list[Source] = Field(
        default_factory=list, description="The writing the answer is grounded on; `[n]` in the text is sources[n-1]."
    )
    author: AuthorRef | None = Field(default=None, description="The author whose writing answered, if one.")
    rewritten_query: str | None = Field(
        default=None, description="A follow-up's standalone question, as it was searched and answered."
    )
    warnings: list[str] = Field(default_factory=list, description="Steps that degraded (e.g. the rewrite failed).")
    degraded: list[str] = Field(
        default_factory=list,
        description="Codes of the stages that degraded, e.g. expansion_failed, rerank_failed, "
        "collection_unavailable:<name> (as in /rag).",
    )


class ChatCompletion(TwinExtension):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: FinishReason | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    """One streamed ``data:`` line; the last one with a ``finish_reason`` also carries the extension fields."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    sources: list[Source] | None = None
    author: AuthorRef | None = None
    rewritten_query: str | None = None
    warnings: list[str] | None = None
    degraded: list[str] | None = None


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "llm-twin"
    author: AuthorRef | None = Field(default=None, description="Whose writing answers; none for `twin` (anyone's).")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


# --- errors -------------------------------------------------------------------------------------


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorResponse(BaseModel):
    error: OpenAIErrorDetail
