//! What reading a ClickHouse table costs: the console's refresh of a window (every
//! number on its Overview) and a drill-down into a model, each asked 5 times, for
//! windows ending at the table's latest row; the
//! time is the client's (queries sent, answers read and merged), so ClickHouse's
//! own time is at most that.
//!
//! Usage: clickhouse_bench clickhouse://HOST:PORT/DB?table=NAME [MODEL]

use std::time::Duration;

use tokentop::clickhouse::{Parts, Store, ViewAsk, layout_named};
use tokentop::ship::Target;
use tokentop::time::MICROS_PER_SEC;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).expect("give the table's clickhouse:// URL");
    let model = args.get(2).map_or("gpt-4o-mini", String::as_str);
    let target = Target::parse(url, None, None).expect("a clickhouse:// URL");
    let layout = layout_named(target.schema.as_deref()).expect("a schema");
    let store = Store::new(target, layout).expect("a client");
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
        for _ in 0..5 {
            let view = rt.block_on(store.view(&ask, extent.last)).expect("an answer");
            took.push(view.window.took);
            rows = view.window.rows;
            rolled = view.window.rolled;
        }
        took.sort();
        println!(
            "{label:>15}: {rows:>9} rows ({rolled} minutes from the rollup), median {:>6.0} ms (min {:.0}, max {:.0})",
            took[2].as_secs_f64() * 1e3,
            took[0].as_secs_f64() * 1e3,
            took[4].as_secs_f64() * 1e3
        );
    }
}
