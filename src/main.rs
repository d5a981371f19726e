//! The `tokentop` binary: parses the command line and hands over to one module a
//! command (`cmd/`), which calls the library.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cmd::check::*;
use cmd::console::*;
use cmd::demo::*;
use cmd::export::*;
use cmd::proxy::*;
use cmd::report::*;
use cmd::serve::*;
use cmd::ship::*;

/// Watch LLM API traffic live: requests, cost, latency, errors.
///
/// With no command, opens the console on the given sources (the demo when none is
/// given). Keys: ? for help, q to quit.
#[derive(Parser)]
#[command(name = "tokentop", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    console: ConsoleArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Read inputs to their end and print the metrics of a window.
    ///
    /// The window ends at the latest event time, so a report over a file is the same
    /// every time. Exit status: 0 on success, 1 when an input cannot be read, 2 on a
    /// usage error. Bad lines are counted in `ingest.parse_errors` and the first few are
    /// described on stderr; they never stop the report.
    Report(ReportArgs),
    /// Write the normalised events of any input format as tokentop JSON lines or CSV.
    ///
    /// Events stream through in input order (nothing is held in memory but the CSV
    /// columns), with a progress line on stderr when it is a terminal. CSV has one
    /// column per schema field and one `prop.NAME` column per property key.
    Export(ExportArgs),
    /// Relay the events of sources over WebSocket to any number of consoles.
    ///
    /// Every event gets a `seq` and the relay's `stream` id (new at every start); a
    /// client that reconnects with `?since=SEQ&stream=ID` gets what it missed from a
    /// bounded buffer (or a gap notice; a reset notice when the relay restarted). Set
    /// TOKENTOP_SERVE_TOKEN to require `Authorization: Bearer <token>`. Binds to
    /// 127.0.0.1 unless told otherwise.
    Serve(ServeArgs),
    /// Forward calls to OpenAI-style and Anthropic-style APIs and watch each one.
    ///
    /// Point an SDK's base URL at the proxy (`OPENAI_BASE_URL=http://127.0.0.1:8080/v1`):
    /// requests go to the upstream unchanged, responses (streamed ones too) come back
    /// chunk by chunk as they arrive, and every call is an event with its status,
    /// latency, time to first token, model, tokens, cost and errors. Users, sessions and
    /// properties come from `Helicone-*` or `X-Tokentop-*` headers and the body's `user`.
    /// Opens the console unless --headless; --log FILE keeps every call as JSON lines.
    Proxy(ProxyArgs),
    /// Insert the events of sources into a ClickHouse table, for fleets and history.
    ///
    /// Events are normalised and priced, and inserted in batches (--batch-rows,
    /// --batch-interval). A failed insert is retried with backoff; meanwhile batches
    /// wait in a bounded spool on disk (kept for the next run), and a full spool drops
    /// and counts. The table (`--print-schema`, `--create-table`) is a
    /// ReplacingMergeTree keyed by request id, so a batch delivered twice is one row a
    /// call. The password comes from TOKENTOP_CLICKHOUSE_PASSWORD.
    Ship(ShipArgs),
    /// Evaluate the alert rules of a config file over inputs read to their end.
    ///
    /// Event time is the clock: every rule is evaluated at each bucket boundary across
    /// the inputs' span (so `for` works). Prints `{"firing":[…],"history":[…]}`. Exit
    /// status: 0 when nothing fires at the end, 1 when something does, 2 when the config
    /// cannot be read or parsed or holds no valid rule (invalid rules are reported on
    /// stderr and skipped).
    Check(CheckArgs),
    /// Print realistic synthetic traffic as tokentop JSON lines, in real time.
    ///
    /// With incidents every 10 minutes (a 429 storm, a latency spike, a cost spike).
    /// `--count N --fast` prints N events at once (for piping into `report -`).
    Demo(DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Report(args)) => run_report(args),
        Some(Command::Export(args)) => run_export(args),
        Some(Command::Serve(args)) => run_serve(args),
        Some(Command::Demo(args)) => run_demo(args),
        Some(Command::Check(args)) => run_check(args),
        Some(Command::Proxy(args)) => run_proxy(args),
        Some(Command::Ship(args)) => run_ship(args),
        None => run_console(cli.console),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tokentop: {e:#}");
            ExitCode::from(1)
        }
    }
}
