//! The console's screens, drawn by ratatui's TestBackend from deterministic data
//! (seeded synthetic traffic, replayed with the event-time clock), and its keys.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tokentop::engine::{Clock, Config};
use tokentop::live::Live;
use tokentop::parse::native::write_line;
use tokentop::pricing::PriceTable;
use tokentop::source::{Feed, Update};
use tokentop::synth::Synth;
use tokentop::time::MICROS_PER_SEC;
use tokentop::ui::App;
use tokentop::ui::app::View;
use tokentop::ui::render::draw;
use tokentop::ui::theme::{Theme, ThemeName};

const HOUR: i64 = 3_600 * MICROS_PER_SEC;

fn live_with_traffic() -> Live {
    let config = Config { clock: Clock::EventTime, ..Config::default() };
    let mut live = Live::new(vec!["gateway.jsonl".into()], config, PriceTable::builtin(), 0);
    let mut synth = Synth::new(42, 1_740_823_200_000_000, 5.0).with_incidents();
    let mut lines = Vec::new();
    for _ in 0..4_000 {
        write_line(&synth.next_event(), &mut lines);
    }
    live.feed(Feed { source: 0, update: Update::State(tokentop::source::SourceState::Following) });
    live.feed(Feed { source: 0, update: Update::Lines(lines) });
    live
}

fn app(live: &Live) -> App {
    let mut app = App::new(tokentop::engine::DEFAULT_WINDOWS.to_vec(), HOUR);
    app.utc = true;
    app.refresh(live, 0.0);
    app
}

/// Presses a key; takes a new snapshot when the app asks for one, as the console does.
fn key_with(app: &mut App, live: &Live, code: KeyCode) -> bool {
    let changed = app.key(KeyEvent::new(code, KeyModifiers::NONE));
    if app.needs_refresh {
        app.refresh(live, 0.0);
    }
    changed
}

fn key(app: &mut App, code: KeyCode) -> bool {
    app.key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn screen(app: &mut App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    let theme = Theme::new(ThemeName::Mono, true);
    term.draw(|f| draw(f, app, &theme)).unwrap();
    term
}

fn text(term: &Terminal<TestBackend>) -> String {
    let buf = term.backend().buffer();
    (0..buf.area.height)
        .map(|y| (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_view_at_both_sizes() {
    let live = live_with_traffic();
    for (w, h) in [(80, 24), (160, 48)] {
        for (i, view) in View::ALL.iter().enumerate() {
            let mut app = app(&live);
            key_with(&mut app, &live, KeyCode::Char(char::from(b'1' + i as u8)));
            assert_eq!(app.view, *view);
            let term = screen(&mut app, w, h);
            insta::assert_snapshot!(format!("{}_{w}x{h}", view.title().to_lowercase()), term.backend());
        }
    }
}

#[test]
fn overlays_and_drill_down() {
    let live = live_with_traffic();
    let mut a = app(&live);
    key(&mut a, KeyCode::Char('?'));
    insta::assert_snapshot!("help_100x30", screen(&mut a, 100, 30).backend());

    let mut a = app(&live);
    key_with(&mut a, &live, KeyCode::Char('7'));
    key(&mut a, KeyCode::Enter);
    assert!(matches!(a.overlay, Some(tokentop::ui::app::Overlay::Detail(_))));
    insta::assert_snapshot!("request_detail_100x30", screen(&mut a, 100, 30).backend());

    // Enter on the top model narrows everything to it, Esc goes back.
    let mut live = live_with_traffic();
    let mut a = app(&live);
    key(&mut a, KeyCode::Char('2'));
    let row = a.rows()[0].clone();
    let top = row.key.clone();
    assert!(key(&mut a, KeyCode::Enter), "drilling down changes the filter");
    assert_eq!(a.path, [format!("model:{top}")]);
    assert_eq!(a.view, View::Overview);
    live.set_filter(a.filter());
    a.refresh(&live, 0.0);
    let s = text(&screen(&mut a, 120, 40));
    assert!(s.contains(&format!("All › model:{top}   whole 1h")), "{s}");
    assert!(s.contains(" status ") && s.contains("latency") && s.contains("250ms–500ms"), "the detail panels: {s}");
    let r = &a.snapshot.as_ref().unwrap().report;
    assert_eq!(Some(r.summary.total_requests as f64), row.values[1], "the row's requests");
    assert_eq!(Some(r.cost.total), row.values[3], "the row's cost");
    assert_eq!(r.latency.p95, row.values[6], "the row's p95");
    assert!(key(&mut a, KeyCode::Esc));
    assert!(a.path.is_empty());
    assert_eq!((a.view, a.selected), (View::Models, 0), "back where Enter was pressed");
}

#[test]
fn small_terminals_never_panic() {
    let live = live_with_traffic();
    for (w, h) in [(20, 5), (40, 10), (59, 14), (60, 15), (61, 16), (80, 24)] {
        for view in 0..8u8 {
            let mut a = app(&live);
            key_with(&mut a, &live, KeyCode::Char(char::from(b'1' + view)));
            let s = text(&screen(&mut a, w, h));
            if w < 60 || h < 15 {
                assert!(s.contains("terminal too small"), "{w}x{h}: {s}");
            }
        }
    }
}

#[test]
fn keys_change_the_state() {
    let live = live_with_traffic();
    let mut a = app(&live);
    key(&mut a, KeyCode::Tab);
    assert_eq!(a.view, View::Models);
    a.key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT));
    a.key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT));
    assert_eq!(a.view, View::Alerts);
    // Window zoom: 1h → 15m → 1h → 6h; clamped at the ends.
    key(&mut a, KeyCode::Char('['));
    assert_eq!(a.window(), 900 * MICROS_PER_SEC);
    key(&mut a, KeyCode::Char(']'));
    key(&mut a, KeyCode::Char('+'));
    assert_eq!(a.window(), 6 * HOUR);
    for _ in 0..10 {
        key(&mut a, KeyCode::Char(']'));
    }
    assert_eq!(a.window(), 7 * 24 * HOUR);
    // Moving in a table.
    key(&mut a, KeyCode::Char('2'));
    key(&mut a, KeyCode::Down);
    key(&mut a, KeyCode::Char('j'));
    assert_eq!(a.selected, 2);
    key(&mut a, KeyCode::End);
    assert_eq!(a.selected, a.rows().len() - 1);
    key(&mut a, KeyCode::Home);
    assert_eq!(a.selected, 0);
    // Sorting: by requests descending first; S reverses; s moves to the next column.
    let reqs: Vec<f64> = a.rows().iter().map(|r| r.values[1].unwrap()).collect();
    assert!(reqs.windows(2).all(|w| w[0] >= w[1]));
    a.key(KeyEvent::new(KeyCode::Char('S'), KeyModifiers::SHIFT));
    let reqs: Vec<f64> = a.rows().iter().map(|r| r.values[1].unwrap()).collect();
    assert!(reqs.windows(2).all(|w| w[0] <= w[1]));
    key(&mut a, KeyCode::Char('s'));
    assert_eq!(a.sort[1].0, 2);
    // Pause freezes the snapshot.
    key(&mut a, KeyCode::Char(' '));
    assert!(a.paused.is_some());
    key(&mut a, KeyCode::Char(' '));
    assert!(a.paused.is_none());
    // A bad filter shows why and keeps the old one.
    key(&mut a, KeyCode::Char('/'));
    for c in "latency>>5".chars() {
        key(&mut a, KeyCode::Char(c));
    }
    assert!(!key(&mut a, KeyCode::Enter));
    assert!(a.prompt.as_ref().unwrap().error.as_ref().unwrap().contains("latency>>5"));
    key(&mut a, KeyCode::Esc);
    assert!(a.prompt.is_none() && a.path.is_empty());
    key(&mut a, KeyCode::Char('/'));
    for c in "status:5xx".chars() {
        key(&mut a, KeyCode::Char(c));
    }
    assert!(key(&mut a, KeyCode::Enter));
    assert_eq!(a.path, ["status:5xx"]);
    // Slowest mode sorts requests by latency.
    key_with(&mut a, &live, KeyCode::Char('7'));
    key_with(&mut a, &live, KeyCode::Char('l'));
    let lat: Vec<f64> = a.request_list().iter().map(|r| r.latency_ms.unwrap_or(0.0)).collect();
    assert!(lat.windows(2).all(|w| w[0] >= w[1]));
    key(&mut a, KeyCode::Char('q'));
    assert!(a.quit);
}

#[test]
fn escape_sequences_from_events_never_reach_the_terminal() {
    let config = Config { clock: Clock::EventTime, ..Config::default() };
    let mut live = Live::new(vec!["evil".into()], config, PriceTable::builtin(), 0);
    let evil = r#"{"created_at":1740823200000,"model":"gpt-4o\u001b[2J","user_id":"u-1\u001b]52;c;aGk=\u0007\u001b[31mred","properties":{"Env\u001b[H":"prod\u009b1m"},"error":"boom\u001b[?1049l"}"#;
    live.feed(Feed { source: 0, update: Update::Lines(format!("{evil}\n").into_bytes()) });
    for view in 0..8u8 {
        let mut a = app(&live);
        key_with(&mut a, &live, KeyCode::Char(char::from(b'1' + view)));
        if view == 6 {
            key(&mut a, KeyCode::Enter);
        }
        let term = screen(&mut a, 160, 48);
        let buf = term.backend().buffer();
        for cell in buf.content() {
            assert!(
                !cell.symbol().chars().any(|c| c.is_control()),
                "view {view}: control character in {:?}",
                cell.symbol()
            );
        }
    }
    let mut a = app(&live);
    key(&mut a, KeyCode::Char('4'));
    assert!(text(&screen(&mut a, 160, 48)).contains("u-1]52;c;aGk=[31mred"));
}

#[test]
fn e_exports_the_view_and_y_copies_the_selection() {
    let live = live_with_traffic();
    let dir = tempfile::tempdir().unwrap();
    let mut a = app(&live);
    key_with(&mut a, &live, KeyCode::Char('2'));
    let path = a.export(dir.path()).unwrap();
    let csv = std::fs::read_to_string(&path).unwrap();
    assert!(csv.starts_with("NAME,REQS,SHARE,COST"), "{csv}");
    assert_eq!(csv.lines().count(), a.rows().len() + 1);
    key_with(&mut a, &live, KeyCode::Char('1'));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.export(dir.path()).unwrap()).unwrap()).unwrap();
    assert_eq!(json["summary"]["total_requests"], 4000);
    key_with(&mut a, &live, KeyCode::Char('7'));
    let lines = std::fs::read_to_string(a.export(dir.path()).unwrap()).unwrap();
    assert_eq!(lines.lines().count(), 2_000, "the request list as shown");
    key(&mut a, KeyCode::Char('y'));
    assert_eq!(a.copy.as_deref(), Some(a.request_list()[0].request_id.as_str()));
    assert!(a.message.as_ref().unwrap().0.starts_with("copied req-"));
}

#[test]
fn the_command_line_completes_runs_and_remembers() {
    let live = live_with_traffic();
    let mut a = app(&live);
    let type_text = |a: &mut App, text: &str| {
        for c in text.chars() {
            key(a, KeyCode::Char(c));
        }
    };
    key(&mut a, KeyCode::Char(':'));
    type_text(&mut a, "filt");
    key(&mut a, KeyCode::Tab);
    assert_eq!(a.prompt.as_ref().unwrap().text, "filter ", "one command matches");
    key(&mut a, KeyCode::Esc);
    key(&mut a, KeyCode::Char(':'));
    type_text(&mut a, "mod");
    key(&mut a, KeyCode::Tab);
    assert_eq!(a.prompt.as_ref().unwrap().text, "model", "model and models share it");
    type_text(&mut a, " gpt-4o-m");
    key(&mut a, KeyCode::Tab);
    assert_eq!(a.prompt.as_ref().unwrap().text, "model gpt-4o-mini");
    assert!(key(&mut a, KeyCode::Enter), "the filter changed");
    assert_eq!(a.path, ["model:gpt-4o-mini"]);

    key(&mut a, KeyCode::Char(':'));
    type_text(&mut a, "window 15m");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.window(), 900 * MICROS_PER_SEC);

    key(&mut a, KeyCode::Char(':'));
    type_text(&mut a, "users");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.view, View::Users);

    key(&mut a, KeyCode::Char(':'));
    type_text(&mut a, "frobnicate");
    key(&mut a, KeyCode::Enter);
    assert!(a.prompt.as_ref().unwrap().error.as_ref().unwrap().contains("unknown command"));
    key(&mut a, KeyCode::Esc);

    // History: ↑ brings back earlier commands.
    key(&mut a, KeyCode::Char(':'));
    key(&mut a, KeyCode::Up);
    assert_eq!(a.prompt.as_ref().unwrap().text, "frobnicate");
    key(&mut a, KeyCode::Up);
    assert_eq!(a.prompt.as_ref().unwrap().text, "users");
    key(&mut a, KeyCode::Esc);

    key(&mut a, KeyCode::Char(':'));
    type_text(&mut a, "clear");
    assert!(key(&mut a, KeyCode::Enter));
    assert!(a.path.is_empty());
}

#[test]
fn mouse_clicks_tabs_and_rows() {
    use crossterm::event::{MouseButton, MouseEvent, MouseEventKind};
    let live = live_with_traffic();
    let mut a = app(&live);
    screen(&mut a, 160, 48);
    let click = |column, row| MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column,
        row,
        modifiers: KeyModifiers::NONE,
    };
    let (x0, _) = a.tab_spans[3];
    a.mouse(click(x0 + 1, 0));
    assert_eq!(a.view, View::Users);
    screen(&mut a, 160, 48);
    let (y0, first) = a.first_row.unwrap();
    a.mouse(click(5, y0 + 3));
    assert_eq!(a.selected, first + 3);
    a.mouse(MouseEvent { kind: MouseEventKind::ScrollDown, column: 5, row: 10, modifiers: KeyModifiers::NONE });
    assert_eq!(a.selected, first + 4);
}

#[test]
fn a_session_opens_as_its_timeline() {
    let mut live = live_with_traffic();
    let mut a = app(&live);
    key_with(&mut a, &live, KeyCode::Char('5'));
    let top = a.rows()[0].key.clone();
    assert!(key(&mut a, KeyCode::Enter));
    assert_eq!(a.view, View::Requests);
    live.set_filter(a.filter());
    a.refresh(&live, 0.0);
    let list = a.request_list();
    assert!(!list.is_empty());
    assert!(list.iter().all(|r| r.session_id == top));
    assert!(list.windows(2).all(|w| w[0].created_at <= w[1].created_at), "oldest first");
    let s = text(&screen(&mut a, 160, 48));
    assert!(s.contains("session timeline") && s.contains("PATH"), "{s}");
}

#[test]
fn alert_rules_evaluated_on_live_traffic_make_a_banner_and_fill_the_alerts_view() {
    // The demo's 429 storm on anthropic comes in minutes 2 and 12 of the 13 replayed.
    let text_rules = r#"
        [[alerts]]
        name = "rate-limited"
        metric = "rate_429"
        threshold = 20
        warning = 10
        window = "1m"
        group_by = "provider"
        min_requests = 40

        [[alerts]]
        name = "p95-latency"
        metric = "latency_p95"
        threshold = 60000
        window = "5m"

        [[alerts]]
        name = "typo"
        metric = "latency_p59"
        threshold = 1
    "#;
    let (rules, problems) = tokentop::alert::parse_rules_str(text_rules).unwrap();
    assert_eq!((rules.len(), problems.len()), (2, 1));

    let config = Config { clock: Clock::EventTime, ..Config::default() };
    let mut live = Live::new(vec!["gateway.jsonl".into()], config, PriceTable::builtin(), 0);
    live.watch(rules);
    let mut synth = Synth::new(42, 1_740_823_200_000_000, 5.0).with_incidents();
    let mut lines = Vec::new();
    for _ in 0..4_000 {
        write_line(&synth.next_event(), &mut lines);
    }
    live.feed(Feed { source: 0, update: Update::Lines(lines) });
    let changes = live.evaluate_alerts();
    let fired: Vec<_> = changes.iter().filter(|c| c.transition == tokentop::alert::Transition::Fired).collect();
    assert!(
        fired.iter().all(|c| c.firing.rule == "rate-limited" && c.firing.group.as_deref() == Some("anthropic")),
        "{fired:#?}"
    );
    assert!(fired.len() >= 2, "both storms: {changes:?}");

    let mut a = app(&live);
    a.alert_info.problems = problems;
    let first = text(&screen(&mut a, 160, 48)).lines().next().unwrap().to_string();
    assert!(
        first.contains("1 firing: CRITICAL rate-limited [anthropic]") && first.contains("23.8% > 20.0%"),
        "{first}"
    );
    key(&mut a, KeyCode::Char('8'));
    let s = text(&screen(&mut a, 120, 24));
    assert!(s.contains("skipped alert rule `typo`: unknown metric `latency_p59`"), "the invalid rule is shown: {s}");
    assert!(s.contains("FIRING") && s.contains("p95-latency") && s.contains("history"), "{s}");
    insta::assert_snapshot!("alerts_live_120x24", screen(&mut a, 120, 24).backend());
    let wide = text(&screen(&mut a, 160, 30));
    assert!(wide.contains("TREND") && wide.contains('▅'), "a trend of past values: {wide}");
    // Enter on the firing alert opens the traffic it watches.
    key_with(&mut a, &live, KeyCode::Enter);
    assert_eq!((a.view, a.path.as_slice()), (View::Overview, &["provider:anthropic".to_string()][..]));
}

#[test]
fn user_segments_filter_the_users_view() {
    let live = live_with_traffic();
    let mut a = app(&live);
    key_with(&mut a, &live, KeyCode::Char('4'));
    let all = a.rows();
    let active = a.snapshot.as_ref().unwrap().report.summary.active_users as usize;
    key(&mut a, KeyCode::Char('p'));
    let power = a.rows();
    assert_eq!(power.len(), active.div_ceil(10).min(all.len()), "the top tenth");
    assert!(power.iter().all(|r| r.values[1].unwrap() >= power.last().unwrap().values[1].unwrap()));
    assert!(power.iter().all(|r| r.key != "(other)"), "the folded row is not a user");
    key(&mut a, KeyCode::Char('p'));
    // Replayed from its start, every user of the window is new to the engine.
    assert_eq!(a.rows().len(), all.len());
    key(&mut a, KeyCode::Char('p'));
    let at_risk = a.rows();
    assert!(at_risk.len() < all.len());
    assert!(text(&screen(&mut a, 160, 48)).contains("at-risk users"));
    key(&mut a, KeyCode::Char('p'));
    assert_eq!(a.rows().len(), all.len());
}

#[test]
fn short_terminals_draw_every_series_with_a_legend() {
    let live = live_with_traffic();
    let mut a = app(&live);
    for (w, h) in [(80, 24), (100, 20), (120, 40)] {
        let s = text(&screen(&mut a, w, h));
        for series in ["requests/s now", "cost/min now", "⠒p50", "•p95", "▄p99", "⠒4xx", "•5xx", "▄429"] {
            assert!(s.contains(series), "{w}x{h} lacks {series}: {s}");
        }
        // Without colour the three latency lines are told apart by their marks.
        for mark in ['•', '▄'] {
            assert!(s.lines().skip(12).any(|l| l.contains(mark)), "{w}x{h}: no {mark} drawn: {s}");
        }
    }
}
