//! End-to-end: the real binary in a pseudo-terminal, fed a file; keys pressed; the
//! screen read through a terminal emulator; the terminal restored on quit.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, PtySize, native_pty_system};

mod common;

struct Console {
    screen: Arc<Mutex<vt100::Parser>>,
    raw: Arc<Mutex<Vec<u8>>>,
    writer: Box<dyn Write + Send>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
}

impl Console {
    fn start(args: &[&str]) -> Console {
        Console::start_with(env!("CARGO_BIN_EXE_tokentop"), args)
    }

    /// Runs `sh -c SCRIPT` in the terminal (to give the console another standard input).
    fn shell(script: &str) -> Console {
        Console::start_with("sh", &["-c", script])
    }

    fn start_with(program: &str, args: &[&str]) -> Console {
        Console::start_env(program, args, &[])
    }

    fn start_env(program: &str, args: &[&str], env: &[(&str, &str)]) -> Console {
        let pty = native_pty_system()
            .openpty(PtySize { rows: 30, cols: 110, pixel_width: 0, pixel_height: 0 })
            .expect("a pseudo-terminal");
        let mut cmd = CommandBuilder::new(program);
        cmd.args(args);
        cmd.env("TERM", "xterm-256color");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = pty.slave.spawn_command(cmd).unwrap();
        drop(pty.slave);
        let screen = Arc::new(Mutex::new(vt100::Parser::new(
            std::num::NonZero::new(30).unwrap(),
            std::num::NonZero::new(110).unwrap(),
            0,
        )));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let mut reader = pty.master.try_clone_reader().unwrap();
        let (s, r) = (screen.clone(), raw.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                s.lock().unwrap().process(&buf[..n]);
                r.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let writer = pty.master.take_writer().unwrap();
        // Keep the master open for the child's lifetime.
        std::mem::forget(pty.master);
        Console { screen, raw, writer, child }
    }

    fn contents(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    fn wait_for(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.contents().contains(text) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("`{text}` never appeared; the screen:\n{}", self.contents());
    }

    fn wait_until(&self, what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "{what} never happened; the screen:\n{}", self.contents());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn quit(&mut self) {
        self.press("q");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "tokentop did not quit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn press(&mut self, keys: &str) {
        self.writer.write_all(keys.as_bytes()).unwrap();
        self.writer.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_console_whose_sources_all_ended_shows_what_it_read_and_quits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let lines: String = (0..250u64)
        .map(|i| format!("{{\"created_at\":{},\"model\":\"tt-one\"}}\n", 1_740_823_200_000u64 + i * 1000))
        .collect();
    std::fs::write(&path, lines).unwrap();
    // Standard input is the file; keys come from the terminal.
    let bin = env!("CARGO_BIN_EXE_tokentop");
    let mut c = Console::shell(&format!("'{bin}' --clock event --utc - < '{}'", path.display()));
    c.wait_for("250");
    c.wait_for("all sources ended");
    c.wait_for("stdin at end");
    c.quit();

    // A directory as the only source: the reason is on screen, and q still quits.
    let mut c = Console::start(&["--clock", "event", dir.path().to_str().unwrap()]);
    c.wait_for("is a directory");
    c.quit();
    // So does Ctrl-C.
    let mut c = Console::start(&["--clock", "event", dir.path().to_str().unwrap()]);
    c.wait_for("is a directory");
    c.press("\x03");
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "Ctrl-C did not quit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn drive_the_console_with_keys_and_quit_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.jsonl");
    let mut lines = String::new();
    for i in 0..300u64 {
        let model = ["tt-alpha", "tt-beta"][(i % 2) as usize];
        let status = if i % 10 == 0 { 503 } else { 200 };
        lines.push_str(&format!(
            "{{\"created_at\":{},\"model\":\"{model}\",\"provider\":\"openai\",\"status\":{status},\"latency_ms\":{},\"user_id\":\"u-{}\"}}\n",
            1_740_823_200_000u64 + i * 1000,
            100 + i,
            i % 7
        ));
    }
    std::fs::write(&path, lines).unwrap();
    let mut c = Console::start(&["--clock", "event", "--utc", path.to_str().unwrap()]);

    c.wait_for("Requests");
    c.wait_for("300");
    c.press("2");
    c.wait_for("REQS");
    c.wait_for("tt-alpha");
    // Drill into the first model, then look at its requests.
    c.press("\r");
    c.wait_for("All › model:tt-");
    c.press("7");
    c.wait_for("newest first");
    // A filter typed by hand.
    c.press("\x1b");
    std::thread::sleep(Duration::from_millis(200));
    c.press("/status:5xx\r");
    c.wait_for("status:5xx");
    c.press("q");

    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = c.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "tokentop did not quit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    std::thread::sleep(Duration::from_millis(200));
    let raw = c.raw.lock().unwrap().clone();
    let tail = String::from_utf8_lossy(&raw[raw.len().saturating_sub(200)..]).into_owned();
    assert!(tail.contains("\x1b[?1049l"), "left the alternate screen: {tail:?}");
    assert!(tail.contains("\x1b[?25h"), "cursor shown again: {tail:?}");
    assert!(!c.screen.lock().unwrap().screen().alternate_screen(), "back on the main screen");
}

/// Fifteen minutes ago, in ms: notifications are sent for what happened in the last ten.
fn recent_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64 - 15 * 60_000
}

/// One request a second from minute `from` to `to` after `base` (ms); anthropic's fail
/// in the minutes `bad`.
fn traffic(base: u64, from: u64, to: u64, bad: std::ops::Range<u64>) -> String {
    let mut s = String::new();
    for sec in from * 60..to * 60 {
        let provider = if sec % 2 == 0 { "openai" } else { "anthropic" };
        let status = if provider == "anthropic" && bad.contains(&(sec / 60)) { 503 } else { 200 };
        s.push_str(&format!(
            "{{\"created_at\":{},\"provider\":\"{provider}\",\"model\":\"m\",\"status\":{status},\"latency_ms\":120}}\n",
            base + sec * 1000 + 1
        ));
    }
    s
}

fn config(dir: &std::path::Path, url: &str, webhook: &str) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    let text = format!(
        r#"bell = true

[[alerts]]
name = "provider-errors"
metric = "error_rate"
threshold = 20
window = "1m"
group_by = "provider"
min_requests = 10

[[alerts]]
name = "typo"
metric = "latency_p59"
threshold = 1

[[webhooks]]
url = "{url}"
{webhook}
"#
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The console with the alert config, replaying (and following) ten minutes of traffic
/// from `base` in which anthropic fails from minute 6. Keep the directory alive.
fn alerting_console(url: &str, webhook: &str, base: u64) -> (Console, tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), url, webhook);
    let log = dir.path().join("gateway.jsonl");
    std::fs::write(&log, traffic(base, 0, 10, 6..10)).unwrap();
    let c = Console::start(&["--config", cfg.to_str().unwrap(), "--clock", "event", "--utc", log.to_str().unwrap()]);
    (c, dir, log)
}

fn append(path: &std::path::Path, text: &str) {
    std::fs::OpenOptions::new().append(true).open(path).unwrap().write_all(text.as_bytes()).unwrap();
}

fn bodies(seen: &common::Received) -> Vec<serde_json::Value> {
    seen.lock().unwrap().iter().map(|(_, b)| serde_json::from_slice(b).unwrap()).collect()
}

#[test]
fn alerts_fire_and_resolve_live_with_banner_bell_and_webhooks() {
    let (url, seen) = common::receiver(0, false);
    let base = recent_ms();
    let (mut c, _dir, log) = alerting_console(&url, "", base);

    c.wait_for("1 invalid alert rule skipped");
    c.wait_for("1 firing: CRITICAL provider-errors [anthropic]");
    c.wait_until("the firing webhook", || bodies(&seen).len() == 1);
    let fired = &bodies(&seen)[0];
    assert_eq!((fired["state"].as_str(), fired["group"].as_str()), (Some("firing"), Some("anthropic")), "{fired}");
    let value = fired["value"].as_f64().unwrap();
    assert!(value > 20.0 && value <= 100.0, "fired as it crossed the threshold: {fired}");
    assert!(c.raw.lock().unwrap().contains(&0x07), "the bell rang");

    // Healthy traffic follows: the alert resolves, on screen and to the webhook.
    append(&log, &traffic(base, 10, 13, 0..0));
    c.wait_until("the resolved webhook", || bodies(&seen).len() == 2);
    assert_eq!(bodies(&seen)[1]["state"], "resolved");
    c.press("8");
    c.wait_for("history");
    c.wait_for("skipped alert rule `typo`: unknown metric `latency_p59`");
    c.wait_for(&format!("{} sent 2", url.split('/').take(3).collect::<Vec<_>>().join("/")));
    assert!(!c.contents().contains("FIRING"), "{}", c.contents());
    c.quit();
}

#[test]
fn a_dead_webhook_never_holds_up_the_console() {
    // An endpoint that accepts and never answers.
    let (url, seen) = common::receiver(0, true);
    let base = recent_ms();
    let (mut c, _dir, log) = alerting_console(&url, "retries = 1\ntimeout = \"1s\"", base);
    c.wait_for("1 firing");
    c.wait_until("a try", || !seen.lock().unwrap().is_empty());
    // While the webhook hangs, new events keep coming in and keys keep working.
    append(&log, &traffic(base, 10, 11, 0..0));
    c.press("8");
    c.wait_for("Alerts ·");
    // The firing and, once the new traffic resolves it, the resolve notice fail alike.
    c.wait_until("a failed delivery", || {
        let s = c.contents();
        s.contains("failed 1 (no answer within 1s)") || s.contains("failed 2 (no answer within 1s)")
    });
    c.press("1");
    c.wait_for("660");
    c.quit();
}

#[test]
fn a_replayed_old_log_shows_alerts_but_pages_no_one() {
    let (url, seen) = common::receiver(0, false);
    // A week ago.
    let (mut c, _dir, _) = alerting_console(&url, "", recent_ms() - 7 * 86_400_000);
    c.wait_for("1 firing: CRITICAL provider-errors [anthropic]");
    c.press("8");
    c.wait_for("1 not sent (over 10 min old: a replay)");
    assert!(seen.lock().unwrap().is_empty(), "nothing was sent");
    assert!(!c.raw.lock().unwrap().contains(&0x07), "no bell");
    c.quit();
}

#[test]
fn the_demo_starts_with_a_full_window_changes_and_an_alert() {
    // No config file: the demo brings its own rules.
    let home = tempfile::tempdir().unwrap();
    let h = home.path().to_str().unwrap();
    let mut c = Console::start_env(env!("CARGO_BIN_EXE_tokentop"), &[], &[("HOME", h), ("NO_COLOR", "1")]);
    c.wait_for("Requests");
    let first = c.contents();
    // The first frame: a whole hour at 50 requests/s (about 180k), compared with the
    // hour before, and the 429 storm under way on anthropic.
    let requests = first.lines().skip_while(|l| !l.starts_with("Requests")).nth(1).unwrap_or_default().to_string();
    let rate: f64 = requests.split_whitespace().nth(2).and_then(|r| r.parse().ok()).unwrap_or(0.0);
    assert!((45.0..56.0).contains(&rate), "50 requests/s over the hour: {requests}\n{first}");
    assert!(requests.contains('k') && (requests.contains('▲') || requests.contains('▼')), "{requests}");
    assert!(first.contains("firing"), "{first}");
    assert!(first.contains("demo following"), "{first}");
    c.press("8");
    c.wait_for("rate-limit");
    assert!(c.contents().contains("anthropic"), "the 429 storm: {}", c.contents());
    c.quit();
}

#[test]
fn a_relay_that_refuses_says_why_on_the_status_bar() {
    let url = format!("ws://{}/events", common::answering("401 Unauthorized", ""));
    let mut c = Console::start(&[&url]);
    c.wait_for("401 Unauthorized: set TOKENTOP_WS_TOKEN or --header");
    c.wait_for("retry ");
    c.press("o");
    c.wait_for("sources · Esc close");
    c.press("\x1b");
    c.quit();
}

#[test]
fn a_window_given_at_start_is_kept_as_given_and_a_missing_config_is_said_once() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path().to_str().unwrap();
    let bin = env!("CARGO_BIN_EXE_tokentop");
    let mut c = Console::start_env(bin, &["--window", "2h", "--demo-history", "0"], &[("HOME", h)]);
    c.wait_for("window 2h");
    c.quit();
    let c = Console::start_env(bin, &["--config", "/nonexistent/tokentop.toml"], &[("HOME", h)]);
    c.wait_for("cannot read the config file");
    std::thread::sleep(Duration::from_millis(300));
    let out = String::from_utf8_lossy(&c.raw.lock().unwrap()).to_string();
    assert_eq!(out.matches("No such file").count(), 1, "{out}");
}

/// The console on a ClickHouse table holding a day of calls: the numbers come from
/// the server (the whole day, not a replay), a drill-down into a model is a query
/// over the whole day, the request list holds stored requests, and a server that
/// goes away shows in the status bar while the keys keep working.
#[test]
fn the_console_reads_a_day_of_calls_from_clickhouse_and_drills_into_a_model() {
    let dir = tempfile::tempdir().unwrap();
    // 12,000 calls spread over the last 22 hours (0.15 a second, ending now).
    let (ch, server, _) = common::clickhouse::a_day_shipped(dir.path());
    let url = ch.url("calls");
    let top: String =
        ch.query("SELECT model FROM default.calls GROUP BY model ORDER BY count() DESC, model LIMIT 1").unwrap();
    let top_count = ch.number(&format!("SELECT count() FROM default.calls WHERE model = '{top}'")) as u64;

    let mut c = Console::start(&["--window", "24h", "--utc", &url]);
    c.wait_for("clickhouse default.calls");
    c.wait_for("answered in");
    c.wait_for(&tokentop::ui::format::count(12_000));
    // Models by requests: the top one first; Enter drills into it.
    c.press("2");
    c.wait_for(&top);
    c.press("\r");
    c.wait_for(&format!("All › model:{top}"));
    c.wait_for("whole 1d");
    c.press("1");
    c.wait_until("the model's requests over the whole day", || {
        c.contents().contains(&tokentop::ui::format::count(top_count))
    });
    // The request list: stored requests of that model, newest first.
    c.press("7");
    c.wait_for(&format!("newest 2,000 of {} in 1d", tokentop::ui::format::count(top_count)));
    c.wait_until("rows of the model listed", || c.contents().matches(top.as_str()).count() >= 10);
    // ClickHouse goes away: the status bar says so, keys still answer.
    drop(server);
    c.wait_for("cannot read (retrying)");
    c.press("1");
    c.wait_for("Requests");
    c.quit();
}
