#!/usr/bin/env bash
# Benchmarks for tokentop, reproducible on any machine (figures in the README were
# measured on a 2-core, 24 GiB machine). Not part of `cargo test`.
#
#   scripts/bench.sh report    # report over 1,000,000 events: throughput and peak memory
#   scripts/bench.sh duckdb    # report against DuckDB (2 threads) and jq on the same 1,000,000
#                              # gateway-style events (1.1 GB), in the same run, then the parse
#                              # alone on one thread (not in "all": it makes a venv with DuckDB
#                              # from PyPI)
#   scripts/bench.sh engine    # live engine: 24 h at 1,000 req/s, peak memory
#   scripts/bench.sh formats   # parser throughput of every input format
#   scripts/bench.sh formats-callgrind  # instructions per event of every parser (valgrind):
#                              # repeatable where wall-clock figures are noisy (not in "all")
#   scripts/bench.sh report-callgrind   # instructions per event of a one-thread report of
#                              # gateway-style events, parse and aggregation (valgrind): the
#                              # steady state, (I(100k) - I(20k)) / 80k (not in "all"); another
#                              # binary with TOKENTOP=PATH (the profile-guided build, say)
#   scripts/bench.sh json-floor # the floor under report's parse: the same 1,000,000 gateway-style
#                              # events read the same way and only checked as JSON by
#                              # serde_json and by sonic-rs (scripts/json-floor, its own crate),
#                              # beside tokentop's parse alone and its whole report (TOKENTOP=PATH
#                              # for another binary), on 1 and 2 threads, alternating; medians
#                              # of 5 (not in "all": it fetches sonic-rs)
#   scripts/bench.sh relay     # serve: 100,000 events/s to 4 clients, lag, idle CPU
#   scripts/bench.sh console   # console: frame time, CPU at 10,000 events/s, bytes/s, idle
#   scripts/bench.sh alerts    # live ingest with and without the nine seed alert rules
#   scripts/bench.sh faults    # keys under 100k and 200k events/s of file input (short lines and
#                              # gateway-style ones); memory with
#                              # 10,000 events of 50 KB strings; report over 1 GB without a newline
#   scripts/bench.sh otlp      # OTLP/HTTP protobuf exports of GenAI spans into the console at
#                              # 100k and 150k spans/s: accepted, refused (429), keys, memory
#   scripts/bench.sh proxy     # latency tokentop proxy adds at 100 and 1,000 req/s, JSON and streams
#   scripts/bench.sh ship      # ship 1,000,000 events into a local ClickHouse (Debian's
#                              # clickhouse-server, started here from a temporary directory):
#                              # events/s and ship's own CPU (not in "all": it needs the server)
#   scripts/bench.sh clickhouse # the console reading ClickHouse: 10,000,000 events over 24 h
#                              # shipped into a local server (and its rollup filled), then a
#                              # refresh of the 24 h and 1 h windows and a drill-down into a
#                              # model, timed (not in "all")
#   scripts/bench.sh           # all nine but duckdb, ship and clickhouse
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
tmp=${TMPDIR:-/tmp}/tokentop-bench
mkdir -p "$tmp"
cargo build --release --quiet --bin tokentop --examples
# The binary report-callgrind and json-floor measure: another with TOKENTOP=PATH.
tokentop=${TOKENTOP:-./target/release/tokentop}

if [[ $what == report || $what == all ]]; then
  events=$tmp/events-1m.jsonl
  [[ -s $events ]] || ./target/release/examples/gen_events 1000000 > "$events"
  echo "input: $(wc -l < "$events") events, $(du -m "$events" | cut -f1) MB"
  cat "$events" > /dev/null # into the page cache
  if command -v hyperfine > /dev/null; then
    hyperfine --warmup 2 --runs 10 "./target/release/tokentop report $events"
  else
    for _ in 1 2 3 4 5; do /usr/bin/time -f "%e s" ./target/release/tokentop report "$events" > /dev/null; done
  fi
  /usr/bin/time -f "peak RSS %M KiB, %e s wall, %P CPU" ./target/release/tokentop report "$events" > /dev/null
fi

if [[ $what == duckdb ]]; then
  events=$tmp/realistic-1m.jsonl
  [[ -s $events ]] || ./target/release/examples/gen_events 1000000 300 1 5000 --realistic > "$events"
  venv=$tmp/venv
  [[ -x $venv/bin/python ]] || python3 -m venv "$venv"
  "$venv/bin/python" -c "import duckdb" 2> /dev/null || "$venv/bin/pip" install --quiet duckdb
  command -v jq > /dev/null || echo "jq is not installed (apt-get install jq): its pair is left out"
  JQ=$(command -v jq > /dev/null && echo 1 || echo 0) "$venv/bin/python" scripts/vs_duckdb.py "$events" 5
  echo "the parse alone (read and parsed, every event counted, nothing aggregated), one thread:"
  ./target/release/examples/parse_only "$events" 1 3
fi

if [[ $what == ship || $what == clickhouse ]]; then
  ch=$(mktemp -d)
  port=$((20000 + RANDOM % 20000))
  cat > "$ch/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>$ch/server.log</log><errorlog>$ch/error.log</errorlog></logger>
  <http_port>$port</http_port><tcp_port>$((port + 1))</tcp_port><listen_host>127.0.0.1</listen_host>
  <path>$ch/data/</path><tmp_path>$ch/tmp/</tmp_path><user_files_path>$ch/user_files/</user_files_path>
  <format_schema_path>$ch/format_schemas/</format_schema_path><users_config>$ch/users.xml</users_config>
  <default_profile>default</default_profile><default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
</yandex>
XML
  cat > "$ch/users.xml" <<XML
<?xml version="1.0"?>
<yandex><profiles><default><log_queries>1</log_queries></default></profiles><quotas><default/></quotas>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
</yandex>
XML
  server=$(command -v clickhouse-server || echo /usr/sbin/clickhouse-server)
  "$server" --config-file="$ch/config.xml" > /dev/null 2>&1 &
  chpid=$!
  until curl -s "http://127.0.0.1:$port/ping" > /dev/null; do sleep 0.2; done
  echo "ClickHouse $(curl -s "http://127.0.0.1:$port/" --data-binary 'SELECT version()') on port $port"
  events=$tmp/events-1m.jsonl
  [[ $what == ship && ! -s $events ]] && ./target/release/examples/gen_events 1000000 > "$events"
  [[ $what == ship ]] && cat "$events" > /dev/null
  [[ $what == ship ]] && for rows in 10000 50000; do
    /usr/bin/time -f "ship, --batch-rows $rows: %e s wall, ship's CPU %U s user + %S s sys, peak RSS %M KiB" \
      ./target/release/tokentop ship --no-follow --create-table --batch-rows "$rows" --spool "$ch/spool" \
      --to "clickhouse://127.0.0.1:$port/default?table=bench$rows" "$events" 2>&1 | tail -n 4
    echo "rows in ClickHouse: $(curl -s "http://127.0.0.1:$port/" --data-binary "SELECT count() FROM default.bench$rows")"
  done
  if [[ $what == clickhouse ]]; then
    # A day at ~115 requests/s, ending now.
    ./target/release/tokentop demo --count 10000000 --fast --rate 115 |
      ./target/release/tokentop ship --no-follow --create-table --batch-rows 50000 --spool "$ch/spool" \
        --to "clickhouse://127.0.0.1:$port/default?table=day" - 2>&1 | tail -n 2
    # (ship fills the table's rollup before it exits: the time above includes it)
    ./target/release/examples/clickhouse_bench "clickhouse://127.0.0.1:$port/default?table=day"
  fi
  kill "$chpid"; wait "$chpid" 2> /dev/null || true
  rm -rf "$ch"
fi

if [[ $what == formats || $what == all ]]; then
  ./target/release/examples/format_throughput 300000
fi

if [[ $what == formats-callgrind ]]; then
  # 5,000 events read twice, minus a run that reads nothing: what reading costs, per event.
  for f in tokentop helicone.jsonl litellm otel helicone.csv; do
    count() {
      TOKENTOP_READS=$1 valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        ./target/release/examples/format_throughput 5000 "$f" 2>&1 | awk '/Collected/ {print $4}'
    }
    echo "$f $(( ($(count 2) - $(count 0)) / 10000 )) instructions/event"
  done
fi

if [[ $what == report-callgrind ]]; then
  # Two runs whose difference is 80,000 events: start-up, the last report and the
  # pricing table's loading cancel out.
  for n in 20000 100000; do
    [[ -s $tmp/r$n.jsonl ]] || ./target/release/examples/gen_events $n 300 1 5000 --realistic > "$tmp/r$n.jsonl"
  done
  count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \
      "$tokentop" report --window all --threads 1 "$tmp/r$1.jsonl" 2>&1 > /dev/null |
      awk '/Collected/ {print $4}'
  }
  echo "report $(( ($(count 100000) - $(count 20000)) / 80000 )) instructions/event"
fi

if [[ $what == json-floor ]]; then
  events=$tmp/realistic-1m.jsonl
  [[ -s $events ]] || ./target/release/examples/gen_events 1000000 300 1 5000 --realistic > "$events"
  cargo build --release --quiet --manifest-path scripts/json-floor/Cargo.toml --target-dir target/json-floor
  floor=./target/json-floor/release/json-floor
  cat "$events" > /dev/null # into the page cache
  declare -A walls=()
  seconds() { # the wall of "$@", in seconds; the bench stops when it fails
    local t0 t1
    t0=$(date +%s.%N)
    "$@" > /dev/null || { echo "failed: $*" >&2; exit 1; }
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc
  }
  rows=("check lines are UTF-8" "check lines are JSON, serde_json" "check lines are JSON, sonic-rs"
    "tokentop's parse alone" "tokentop report")
  for _ in 1 2 3 4 5; do
    for threads in 1 2; do
      walls["${rows[0]}/$threads"]+=" $(seconds "$floor" "$events" utf8 "$threads")"
      walls["${rows[1]}/$threads"]+=" $(seconds "$floor" "$events" serde_json "$threads")"
      walls["${rows[2]}/$threads"]+=" $(seconds "$floor" "$events" sonic "$threads")"
      walls["${rows[3]}/$threads"]+=" $(seconds ./target/release/examples/parse_only "$events" "$threads" 1)"
      walls["${rows[4]}/$threads"]+=" $(seconds "$tokentop" report --window all --threads "$threads" "$events")"
    done
  done
  median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR] = $1} END {printf "%.3f", a[int((NR + 1) / 2)]}'; }
  printf '%-34s %9s %9s\n' "$(wc -l < "$events") events, median of 5" "1 thread" "2 threads"
  for row in "${rows[@]}"; do
    printf '%-34s %8ss %8ss\n' "$row" "$(median <<< "${walls[$row/1]}")" "$(median <<< "${walls[$row/2]}")"
  done
fi

if [[ $what == relay || $what == all ]]; then
  ./target/release/examples/relay_bench 100000 10 4
fi

if [[ $what == console || $what == all ]]; then
  ./target/release/examples/console_bench 1 1000
fi

if [[ $what == engine || $what == all ]]; then
  TOKENTOP_WINDOWS=1m,5m,15m,1h,6h,24h,7d ./target/release/examples/engine_memory 24 1000 50 100000
fi

if [[ $what == alerts || $what == all ]]; then
  ./target/release/examples/alerts_bench 1 1000 100000 off
  ./target/release/examples/alerts_bench 1 1000 100000 on
fi

if [[ $what == otlp || $what == all ]]; then
  ./target/release/examples/otlp_bench 100000 15
  ./target/release/examples/otlp_bench 150000 15
fi

if [[ $what == proxy || $what == all ]]; then
  ./target/release/examples/proxy_bench 10
fi

if [[ $what == faults || $what == all ]]; then
  ./target/release/examples/faults_bench keys 100000 10
  ./target/release/examples/faults_bench keys 200000 10
  ./target/release/examples/faults_bench keys 100000 10 --realistic
  ./target/release/examples/faults_bench keys 200000 10 --realistic
  ./target/release/examples/faults_bench memory
  zeros=$tmp/zeros.jsonl
  { echo '{"created_at":1740000000000,"model":"m"}'; head -c 1000000000 /dev/zero; echo
    echo '{"created_at":1740000001000,"model":"m"}'; } > "$zeros"
  /usr/bin/time -f "report over 1 GB of zeros between two lines: %e s wall, peak RSS %M KiB" \
    ./target/release/tokentop report --window all "$zeros" > /dev/null 2> "$tmp/zeros.err" || true
  tail -n 1 "$tmp/zeros.err"
  rm -f "$zeros"
fi
