"""A stand-in for the OpenAI and Anthropic APIs that the proxy tests own: it answers in
those APIs' shapes (JSON bodies, server-sent events with usage chunks, a 429, a stream
whose connection drops) and writes, per request, the headers it received and the exact
bytes it sent into DIR, named by the request's `x-test-id` header.

usage: llm_upstream.py DIR    (prints the port it listens on, then serves)
"""

import json
import os
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OUT = sys.argv[1]


def sse(obj):
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def anthropic_event(name, obj):
    return b"event: " + name.encode() + b"\n" + sse(obj)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.test_id = self.headers.get("x-test-id", "unnamed")
        self.sent = b""
        with open(os.path.join(OUT, self.test_id + ".req.json"), "w") as f:
            json.dump({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}, f)
        if self.path == "/v1/chat/completions":
            self.openai(body)
        elif self.path == "/v1/messages":
            self.anthropic(body)
        else:
            self.whole(404, {"error": {"message": "no such path " + self.path}}, {})
        with open(os.path.join(OUT, self.test_id + ".bin"), "wb") as f:
            f.write(self.sent)

    def write(self, data):
        self.wfile.write(data)
        self.wfile.flush()
        self.sent += data

    def whole(self, status, obj, headers):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.write(data)

    def start_stream(self, headers):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("transfer-encoding", "chunked")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()

    def chunk(self, data):
        # The body as the client sees it is the events; chunked framing is per hop.
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()
        self.sent += data

    def end_stream(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def openai(self, body):
        model = body["model"]
        if model == "rate-limited":
            error = {
                "error": {
                    "message": "Rate limit reached for gpt-4o on requests per min (RPM): Limit 3, Used 3",
                    "type": "requests",
                    "param": None,
                    "code": "rate_limit_exceeded",
                }
            }
            return self.whole(429, error, {"x-request-id": "req_429", "retry-after": "20"})
        if not body.get("stream"):
            answer = {
                "id": "chatcmpl-json",
                "object": "chat.completion",
                "created": 1764662400,
                "model": "gpt-4o-2024-08-06",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there"}, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": 50,
                    "completion_tokens": 10,
                    "total_tokens": 60,
                    "prompt_tokens_details": {"cached_tokens": 0},
                    "completion_tokens_details": {"reasoning_tokens": 0},
                },
            }
            return self.whole(200, answer, {"x-request-id": "req_json"})
        self.start_stream({"x-request-id": "req_" + self.test_id})
        base = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1764662400, "model": "gpt-4o-2024-08-06"}
        self.chunk(sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}))
        time.sleep(0.15)  # the time to first token
        words = ["Hello", " world", "!"] if model != "slow" else ["w"] * 40
        for i, w in enumerate(words):
            self.chunk(sse({**base, "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]}))
            if model == "drop-mid-stream" and i == 1:
                # The connection dies mid-answer: no more chunks, no terminating chunk.
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            time.sleep(0.2 if model == "slow" else 0.05)
        self.chunk(sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {
                "prompt_tokens": 1200,
                "completion_tokens": 300,
                "total_tokens": 1500,
                "prompt_tokens_details": {"cached_tokens": 400},
                "completion_tokens_details": {"reasoning_tokens": 0},
            }
            self.chunk(sse({**base, "choices": [], "usage": usage}))
        self.chunk(b"data: [DONE]\n\n")
        self.end_stream()

    def anthropic(self, body):
        usage_start = {"input_tokens": 900, "cache_creation_input_tokens": 300, "cache_read_input_tokens": 50, "output_tokens": 1}
        message = {
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_start,
        }
        if not body.get("stream"):
            message = {
                **message,
                "content": [{"type": "text", "text": "Hi"}],
                "stop_reason": "end_turn",
                "usage": {**usage_start, "output_tokens": 120},
            }
            return self.whole(200, message, {"request-id": "req_msg"})
        self.start_stream({"request-id": "req_msg_stream"})
        self.chunk(anthropic_event("message_start", {"type": "message_start", "message": message}))
        self.chunk(
            anthropic_event(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
        )
        self.chunk(anthropic_event("ping", {"type": "ping"}))
        time.sleep(0.15)
        for w in ["Hi", " there"]:
            delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}}
            self.chunk(anthropic_event("content_block_delta", delta))
            time.sleep(0.05)
        self.chunk(anthropic_event("content_block_stop", {"type": "content_block_stop", "index": 0}))
        self.chunk(
            anthropic_event(
                "message_delta",
                {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 120}},
            )
        )
        self.chunk(anthropic_event("message_stop", {"type": "message_stop"}))
        self.end_stream()


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
