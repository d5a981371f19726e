-- The columns of Helicone's `request_response_rmt` that matter to tokentop, with the
-- names, types, engine and key that Helicone's ClickHouse migrations give them
-- (github.com/Helicone/helicone, clickhouse/migrations: the table's creation, then
-- the cache-token, cache-reference and cost columns added later). Bodies, scores,
-- assets and indexes are left out.
CREATE TABLE default.request_response_rmt (
    response_id Nullable(UUID),
    response_created_at Nullable(DateTime64(3)),
    latency Nullable(Int64),
    status Int64,
    completion_tokens Nullable(Int64),
    prompt_tokens Nullable(Int64),
    prompt_cache_write_tokens Int64 DEFAULT 0,
    prompt_cache_read_tokens Int64 DEFAULT 0,
    model LowCardinality(String),
    request_id UUID,
    request_created_at DateTime64(3),
    user_id LowCardinality(String),
    organization_id UUID,
    proxy_key_id Nullable(UUID),
    threat Nullable(Bool),
    time_to_first_token Nullable(Int64),
    provider LowCardinality(String),
    target_url Nullable(String),
    country_code Nullable(String),
    cache_enabled Bool DEFAULT false,
    properties Map(LowCardinality(String), String),
    cache_reference_id UUID,
    cost Nullable(UInt64) DEFAULT 0,
    updated_at DateTime64(3, 'UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree(updated_at)
PARTITION BY toYYYYMM(request_created_at)
ORDER BY (organization_id, provider, model, user_id, request_created_at, request_id)
