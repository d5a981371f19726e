#!/usr/bin/env python3
"""Regenerates assets/pricing.json from LiteLLM's MIT-licensed model price list.

Usage: python3 scripts/gen-pricing.py PATH/TO/model_prices_and_context_window.json > assets/pricing.json

Keeps chat, completion, responses and embedding models that have a per-token input
price, with base prices only (no long-context tiers, batch, priority or flex prices).
"""
import json
import sys

MODES = {"chat", "completion", "responses", "embedding"}


def main() -> None:
    src = json.load(open(sys.argv[1]))
    models = {}
    for name, m in src.items():
        if not isinstance(m, dict) or m.get("mode") not in MODES:
            continue
        inp = m.get("input_cost_per_token")
        if not isinstance(inp, (int, float)):
            continue
        entry = {"provider": m.get("litellm_provider", ""), "input": inp, "output": m.get("output_cost_per_token") or 0}
        if isinstance(m.get("cache_read_input_token_cost"), (int, float)):
            entry["cache_read"] = m["cache_read_input_token_cost"]
        if isinstance(m.get("cache_creation_input_token_cost"), (int, float)):
            entry["cache_write"] = m["cache_creation_input_token_cost"]
        models[name] = entry
    out = {
        "attribution": "Derived from LiteLLM's model_prices_and_context_window.json (MIT License, "
        "Copyright (c) 2023 Berri AI); see assets/LITELLM-LICENSE. Prices in USD per token.",
        "models": dict(sorted(models.items())),
    }
    json.dump(out, sys.stdout, indent=0, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
