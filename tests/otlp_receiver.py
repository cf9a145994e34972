"""A tiny OTLP/HTTP trace receiver for tests: records each export's path, headers and decoded spans."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


@dataclass
class Export:
    path: str
    headers: dict[str, str]
    spans: list[Any]  # opentelemetry.proto.trace.v1.Span messages


@dataclass
class Receiver:
    url: str
    exports: list[Export] = field(default_factory=list)
    received: threading.Event = field(default_factory=threading.Event)

    @property
    def spans(self) -> list[Any]:
        return [span for export in self.exports for span in export.spans]


def attributes(span: Any) -> dict[str, Any]:
    """A protobuf span's attributes as a dict of plain values."""
    values: dict[str, Any] = {}
    for item in span.attributes:
        kind = item.value.WhichOneof("value")
        value = getattr(item.value, kind)
        if kind == "array_value":
            value = [getattr(v, v.WhichOneof("value")) for v in value.values]
        values[item.key] = value
    return values


@contextmanager
def otlp_receiver() -> Iterator[Receiver]:
    receiver = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            request = ExportTraceServiceRequest.FromString(body)
            spans = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
            receiver.exports.append(Export(self.path, {k.lower(): v for k, v in self.headers.items()}, spans))
            receiver.received.set()
            payload = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
