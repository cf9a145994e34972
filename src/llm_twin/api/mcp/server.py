"""The MCP server: ``search_writing`` and ``ask_twin`` tools and the ``twin://authors`` resource.

One server definition for both transports: streamable HTTP on the API app (``/mcp``, see
``api/app.py``) and stdio (``llm-twin mcp``, see ``api/mcp/stdio.py``). The tools answer through a
``ServiceState`` — the process's one pipeline and its one request limit — so an MCP call queues
with ``/rag`` calls instead of competing with them, and it is traced like them (``rag``,
``retrieval`` spans) under one ``mcp.<tool>`` span.

Every failure is a tool result with ``isError`` and a message written for the caller (the argument
at fault, or the public message of the error kind); exception text and stack traces go to the log.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import CallToolResult, InputRequiredResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field, ValidationError

from llm_twin import __version__
from llm_twin.api.errors import describe_error
from llm_twin.api.mcp.models import TwinAnswer, WritingSearch
from llm_twin.api.people import read_people, registry_reader
from llm_twin.api.service import ServiceState
from llm_twin.domain.limits import MAX_AUTHOR_CHARS, MAX_K, MAX_QUERY_CHARS, MIN_K, check_request
from llm_twin.errors import InvalidInputError, LLMTwinError
from llm_twin.observability import record_error, set_attributes, trace_span
from llm_twin.scheduling import niced

if TYPE_CHECKING:
    from opentelemetry.trace import Span

logger = logging.getLogger(__name__)

#: The service the tools answer through; called per tool call, since the API app builds its
#: ``ServiceState`` only when it starts (lifespan), after the routes exist.
ServiceProvider = Callable[[], ServiceState]
Lifespan = Callable[[MCPServer[Any]], AbstractAsyncContextManager[Any]]

AUTHORS_URI = "twin://authors"

INSTRUCTIONS = """\
An LLM twin: answers in the voice and knowledge of the authors whose writing is indexed, grounded in \
what they wrote. `search_writing` returns the passages themselves (no generation), `ask_twin` a \
written answer citing its sources as [n]. The `twin://authors` resource lists the people, with every \
name they write under; pass one as `author` to use only that person's writing."""

# The schema shows the limits to clients (and to the model that fills in the arguments); the rules
# themselves are ``check_request``, applied by the tools, so the errors read like the API's.
QueryArg = Annotated[
    str, Field(description="What to look for, in plain words.", json_schema_extra={"maxLength": MAX_QUERY_CHARS})
]
QuestionArg = Annotated[
    str, Field(description="The question to answer.", json_schema_extra={"maxLength": MAX_QUERY_CHARS})
]
AuthorArg = Annotated[
    str | None,
    Field(
        description=f"Only this person's writing: a name or alias from {AUTHORS_URI}. "
        "Omitted: every author (a name in the question still restricts the search to that person).",
        json_schema_extra={"maxLength": MAX_AUTHOR_CHARS},
    ),
]
KArg = Annotated[
    int | None,
    Field(
        description=f"How many passages to return ({MIN_K}-{MAX_K}; default: the service's setting).",
        json_schema_extra={"minimum": MIN_K, "maximum": MAX_K},
    ),
]


def text_result(text: str, structured: BaseModel | None = None, *, error: bool = False) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=structured.model_dump(mode="json") if structured is not None else None,
        is_error=error,
    )


def error_result(
    error: BaseException, tool: str, span: Span, arguments: Mapping[str, str] | None = None
) -> CallToolResult:
    """The ``isError`` result for a failed call, recorded on the tool's span as ``/rag`` records its
    errors; ``arguments`` renames pipeline fields to the tool's (query -> question)."""
    status, detail = describe_error(error)
    set_attributes(span, {"error.code": detail.code})
    if isinstance(error, InvalidInputError):
        return text_result(
            f"invalid argument {(arguments or {}).get(error.field, error.field)}: {error.message}", error=True
        )
    if status >= 500:
        record_error(span, error)
        logger.warning(
            "MCP tool %s failed (%d %s): %s",
            tool,
            status,
            detail.code,
            error,
            exc_info=error if not isinstance(error, LLMTwinError) else None,
        )
    return text_result(detail.message, error=True)


def validation_message(error: ValidationError) -> str:
    """``invalid argument k: Input should be a valid integer``: each argument once, no values echoed."""
    messages: dict[str, str] = {}
    for item in error.errors():
        name = ".".join(str(part) for part in item.get("loc") or ()) or "arguments"
        messages.setdefault(name, str(item.get("msg", "invalid value")).removeprefix("Value error, "))
    return "; ".join(f"invalid argument {name}: {message}" for name, message in messages.items())


class TwinMCPServer(MCPServer[Any]):
    """``MCPServer`` whose argument-type errors read like the tools' own (the SDK's quote pydantic)."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as error:
            if isinstance(error.__cause__, ValidationError):
                return text_result(validation_message(error.__cause__), error=True)
            raise


class TwinTools:
    """The tools and the authors resource, answering through the service ``service()`` returns."""

    def __init__(self, service: ServiceProvider) -> None:
        self._service = service

    async def search_writing(
        self, query: QueryArg, author: AuthorArg = None, k: KArg = None
    ) -> Annotated[CallToolResult, WritingSearch]:
        """Find passages in the indexed writing (articles, posts, repositories) that bear on `query`,
        best first, each with its title, author, content type, link, relevance score and full text.
        Retrieval only: nothing is generated. Use it to quote or check what someone wrote."""
        with trace_span("mcp.search_writing", query_chars=len(query), k=k, author=author) as span:
            try:
                service = self._service()
                query = check_request(query, k=k, author=author, expand_max=service.settings.expand_max)
                pipeline = await service.require_pipeline()
                run = partial(pipeline.retrieval.run, query, k=k, author=author)
                result = await anyio.to_thread.run_sync(
                    niced(run, service.settings.worker_niceness), limiter=service.limiter
                )
            except Exception as error:
                return error_result(error, "search_writing", span)
            found = WritingSearch.from_retrieval(result)
            set_attributes(span, {"passages": len(found.passages)})
        return text_result(found.as_text(), found)

    async def ask_twin(self, question: QuestionArg, author: AuthorArg = None) -> Annotated[CallToolResult, TwinAnswer]:
        """Answer `question` as the twin of the people whose writing is indexed, grounded in what they
        wrote: the answer cites its sources as [n] (sources[n-1]: title, author, link, score, snippet).
        Takes a few seconds: it retrieves, then the language model writes the answer."""
        with trace_span("mcp.ask_twin", query_chars=len(question), author=author) as span:
            try:
                service = self._service()
                question = check_request(question, author=author, expand_max=service.settings.expand_max)
                pipeline = await service.require_pipeline()
                run = partial(pipeline.run, question, author=author)
                answer = await anyio.to_thread.run_sync(
                    niced(run, service.settings.worker_niceness), limiter=service.limiter
                )
            except Exception as error:
                return error_result(error, "ask_twin", span, {"query": "question"})
            reply = TwinAnswer.from_answer(answer)
            set_attributes(span, {"sources": len(reply.sources)})
        return text_result(reply.as_text(), reply)

    async def authors(self) -> str:
        """The people whose writing is indexed (JSON, the rows of `llm-twin authors --json`)."""
        service = self._service()
        try:
            rows = await anyio.to_thread.run_sync(read_people, service.settings, await registry_reader(service))
        except LLMTwinError as error:
            raise ResourceError(error.safe_message) from None
        return json.dumps(rows, ensure_ascii=False)


def build_mcp_server(service: ServiceProvider, lifespan: Lifespan | None = None) -> TwinMCPServer:
    """The server with its tools and resource; ``lifespan`` (stdio) owns the service, else the app does."""
    tools = TwinTools(service)
    server = TwinMCPServer(
        "llm-twin", title="LLM Twin", instructions=INSTRUCTIONS, version=__version__, lifespan=lifespan
    )
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)
    for tool, title in ((tools.search_writing, "Search the writing"), (tools.ask_twin, "Ask the twin")):
        # The docstring is what the client's model reads to choose a tool: without the source's indentation.
        server.add_tool(tool, title=title, description=inspect.cleandoc(tool.__doc__ or ""), annotations=read_only)
    server.resource(
        AUTHORS_URI,
        name="authors",
        title="Authors",
        description="The people whose writing is indexed: each person's shown name, the other names they "
        "write under (and why they are linked), and document counts by content type; most documents first.",
        mime_type="application/json",
    )(tools.authors)
    return server
