//! What reading a ClickHouse table costs: the console's refresh of a window (every
//! number on its Overview) and a drill-down into a model, each asked 5 times, for
//! windows ending at the table's latest row. Two times: the client's wall time
//! (queries sent, answers read and merged; queries of a refresh run concurrently)
//! and ClickHouse's own, the sum of the refresh's query durations from
//! `system.query_log` (when the server logs queries: `log_queries` in its profile).
//!
//! Usage: clickhouse_bench clickhouse://HOST:PORT/DB?table=NAME [MODEL]

use std::time::Duration;

use tokentop::clickhouse::{Parts, Store, ViewAsk, layout_named};
use tokentop::ship::{Client, Target};
use tokentop::time::MICROS_PER_SEC;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).expect("give the table's clickhouse:// URL");
    let model = args.get(2).map_or("gpt-4o-mini", String::as_str);
    let target = Target::parse(url, None, None).expect("a clickhouse:// URL");
    let layout = layout_named(target.schema.as_deref()).expect("a schema");
    let store = Store::new(target.clone(), layout).expect("a client");
    let client = Client::new(target).expect("a client");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let extent = rt.block_on(store.extent()).expect("the table answers");
    println!("table: {} rows", extent.rows);
    let drill: tokentop::filter::Filter = format!("model:{model}").parse().unwrap();
    for (label, hours, filter) in [
        ("24h overview", 24, None),
        ("24h drill-down", 24, Some(drill.clone())),
        ("1h overview", 1, None),
        ("1h drill-down", 1, Some(drill)),
    ] {
        let ask = ViewAsk {
            window: hours * 3_600 * MICROS_PER_SEC,
            filter,
            list: false,
            parts: Parts { properties: false, people: false, group_latency: false },
        };
        let mut took: Vec<Duration> = Vec::new();
        let (mut rows, mut rolled) = (0, 0);
        // The query log keeps seconds: a label's queries start in a second of their own.
        std::thread::sleep(Duration::from_millis(1100));
        let since = rt.block_on(client.select("SELECT toUInt32(now())", &[])).expect("the time").trim().to_string();
        for _ in 0..5 {
            let view = rt.block_on(store.view(&ask, extent.last)).expect("an answer");
            took.push(view.window.took);
            rows = view.window.rows;
            rolled = view.window.rolled;
        }
        took.sort();
        println!(
            "{label:>15}: {rows:>9} rows ({rolled} minutes from the rollup), median {:>6.0} ms (min {:.0}, max {:.0}); {}",
            took[2].as_secs_f64() * 1e3,
            took[0].as_secs_f64() * 1e3,
            took[4].as_secs_f64() * 1e3,
            rt.block_on(server_time(&client, &since, 5))
        );
    }
}

/// ClickHouse's own time per refresh: its queries' durations since `since`, summed
/// and divided by `refreshes`; the worst refresh is not told apart (the log keeps
/// no refresh), so the mean and the longest query are given.
async fn server_time(client: &Client, since: &str, refreshes: u32) -> String {
    let _ = client.execute("SYSTEM FLUSH LOGS", Vec::new()).await;
    let sql = format!(
        "SELECT sum(query_duration_ms), max(query_duration_ms), count() FROM system.query_log \
         WHERE event_date >= yesterday() AND event_time >= toDateTime({since}) AND type = 2 \
         AND query LIKE '%FORMAT TabSeparated' AND query NOT LIKE '%query_log%'"
    );
    match client.select(&sql, &[]).await {
        Ok(a) => {
            let f: Vec<&str> = a.trim().split('\t').collect();
            match (f.first().and_then(|s| s.parse::<f64>().ok()), f.get(1), f.get(2)) {
                (Some(sum), Some(max), Some(n)) if sum > 0.0 => format!(
                    "ClickHouse {:.0} ms a refresh ({} queries, longest {max} ms)",
                    sum / f64::from(refreshes),
                    n.parse::<u32>().unwrap_or(0) / refreshes
                ),
                _ => "ClickHouse's time: not logged (set log_queries in its profile)".to_string(),
            }
        }
        Err(e) => format!("ClickHouse's time: cannot read system.query_log ({e})"),
    }
}
