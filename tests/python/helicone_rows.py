"""The same made-up Helicone requests twice: as rows of Helicone's ClickHouse table
`request_response_rmt` (JSONEachRow: cost in USD x 10^9, properties a map, the
session in Helicone-Session-* properties) and as Helicone's JSON-lines export
(cost in USD), so that tokentop can be checked to read both alike.

Usage: helicone_rows.py COUNT END_EPOCH_S ROWS_OUT EXPORT_OUT
"""

import json
import random
import sys
import uuid
from datetime import datetime, timezone

count, end, rows_out, export_out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
rng = random.Random(7)
ORG = "6c2a3f1e-0000-4000-8000-000000000001"
ZERO = "00000000-0000-0000-0000-000000000000"
MODELS = [("OPENAI", "gpt-4o"), ("OPENAI", "gpt-4o-mini"), ("ANTHROPIC", "claude-3-5-haiku-20241022")]
# Cache hits and calls without a cost are of a model no price table knows, so that
# what a hit saved and what an unpriced call cost are the same however it is read.
UNPRICED = ("CUSTOM", "acme-internal-7b")


def stamp(ms, sep):
    t = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return t.strftime(f"%Y-%m-%d{sep}%H:%M:%S.") + f"{ms % 1000:03d}"


with open(rows_out, "w") as rows, open(export_out, "w") as export:
    start_ms = (end - 2 * 3600) * 1000
    for i in range(count):
        created = start_ms + i * (2 * 3600 * 1000 // count) + rng.randrange(1000)
        hit = rng.random() < 0.08
        priced = not hit and rng.random() < 0.95
        provider, model = rng.choice(MODELS) if priced else UNPRICED
        status = rng.choice([200] * 17 + [429, 500, -1])
        latency = None if rng.random() < 0.03 else rng.randrange(5, 30000)
        ttft = rng.randrange(50, 900) if latency and rng.random() < 0.6 else None
        cost = rng.randrange(1, 50_000_000) if (priced or hit) else None
        user = rng.choice(["", "alice", "bob", "carol", "dave"] + [f"u-{k}" for k in range(40)])
        props = {"App": rng.choice(["web", "mobile", "batch"]), "Tier": rng.choice(["free", "pro"])}
        if rng.random() < 0.5:
            s = rng.randrange(60)
            props.update({"Helicone-Session-Id": f"s-{s}", "Helicone-Session-Name": f"Session {s}",
                          "Helicone-Session-Path": "/plan"})
        country = rng.choice([None, "DE", "US", ""])
        prompt, completion = rng.randrange(10, 4000), rng.randrange(0, 800)
        cache_read, cache_write = rng.choice([0, 0, 128, 512]), rng.choice([0, 0, 0, 64])
        rid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        cache_ref = str(uuid.UUID(int=rng.getrandbits(128), version=4)) if hit else ZERO
        rows.write(json.dumps({
            "request_id": rid, "request_created_at": stamp(created, " "), "status": status, "latency": latency,
            "time_to_first_token": ttft, "model": model, "provider": provider, "user_id": user,
            "organization_id": ORG, "properties": props, "country_code": country, "prompt_tokens": prompt,
            "completion_tokens": completion, "prompt_cache_read_tokens": cache_read,
            "prompt_cache_write_tokens": cache_write, "cost": cost, "cache_reference_id": cache_ref,
            "cache_enabled": hit,
        }) + "\n")
        export.write(json.dumps({
            "request_id": rid, "request_created_at": stamp(created, "T") + "Z", "response_status": status,
            "delay_ms": latency, "time_to_first_token": ttft, "model": model, "provider": provider,
            "request_user_id": user or None, "request_properties": props, "country_code": country,
            "prompt_tokens": prompt, "completion_tokens": completion, "prompt_cache_read_tokens": cache_read,
            "prompt_cache_write_tokens": cache_write, "cost": None if cost is None else cost / 1e9,
            "cache_reference_id": cache_ref, "cache_enabled": hit,
        }) + "\n")
