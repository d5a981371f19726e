"""Sends GenAI spans to an OTLP endpoint with the real OpenTelemetry Python SDK and
its OTLP exporters, then prints what it sent (one JSON object per span) for the test
to compare with the events tokentop makes of them.

usage: otlp_send.py ENDPOINT http|http-gzip|https|grpc|grpc-gzip|grpcs [TOKEN]
(https and grpcs trust the CA certificate in the file OTLP_CA names.)
"""

import json
import os
import sys
import time

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode, set_span_in_context

endpoint, protocol = sys.argv[1], sys.argv[2]
token = sys.argv[3] if len(sys.argv) > 3 else None
headers = {"authorization": f"Bearer {token}"} if token else None

ca = os.environ.get("OTLP_CA")
if protocol.startswith("grpc"):
    import grpc
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import Compression, OTLPSpanExporter

    compression = Compression.Gzip if protocol == "grpc-gzip" else Compression.NoCompression
    if protocol == "grpcs":
        with open(ca, "rb") as f:
            credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
        exporter = OTLPSpanExporter(
            endpoint=endpoint.replace("http://", "https://"), credentials=credentials, headers=headers, timeout=10
        )
    else:
        exporter = OTLPSpanExporter(
            endpoint=endpoint, insecure=True, headers=headers, compression=compression, timeout=10
        )
else:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    compression = Compression.Gzip if protocol == "http-gzip" else Compression.NoCompression
    if protocol == "https":
        endpoint = endpoint.replace("http://", "https://")
    exporter = OTLPSpanExporter(
        endpoint=endpoint + "/v1/traces",
        headers=headers,
        compression=compression,
        timeout=10,
        certificate_file=ca if protocol == "https" else None,
    )

provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
provider.add_span_processor(SimpleSpanProcessor(exporter))
tracer = provider.get_tracer("otlp_send")

# Fixed times (nanoseconds), a minute ago, so latencies are exact.
t0 = (time.time_ns() // 1_000_000_000 - 60) * 1_000_000_000
sent = []


def record(span, **expected):
    ctx = span.get_span_context()
    sent.append({"span_id": format(ctx.span_id, "016x"), "trace_id": format(ctx.trace_id, "032x"), **expected})


# A chat completion, streamed.
span = tracer.start_span("chat gpt-4o", start_time=t0)
span.set_attributes(
    {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.usage.input_tokens": 1200,
        "gen_ai.usage.output_tokens": 300,
        "gen_ai.response.time_to_first_chunk": 0.4,
        "gen_ai.conversation.id": "conv-1",
        "user.id": "u-42",
    }
)
record(span, kind="chat")
span.end(end_time=t0 + 1_250_000_000)

# A call refused with 429.
span = tracer.start_span("chat claude-sonnet-4-5", start_time=t0 + 2_000_000_000)
span.set_attributes(
    {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4-5",
        "http.response.status_code": 429,
        "error.type": "RateLimitError",
    }
)
span.set_status(Status(StatusCode.ERROR, "rate limited"))
record(span, kind="error")
span.end(end_time=t0 + 2_080_000_000)

# Not an LLM call.
span = tracer.start_span("GET /health", start_time=t0 + 3_000_000_000)
span.set_attribute("http.request.method", "GET")
record(span, kind="other")
span.end(end_time=t0 + 3_010_000_000)

# A framework's span around the provider's: only the inner one is the call.
outer = tracer.start_span("ChatOpenAI.chat", start_time=t0 + 4_000_000_000)
outer.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini", "gen_ai.system": "openai"})
inner = tracer.start_span("chat gpt-4o-mini", context=set_span_in_context(outer), start_time=t0 + 4_010_000_000)
inner.set_attributes(
    {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 80,
        "gen_ai.usage.output_tokens": 20,
    }
)
record(inner, kind="inner")
inner.end(end_time=t0 + 4_510_000_000)
record(outer, kind="outer")
outer.end(end_time=t0 + 4_600_000_000)

provider.shutdown()
print(json.dumps({"t0_ns": t0, "spans": sent}))
