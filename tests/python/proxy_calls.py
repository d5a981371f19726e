"""Calls the OpenAI and Anthropic APIs through `tokentop proxy` with their real Python
SDKs (and httpx for what the SDKs hide: the raw bytes, a client that leaves), and
prints what each call gave, as JSON, for the test to compare with the events.

usage: proxy_calls.py PROXY_URL    (the upstream is tests/python/llm_upstream.py)
"""

import json
import sys

import anthropic
import httpx
import openai

base = sys.argv[1]
KEY = "sk-test-secret-key-1234"
out = {}


def headers(test_id, **extra):
    return {"x-test-id": test_id, **extra}


oai = openai.OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0)

# A whole answer; the user from the body.
r = oai.chat.completions.create(
    model="gpt-4o",
    messages=[{"role": "user", "content": "Hi"}],
    user="bob",
    extra_headers=headers("json"),
)
out["json"] = {"content": r.choices[0].message.content, "usage": r.usage.total_tokens}

# A stream with its usage chunk; user, session and a property from Helicone's headers.
stream = oai.chat.completions.create(
    model="gpt-4o",
    messages=[{"role": "user", "content": "Hi"}],
    stream=True,
    stream_options={"include_usage": True},
    extra_headers=headers(
        "stream",
        **{
            "Helicone-User-Id": "alice",
            "Helicone-Session-Id": "s-1",
            "Helicone-Property-Feature": "search",
            "Helicone-Auth": "Bearer sk-helicone-must-not-leak",
        },
    ),
)
text, usage = "", None
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        text += chunk.choices[0].delta.content
    if chunk.usage:
        usage = chunk.usage.prompt_tokens
out["stream"] = {"content": text, "prompt_tokens": usage}

# Refused with 429.
try:
    oai.chat.completions.create(model="rate-limited", messages=[{"role": "user", "content": "Hi"}], extra_headers=headers("429"))
    out["429"] = {"error": None}
except openai.RateLimitError as e:
    out["429"] = {"status": e.status_code, "error": e.message}

# The upstream drops the connection mid-stream: the SDK sees the stream break.
try:
    stream = oai.chat.completions.create(
        model="drop-mid-stream", messages=[{"role": "user", "content": "Hi"}], stream=True, extra_headers=headers("drop")
    )
    got = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    out["drop"] = {"completed": True, "content": got}
except (httpx.HTTPError, openai.APIError) as e:
    out["drop"] = {"completed": False, "error": type(e).__name__}

# Anthropic, under a path prefix: a whole message and a stream.
ant = anthropic.Anthropic(base_url=base + "/anthropic", api_key=KEY, max_retries=0)
m = ant.messages.create(
    model="claude-sonnet-4-5",
    max_tokens=100,
    messages=[{"role": "user", "content": "Hi"}],
    metadata={"user_id": "carol"},
    extra_headers=headers("messages"),
)
out["messages"] = {"content": m.content[0].text, "input_tokens": m.usage.input_tokens}
with ant.messages.stream(
    model="claude-sonnet-4-5",
    max_tokens=100,
    messages=[{"role": "user", "content": "Hi"}],
    extra_headers=headers("messages-stream", **{"X-Tokentop-Property-Team": "growth"}),
) as s:
    text = "".join(s.text_stream)
    final = s.get_final_message()
out["messages-stream"] = {"content": text, "output_tokens": final.usage.output_tokens}

# The raw bytes of a stream, as the client receives them.
with httpx.Client(timeout=10) as h:
    body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    auth = {"authorization": "Bearer " + KEY, **headers("raw")}
    with h.stream("POST", base + "/v1/chat/completions", json=body, headers=auth) as resp:
        raw = b"".join(resp.iter_raw())
    with open(sys.argv[2], "wb") as f:
        f.write(raw)
    out["raw"] = {"status": resp.status_code, "bytes": len(raw)}

    # A client that leaves after the first chunk of a slow stream.
    body = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    with h.stream("POST", base + "/v1/chat/completions", json=body, headers={**auth, "x-test-id": "leave"}) as resp:
        first = next(resp.iter_raw())
    out["leave"] = {"first_bytes": len(first)}

print(json.dumps(out))
