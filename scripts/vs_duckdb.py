"""`tokentop report` against DuckDB and jq on the same file, in the same run.

    python3 scripts/vs_duckdb.py EVENTS.jsonl [RUNS]

Run by `scripts/bench.sh duckdb`, which builds tokentop, writes the file and makes a
venv with DuckDB. Each run alternates the tools so that both see the same machine;
the median wall of each is compared. DuckDB gets 2 threads and reads only the columns
its query needs; its time is the query's own (connect to result, without Python's
start-up or `import duckdb`), which is the stricter comparison for tokentop, whose
time is its whole process. tokentop computes its whole report (every group, property,
user and percentile); DuckDB computes a handful of aggregates per model.
"""

import json
import os
import statistics
import subprocess
import sys
import time

TOKENTOP = os.environ.get("TOKENTOP", "./target/release/tokentop")

DUCKDB_QUERY = """
SELECT model, count(*) AS requests, sum(cost_usd) AS cost,
       sum(prompt_tokens) AS prompt, sum(completion_tokens) AS completion,
       count(*) FILTER (WHERE status >= 500) AS e5xx,
       count(*) FILTER (WHERE status BETWEEN 400 AND 499) AS e4xx,
       count(*) FILTER (WHERE status = 429) AS e429,
       quantile_disc(latency_ms, [0.5, 0.95, 0.99]) AS latency,
       quantile_disc(ttft_ms, [0.5, 0.95, 0.99]) AS ttft,
       count(DISTINCT user_id) AS users, min(created_at), max(created_at)
FROM read_ndjson(?, columns = {
    created_at: 'VARCHAR', provider: 'VARCHAR', model: 'VARCHAR', status: 'INTEGER',
    latency_ms: 'DOUBLE', ttft_ms: 'DOUBLE', prompt_tokens: 'BIGINT',
    completion_tokens: 'BIGINT', cost_usd: 'DOUBLE', user_id: 'VARCHAR'})
GROUP BY GROUPING SETS ((model), ())
ORDER BY requests DESC
"""

# Runs in a child process so that its memory is its own; prints the query's seconds
# and the total row.
DUCKDB_CHILD = """
import json, sys, time
import duckdb
t = time.perf_counter()
con = duckdb.connect(config={"threads": 2})
con.execute("SET enable_progress_bar = false")
rows = con.execute(sys.argv[2], [sys.argv[1]]).fetchall()
q = time.perf_counter() - t
total = [r for r in rows if r[0] is None][0]
print(json.dumps({"seconds": q, "requests": total[1], "latency": total[8]}))
"""


def run(cmd):
    """Runs cmd; returns (wall seconds, peak RSS KiB, stdout)."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    if status != 0:
        sys.exit(f"{cmd[0]} failed with status {status}")
    return wall, usage.ru_maxrss, out


def main():
    events = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    python = os.environ.get("DUCKDB_PYTHON", sys.executable)
    size = os.path.getsize(events)
    with open(events, "rb") as f:  # into the page cache
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 24), b""))
    print(f"input: {events}: {lines:,} lines, {size / 1e6:,.0f} MB")

    tt, tt_rss, dd, dd_wall, dd_rss, one = [], [], [], [], [], []
    report = duck = None
    for _ in range(runs):
        wall, rss, out = run([TOKENTOP, "report", "--window", "all", "--threads", "2", events])
        tt.append(wall)
        tt_rss.append(rss)
        report = json.loads(out)
        wall, rss, out = run([python, "-c", DUCKDB_CHILD, events, DUCKDB_QUERY])
        duck = json.loads(out)
        dd.append(duck["seconds"])
        dd_wall.append(wall)
        dd_rss.append(rss)
    for _ in range(max(1, runs // 2)):
        one.append(run([TOKENTOP, "report", "--window", "all", "--threads", "1", events])[0])

    t, d = statistics.median(tt), statistics.median(dd)
    requests = report["summary"]["total_requests"]
    print(f"tokentop report, 2 threads: {t:.3f} s median of {runs} ({requests / t:,.0f} events/s), "
          f"peak RSS {max(tt_rss) / 1024:.0f} MiB")
    print(f"DuckDB query, 2 threads:    {d:.3f} s median of {runs} (process {statistics.median(dd_wall):.3f} s), "
          f"peak RSS {max(dd_rss) / 1024:.0f} MiB")
    print(f"ratio tokentop / DuckDB:    {t / d:.2f}")
    o = statistics.median(one)
    print(f"tokentop report, 1 thread:  {o:.3f} s median of {len(one)} ({requests / o:,.0f} events/s)")
    if requests != duck["requests"]:
        sys.exit(f"the tools disagree: tokentop counted {requests} requests, DuckDB {duck['requests']}")
    p = report["latency"]
    print(f"both counted {requests:,} requests; latency p50/p95/p99: tokentop {p['p50']}/{p['p95']}/{p['p99']}, "
          f"DuckDB {'/'.join(str(x) for x in duck['latency'])}")

    if os.environ.get("JQ", "1") != "0":
        jq = ["jq", "-c", "-n",
              "reduce inputs as $e ({}; .[$e.model] |= {n: ((.n // 0) + 1), "
              "cost: ((.cost // 0) + ($e.cost_usd // 0))})", events]
        wall, rss, _ = run(jq)
        print(f"jq (requests and cost per model, 1 thread): {wall:.1f} s, peak RSS {rss / 1024:.0f} MiB; "
              f"ratio tokentop / jq: {t / wall:.3f}")


if __name__ == "__main__":
    main()
