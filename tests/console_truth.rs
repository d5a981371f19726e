//! The console tells the truth: every number on screen right and complete, every
//! problem visible. Screens are drawn by ratatui's TestBackend at 80×24, 120×40 and
//! 200×60 from seeded synthetic traffic; numbers are checked against what the engine
//! (or a hand count) says.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tokentop::engine::{Clock, Config};
use tokentop::live::Live;
use tokentop::parse::native::write_line;
use tokentop::pricing::PriceTable;
use tokentop::source::{Feed, SourceState, Update};
use tokentop::synth::Synth;
use tokentop::time::MICROS_PER_SEC;
use tokentop::ui::App;
use tokentop::ui::app::{Overlay, View};
use tokentop::ui::render::draw;
use tokentop::ui::theme::{Theme, ThemeName};

const S: i64 = MICROS_PER_SEC;
const HOUR: i64 = 3_600 * S;
const T0: i64 = 1_740_823_200 * S;
const SIZES: [(u16, u16); 3] = [(80, 24), (120, 40), (200, 60)];

fn live(clock: Clock, now: i64) -> Live {
    let config = Config { clock, recent: 20_000, ..Config::default() };
    let mut live = Live::new(vec!["gateway.jsonl".into()], config, PriceTable::builtin(), now);
    live.feed(Feed { source: 0, update: Update::State(SourceState::Following) });
    live
}

/// `n` events of seeded traffic at `rate` per second from `start`, as lines.
fn traffic(seed: u64, start: i64, rate: f64, n: usize) -> Vec<u8> {
    let mut synth = Synth::new(seed, start, rate).with_incidents();
    let mut lines = Vec::new();
    for _ in 0..n {
        write_line(&synth.next_event(), &mut lines);
    }
    lines
}

fn feed(live: &mut Live, lines: Vec<u8>) {
    live.feed(Feed { source: 0, update: Update::Lines(lines) });
}

fn app(live: &Live) -> App {
    let mut app = App::new(tokentop::engine::DEFAULT_WINDOWS.to_vec(), HOUR);
    app.utc = true;
    app.refresh(live, 0.0);
    app
}

fn press(app: &mut App, live: &mut Live, code: KeyCode) -> bool {
    press_with(app, live, code, KeyModifiers::NONE)
}

/// Presses a key as the console does: a changed filter rebuilds the filtered view,
/// and a new snapshot is taken when the app asks for one.
fn press_with(app: &mut App, live: &mut Live, code: KeyCode, mods: KeyModifiers) -> bool {
    let changed = app.key(KeyEvent::new(code, mods));
    if changed {
        live.set_filter(app.filter());
        app.refresh(live, 0.0);
    } else if app.needs_refresh {
        app.refresh(live, 0.0);
    }
    changed
}

fn screen(app: &mut App, w: u16, h: u16, theme: ThemeName) -> String {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| draw(f, app, &Theme::new(theme, true))).unwrap();
    let buf = term.backend().buffer();
    (0..h).map(|y| (0..w).map(|x| buf[(x, y)].symbol().to_string()).collect::<String>()).collect::<Vec<_>>().join("\n")
}

fn mono(app: &mut App, w: u16, h: u16) -> String {
    screen(app, w, h, ThemeName::Mono)
}

/// An hour of traffic at 1,000 requests/s, replayed with event time as the clock.
fn busy_hour() -> Live {
    let mut live = live(Clock::EventTime, 0);
    let mut synth = Synth::new(7, T0, 1_000.0).with_incidents();
    for _ in 0..36 {
        let mut lines = Vec::with_capacity(50 << 20);
        for _ in 0..100_000 {
            write_line(&synth.next_event(), &mut lines);
        }
        feed(&mut live, lines);
    }
    live
}

/// One hour replayed once (it takes a while), for the checks that need it.
#[test]
fn an_hour_at_1000_requests_a_second() {
    let mut live = busy_hour();
    slowest_first_covers_the_whole_window(&mut live);
    a_drill_down_shows_the_numbers_of_the_row_it_came_from_over_the_whole_hour(&mut live);
    a_filter_the_groups_cannot_answer_says_which_span_it_covers(&mut live);
}

fn a_drill_down_shows_the_numbers_of_the_row_it_came_from_over_the_whole_hour(live: &mut Live) {
    live.set_filter(None);
    assert!(live.engine.recent().len() <= 20_000, "the recent requests are a small part of the hour");
    let mut a = app(live);
    press(&mut a, live, KeyCode::Char('2'));
    let rows = a.rows();
    assert!(rows.len() >= 14);
    for (i, row) in rows.iter().enumerate().filter(|(_, r)| !r.is_other()) {
        press(&mut a, live, KeyCode::Char('2'));
        a.selected = i;
        assert!(press(&mut a, live, KeyCode::Enter), "row {i} opens");
        let r = &a.snapshot.as_ref().unwrap().report;
        assert_eq!(Some(r.summary.total_requests as f64), row.values[1], "{}: requests", row.key);
        assert_eq!(r.cost.total == 0.0 && r.cost.unpriced_requests > 0, row.values[3].is_none(), "{}", row.key);
        if let Some(cost) = row.values[3] {
            assert!((r.cost.total - cost).abs() < 1e-6, "{}: cost {} vs {cost}", row.key, r.cost.total);
        }
        assert_eq!(Some(r.errors.error_rate), row.values[9], "{}: error rate", row.key);
        assert_eq!(r.latency.p50, row.values[5], "{}: p50", row.key);
        assert_eq!(r.latency.p95, row.values[6], "{}: p95", row.key);
        assert_eq!(r.latency.p99, row.values[7], "{}: p99", row.key);
        for (w, h) in SIZES {
            let s = mono(&mut a, w, h);
            assert!(s.contains(&format!("model:{}   whole 1h", row.key)), "{w}x{h}: the span is named: {s}");
            assert!(s.contains(&row.cells[1]), "{w}x{h}: {} requests on screen: {s}", row.cells[1]);
        }
        // Esc goes back to the table, on the row it came from.
        assert!(press(&mut a, live, KeyCode::Esc));
        assert_eq!((a.view, a.selected), (View::Models, i));
    }
    // A provider and a property value drill the same way.
    press(&mut a, live, KeyCode::Char('3'));
    let anthropic = a.rows().into_iter().find(|r| r.key == "anthropic").unwrap();
    a.selected = a.rows().iter().position(|r| r.key == "anthropic").unwrap();
    press(&mut a, live, KeyCode::Enter);
    let r = &a.snapshot.as_ref().unwrap().report;
    assert_eq!(Some(r.errors.error_rate), anthropic.values[9], "anthropic's error rate");
    assert_eq!(Some(r.summary.total_requests as f64), anthropic.values[1]);
}

fn a_filter_the_groups_cannot_answer_says_which_span_it_covers(live: &mut Live) {
    live.set_filter(None);
    let mut a = app(live);
    press(&mut a, live, KeyCode::Char('/'));
    for c in "status:5xx".chars() {
        press(&mut a, live, KeyCode::Char(c));
    }
    assert!(press(&mut a, live, KeyCode::Enter));
    for (w, h) in SIZES {
        let s = mono(&mut a, w, h);
        assert!(s.contains("covers since") && s.contains("recent requests replayed"), "{w}x{h}: {s}");
    }
}

#[test]
fn numbers_are_never_cut_to_fit_a_column() {
    let mut live = live(Clock::EventTime, 0);
    // One model with tokens wider than any column, one with a cost in the tens.
    let mut lines = String::new();
    for i in 0..7_380 {
        lines += &format!(
            r#"{{"created_at":{},"model":"claude-sonnet-4-20250514","provider":"anthropic","prompt_tokens":2254,"completion_tokens":0,"cost_usd":0.0087899,"latency_ms":4817}}"#,
            T0 / 1000 + i
        );
        lines.push('\n');
    }
    for i in 0..1_618 {
        lines += &format!(
            r#"{{"created_at":{},"model":"gpt-4o-mini","provider":"openai","prompt_tokens":10,"completion_tokens":5,"latency_ms":100}}"#,
            T0 / 1000 + i
        );
        lines.push('\n');
    }
    feed(&mut live, lines.into_bytes());
    let mut a = app(&live);
    press(&mut a, &mut live, KeyCode::Char('2'));
    for (w, h) in SIZES {
        let s = mono(&mut a, w, h);
        assert!(s.contains("Models ·"), "{s}");
        // 7,380 × 2,254 = 16,634,520 tokens; $64.87 in all.
        assert!(s.contains("16.6M") && s.contains("$64.9") && s.contains("7,380"), "{w}x{h}: {s}");
        let first = s.lines().position(|l| l.contains("claude-sonn")).unwrap_or_else(|| panic!("{w}x{h}: {s}"));
        let second = s.lines().position(|l| l.contains("gpt-4o-mini")).unwrap();
        assert!(first < second, "7,380 sorts above 1,618 at {w}x{h}");
        assert!(!s.contains("1663") && !s.contains("$64.  "), "{w}x{h}: a number was cut: {s}");
    }
    let s = mono(&mut a, 60, 24);
    let name = s.lines().find(|l| l.starts_with("claude-sonnet")).and_then(|l| l.split_whitespace().next());
    assert!(name.is_some_and(|n| n.ends_with('…')), "a name is cut with …: {s}");
    // The Overview tile writes a latency in seconds, not 4817ms.
    press(&mut a, &mut live, KeyCode::Char('1'));
    assert!(mono(&mut a, 80, 24).contains("4.82s"));
}

#[test]
fn rates_divide_by_the_time_watched_and_the_filling_bucket_is_not_a_drop() {
    // Started 100 s ago on the wall clock, 50 requests a second since.
    let now = T0 + 100 * S;
    let mut live = live(Clock::Wall, T0);
    live.tick(now);
    feed(&mut live, traffic(3, T0, 50.0, 5_000));
    let a = app(&live);
    let s = a.snapshot.as_ref().unwrap();
    let n = s.report.summary.total_requests as f64;
    assert!(
        (s.report.summary.requests_per_second - n / 100.0).abs() < 1e-3,
        "{}",
        s.report.summary.requests_per_second
    );
    let last = s.chart.last().unwrap();
    assert!(last.secs < 60.0, "the bucket now filling is partial: {last:?}");
    let rate = last.requests as f64 / last.secs;
    assert!((30.0..80.0).contains(&rate), "drawn at its pace (about 50/s), not as a drop: {rate}");
    assert!(s.chart.iter().all(|p| p.x >= 57.0), "nothing drawn before the start: {:?}", s.chart[0]);
}

fn slowest_first_covers_the_whole_window(live: &mut Live) {
    let mut a = app(live);
    press(&mut a, live, KeyCode::Char('7'));
    press(&mut a, live, KeyCode::Char('l'));
    let list = a.request_list();
    let max = a.snapshot.as_ref().unwrap().report.latency.max.unwrap();
    assert_eq!(list[0].latency_ms, Some(max), "the window's slowest, not the last 2,000 requests'");
    let s = mono(&mut a, 120, 40);
    assert!(s.contains("slowest 50 of the 1h window"), "{s}");
    press(&mut a, live, KeyCode::Char('l'));
    assert!(mono(&mut a, 120, 40).contains("newest 2,000 of 3,600,000 in 1h"));
}

#[test]
fn the_cursor_follows_the_request_not_the_row() {
    let mut live = live(Clock::EventTime, 0);
    feed(&mut live, traffic(5, T0, 20.0, 500));
    let mut a = app(&live);
    press(&mut a, &mut live, KeyCode::Char('7'));
    press(&mut a, &mut live, KeyCode::Down);
    press(&mut a, &mut live, KeyCode::Down);
    let id = a.request_list()[2].request_id.clone();
    assert!(!id.is_empty());
    // More requests arrive: the list moves down under the cursor.
    feed(&mut live, traffic(6, T0 + 30 * S, 20.0, 40));
    a.refresh(&live, 0.0);
    assert_eq!(a.request_list()[a.selected].request_id, id, "still on the same request");
    assert!(a.selected > 2);
    press(&mut a, &mut live, KeyCode::Char('y'));
    assert_eq!(a.copy.take(), Some(id.clone()), "y copies what is highlighted");
    press(&mut a, &mut live, KeyCode::Enter);
    match &a.overlay {
        Some(Overlay::Detail(r)) => assert_eq!(r.request_id, id, "Enter opens what is highlighted"),
        other => panic!("{other:?}"),
    }
    // y in the popup copies its id; q closes the popup, then quits.
    press(&mut a, &mut live, KeyCode::Char('y'));
    assert_eq!(a.copy.take(), Some(id));
    press(&mut a, &mut live, KeyCode::Char('q'));
    assert!(a.overlay.is_none() && !a.quit);
    press(&mut a, &mut live, KeyCode::Char('q'));
    assert!(a.quit);
}

#[test]
fn unpriced_requests_are_visible_and_exports_hold_numbers() {
    let mut live = live(Clock::EventTime, 0);
    let mut lines = String::new();
    for i in 0..10 {
        // A model tokentop has no price for, and a priced one.
        lines += &format!(
            r#"{{"created_at":{},"model":"claude-3-7-sonnet-20250219","provider":"anthropic","prompt_tokens":100,"completion_tokens":10}}"#,
            T0 / 1000 + i
        );
        lines += "\n";
        lines += &format!(
            r#"{{"created_at":{},"model":"gpt-4o","provider":"openai","cost_usd":0.0123456,"status":{}}}"#,
            T0 / 1000 + i,
            if i == 0 { 500 } else { 200 }
        );
        lines += "\n";
    }
    feed(&mut live, lines.into_bytes());
    let mut a = app(&live);
    for (w, h) in SIZES {
        assert!(mono(&mut a, w, h).contains("Cost 10 unpriced"), "{w}x{h}");
    }
    press(&mut a, &mut live, KeyCode::Char('2'));
    for (w, h) in SIZES {
        let s = mono(&mut a, w, h);
        let row = s.lines().find(|l| l.contains("claude-3-7")).unwrap();
        assert!(row.contains("unpriced") && !row.contains("$0"), "{w}x{h}: {row}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = a.export(dir.path()).unwrap();
    let csv = std::fs::read_to_string(path).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "NAME,REQS,SHARE,COST,COST/REQ,P50,P95,P99,TTFT,ERR%,429%,CACHE%,TOKENS,UNPRICED"
    );
    let claude = csv.lines().find(|l| l.starts_with("claude")).unwrap();
    let cells: Vec<&str> = claude.split(',').collect();
    assert_eq!((cells[1], cells[3], cells[13]), ("10", "", "10"), "no cost, not $0: {claude}");
    let gpt: Vec<&str> = csv.lines().find(|l| l.starts_with("gpt-4o")).unwrap().split(',').collect();
    assert!((gpt[3].parse::<f64>().unwrap() - 0.123456).abs() < 1e-9, "raw numbers: {gpt:?}");
    assert_eq!(gpt[9], "10", "an error rate as a number: {gpt:?}");
    assert!(!csv.contains('$') && !csv.contains('%') || csv.lines().skip(1).all(|l| !l.contains('$')));
}

#[test]
fn pause_freezes_the_picture_not_the_status_bar() {
    let mut live = live(Clock::EventTime, 0);
    feed(&mut live, traffic(8, T0, 20.0, 1_000));
    let mut a = app(&live);
    press(&mut a, &mut live, KeyCode::Char(' '));
    let before = a.snapshot.as_ref().unwrap().report.summary.total_requests;
    feed(&mut live, traffic(9, T0 + 60 * S, 20.0, 500));
    a.refresh(&live, 123.0);
    assert_eq!(a.snapshot.as_ref().unwrap().report.summary.total_requests, before, "the picture stays");
    for (w, h) in SIZES {
        let s = mono(&mut a, w, h);
        let status = s.lines().last().unwrap();
        assert!(status.contains("123 ev/s") && status.contains("PAUSED +500"), "{w}x{h}: {status}");
    }
    // A new window while paused applies on resume, and says so.
    press(&mut a, &mut live, KeyCode::Char(']'));
    assert!(mono(&mut a, 120, 40).contains("window 1h → 6h on resume"));
    assert_eq!(a.snapshot.as_ref().unwrap().window, HOUR);
    press(&mut a, &mut live, KeyCode::Char(' '));
    assert_eq!(a.snapshot.as_ref().unwrap().window, 6 * HOUR);
    assert_eq!(a.snapshot.as_ref().unwrap().report.summary.total_requests, before + 500);
}

#[test]
fn sources_explain_their_problems() {
    let mut live = live(Clock::EventTime, 0);
    let mut lines = traffic(1, T0, 10.0, 20);
    lines.extend_from_slice(b"{\"created_at\": \"yesterday\"}\nnot json at all\n");
    feed(&mut live, lines);
    live.feed(Feed {
        source: 0,
        update: Update::State(SourceState::Reconnecting {
            in_ms: 10_000,
            attempt: 2,
            error: "401 Unauthorized: set TOKENTOP_WS_TOKEN or --header; a long explanation that the narrow status bar has no room for".into(),
        }),
    });
    let mut a = app(&live);
    let s = mono(&mut a, 200, 60);
    let status = s.lines().last().unwrap();
    assert!(
        status.contains("reconnecting in 10s")
            && status.contains(": 401 Unauthorized: set TOKENTOP_WS_TOKEN or --header"),
        "{status}"
    );
    let narrow = mono(&mut a, 80, 24);
    let status = narrow.lines().last().unwrap();
    assert!(status.contains("retry 10s") && status.contains(": 401 Unauth") && status.contains('…'), "{status}");
    // The sources panel: state, counts, the problem whole, and the bad lines with why.
    press(&mut a, &mut live, KeyCode::Char('o'));
    for (w, h) in SIZES {
        let s = mono(&mut a, w, h);
        assert!(s.contains("2 bad lines") && s.contains("20 events"), "{w}x{h}: {s}");
        assert!(s.contains("not json at all") && s.contains("yesterday"), "{w}x{h}: the bad lines: {s}");
        assert!(s.contains("no room for"), "{w}x{h}: the problem whole: {s}");
    }
    press(&mut a, &mut live, KeyCode::Esc);
    assert!(a.overlay.is_none());
    // The countdown counts down.
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    a.refresh(&live, 0.0);
    assert!(mono(&mut a, 200, 60).lines().last().unwrap().contains("reconnecting in 9s"));
    press(&mut a, &mut live, KeyCode::Char('o'));
    assert!(mono(&mut a, 120, 40).contains("reconnecting in 9s"), "the panel counts down too");
}

#[test]
fn alerts_say_which_level_was_crossed_in_the_metrics_unit() {
    let rules = tokentop::alert::parse_rules_str(
        r#"
        [[alerts]]
        name = "rate-limit"
        metric = "rate_429"
        op = ">"
        threshold = 10
        warning = 2
        window = "5m"
        min_requests = 20
        group_by = "provider"
        severity = "warning"
        [[alerts]]
        name = "slow"
        metric = "latency_p95"
        op = ">"
        threshold = 100
        window = "5m"
        [[alerts]]
        name = "spend"
        metric = "total_cost"
        op = ">"
        threshold = 0.01
        window = "5m"
        "#,
    )
    .unwrap()
    .0;
    let mut live = live(Clock::EventTime, 0);
    live.watch(rules);
    // 100 anthropic requests, 5 of them 429s: 5% crosses the warning level (2), not 10.
    let mut lines = String::new();
    for i in 0..100 {
        let status = if i % 20 == 0 { 429 } else { 200 };
        lines += &format!(
            r#"{{"created_at":{},"model":"claude-sonnet-4-5","provider":"anthropic","status":{status},"latency_ms":1500,"cost_usd":0.001}}"#,
            T0 / 1000 + i * 100
        );
        lines += "\n";
    }
    feed(&mut live, lines.into_bytes());
    live.tick(T0 + 30 * S);
    live.evaluate_alerts();
    let mut a = app(&live);
    let s = mono(&mut a, 200, 60);
    let banner = s.lines().next().unwrap();
    assert!(banner.contains("3 firing"), "{banner}");
    assert!(banner.contains("WARNING rate-limit [anthropic] 5.0% > 2.0% (warning level; threshold 10.0%)"), "{banner}");
    assert!(banner.contains("slow 1.50s > 100ms") && banner.contains("spend $0.100 > $0.0100"), "{banner}");
    // Narrower: what does not fit is counted, not cut.
    let narrow = mono(&mut a, 120, 40);
    assert!(narrow.lines().next().unwrap().contains("more (8 Alerts)"), "{narrow}");
}

#[test]
fn the_hint_bar_keeps_help_and_quit_and_charts_have_legends_at_80x24() {
    let mut live = live(Clock::EventTime, 0);
    feed(&mut live, traffic(2, T0, 20.0, 2_000));
    let mut a = app(&live);
    for view in 0..8u8 {
        press(&mut a, &mut live, KeyCode::Char(char::from(b'1' + view)));
        let s = mono(&mut a, 80, 24);
        let hints = s.lines().nth(22).unwrap();
        assert!(hints.contains("? help") && hints.contains("q quit"), "view {view}: {hints}");
    }
    press(&mut a, &mut live, KeyCode::Char('1'));
    let s = screen(&mut a, 80, 24, ThemeName::Dark);
    assert!(s.contains("p50") && s.contains("p95") && s.contains("p99") && s.contains("5xx") && s.contains("429"));
}

#[test]
fn keys_work_like_k9s() {
    let mut live = live(Clock::EventTime, 0);
    feed(&mut live, traffic(4, T0, 20.0, 2_000));
    let mut a = app(&live);
    // Ctrl-C quits from a prompt and from a popup.
    press(&mut a, &mut live, KeyCode::Char(':'));
    press_with(&mut a, &mut live, KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert!(a.quit);
    let mut a = app(&live);
    press(&mut a, &mut live, KeyCode::Char('?'));
    press_with(&mut a, &mut live, KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert!(a.quit);
    // q closes help, then quits.
    let mut a = app(&live);
    press(&mut a, &mut live, KeyCode::Char('?'));
    press(&mut a, &mut live, KeyCode::Char('q'));
    assert!(a.overlay.is_none() && !a.quit);
    // Esc after Models → Enter comes back to Models, on the same row.
    press(&mut a, &mut live, KeyCode::Char('2'));
    for _ in 0..3 {
        press(&mut a, &mut live, KeyCode::Down);
    }
    let key = a.rows()[3].key.clone();
    press(&mut a, &mut live, KeyCode::Enter);
    assert_eq!(a.view, View::Overview);
    press(&mut a, &mut live, KeyCode::Esc);
    assert_eq!((a.view, a.selected, a.rows()[a.selected].key.clone()), (View::Models, 3, key));
    // Tab lists the candidates when there are several.
    press(&mut a, &mut live, KeyCode::Char(':'));
    for c in "model gpt".chars() {
        press(&mut a, &mut live, KeyCode::Char(c));
    }
    press(&mut a, &mut live, KeyCode::Tab);
    let p = a.prompt.clone().unwrap();
    assert_eq!(p.text, "model gpt-4");
    assert!(p.candidates.contains(&"gpt-4o".to_string()) && p.candidates.contains(&"gpt-4.1".to_string()), "{p:?}");
    assert!(mono(&mut a, 120, 40).contains("gpt-4.1  gpt-4o"));
    press(&mut a, &mut live, KeyCode::Esc);
    // :window takes a kept length as given, and says which are kept otherwise.
    press(&mut a, &mut live, KeyCode::Char(':'));
    for c in "window 2h".chars() {
        press(&mut a, &mut live, KeyCode::Char(c));
    }
    press(&mut a, &mut live, KeyCode::Enter);
    assert!(a.prompt.as_ref().unwrap().error.as_ref().unwrap().contains("start with --window 2h"));
    let mut b = App::new(vec![HOUR, 2 * HOUR, 6 * HOUR], 2 * HOUR);
    assert_eq!(b.window(), 2 * HOUR, "a window given at start is kept as given");
    b.refresh(&live, 0.0);
    assert!(mono(&mut b, 80, 24).contains("window 2h"));
}

#[test]
fn smaller_things() {
    let mut live = live(Clock::EventTime, 0);
    feed(&mut live, traffic(4, T0, 50.0, 20_000));
    let mut a = app(&live);
    // Users: (other) last, and how many are listed of how many.
    press(&mut a, &mut live, KeyCode::Char('4'));
    let rows = a.rows();
    assert!(rows.iter().take(rows.len() - 1).all(|r| !r.is_other()));
    let s = mono(&mut a, 120, 40);
    assert!(s.contains("500 of 4,"), "{s}");
    // Sessions: busiest first under REQS▼; each session is one user's.
    press(&mut a, &mut live, KeyCode::Char('5'));
    let s = mono(&mut a, 120, 40);
    assert!(s.contains("REQS▼"), "{s}");
    let reqs: Vec<f64> = a.rows().iter().map(|r| r.values[3].unwrap()).collect();
    assert!(reqs.windows(2).all(|w| w[0] >= w[1]));
    let mut synth = Synth::new(4, T0, 50.0).with_incidents();
    let mut owner = std::collections::HashMap::new();
    for _ in 0..50_000 {
        let e = synth.next_event();
        let user = e.user().unwrap().to_string();
        let first = owner.entry(e.session().unwrap().to_string()).or_insert_with(|| user.clone());
        assert_eq!(*first, user, "a demo session spans one user");
    }
}

#[test]
fn the_light_theme_dims_with_a_colour_that_reads_on_white() {
    use ratatui::style::Color;
    let t = Theme::new(ThemeName::Light, true);
    assert_eq!(t.dim().fg, Some(Color::DarkGray));
    assert_ne!(t.dim().fg, Some(Color::Gray));
}
