//! The live console.
//!
//! One task owns everything: it handles keys first (`select!` with `biased`, so a
//! keypress never waits behind a burst of events), then drains source feeds into the
//! engine for at most a few milliseconds at a time (what is left waits in the bounded
//! source channel, shown as a backlog), and redraws at most every `refresh` (100 ms),
//! only when something changed, and at once after a key. When every source has ended
//! it keeps showing what it read. New data is taken from the engine at most every
//! 250 ms (a snapshot of a day of heavy traffic takes ~20 ms; four a second are plenty
//! to read). With no input and no data it blocks; once a second, whatever the load,
//! the clock moves (windows roll with it), the ingest rate is measured and the alert
//! rules are evaluated. Frames go through a buffered writer wrapped in synchronized
//! output, and ratatui writes only the cells that changed: no flicker over ssh.

pub mod app;
mod command;
mod export;
pub mod format;
pub mod keys;
pub mod render;
pub mod rows;
pub mod snapshot;
pub mod theme;
pub mod view;

use std::io::{self, BufWriter, Write};
use std::time::{Duration, Instant};

use crossterm::event::{Event as TermEvent, EventStream, KeyEventKind};
use crossterm::terminal::{
    self, BeginSynchronizedUpdate, EndSynchronizedUpdate, EnterAlternateScreen, LeaveAlternateScreen,
};
use crossterm::{cursor, execute, queue};
use futures_util::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

use crate::alert::notify::{Notification, Notifier};
use crate::alert::{Change, Rule, Transition};
use crate::engine::{Clock, Config};
use crate::live::Live;
use crate::pricing::PriceTable;
use crate::source::{self, SourceOptions, SourceSpec};
use crate::time::Micros;
pub use app::App;
use theme::Theme;

#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    pub sources: Vec<SourceSpec>,
    pub source_options: SourceOptions,
    /// The window shown first.
    pub window: Micros,
    /// Redraw at most this often.
    pub refresh: Duration,
    pub theme: Theme,
    pub clock: Clock,
    pub prices: PriceTable,
    /// Times in UTC rather than local time.
    pub utc: bool,
    /// The zone of timestamps written without an offset (`--tz`).
    pub zone: crate::time::Zone,
    /// Capture the mouse (off by default, so that text can be selected).
    pub mouse: bool,
    pub keymap: Vec<(crossterm::event::KeyCode, crossterm::event::KeyModifiers, app::Action)>,
    /// Every event is also counted here, for Prometheus (`--metrics`).
    pub metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
    /// A ClickHouse table whose numbers the screen shows (instead of `sources`).
    pub store: Option<crate::clickhouse::Store>,
}

/// The alert rules the console evaluates, and where their notifications go.
#[derive(Default)]
pub struct Alerting {
    pub rules: Vec<Rule>,
    /// Invalid rules, each with its name and problem: shown, and skipped.
    pub problems: Vec<String>,
    pub notifier: Option<Notifier>,
    /// Ring the terminal bell when an alert fires.
    pub bell: bool,
}

/// Changes older than this (by event time: a replayed log) are shown but not sent.
const STALE: Micros = 10 * 60 * crate::time::MICROS_PER_SEC;

impl Alerting {
    /// Sends what changed (leaving out what happened over `STALE` ago: replaying last
    /// week's log must not page anyone), and says whether to ring the bell. Returns the
    /// number of changes left out too.
    fn notify(&self, changes: &[Change], live: &Live, now: Micros) -> (bool, u64) {
        let rules = live.alerts.as_ref().map_or(&[][..], |w| &w.rules[..]);
        let (fresh, stale): (Vec<&Change>, Vec<&Change>) = changes.iter().partition(|c| c.at >= now - STALE);
        if let Some(n) = &self.notifier {
            for c in &fresh {
                n.send(Notification::of_change(c, rules.get(c.rule).map_or(0, |r| r.window)));
            }
        }
        let bell = self.bell && fresh.iter().any(|c| c.transition == Transition::Fired);
        (bell, if self.notifier.is_some() { stale.len() as u64 } else { 0 })
    }
}

/// New data is taken from the engine at most this often.
const DATA_EVERY: Duration = Duration::from_millis(250);
/// The clock, the ingest rate and the alert rules move this often.
const TICK: Duration = Duration::from_secs(1);
/// The first frame waits at most this long for the demo's made-up past.
const WARM_MAX: Duration = Duration::from_secs(15);
/// While it waits, it says so this often.
const WARM_FRAME: Duration = Duration::from_millis(250);
/// While it waits, the loop looks around this often.
const WARM_POLL: Duration = Duration::from_millis(20);
/// Ingest runs at most this long before keys are looked at again.
const INGEST_SLICE: Duration = Duration::from_millis(5);
/// Bytes of lines, parsed, that may wait for the engine: a few batches, enough to keep
/// it busy while the parse stage works on the next ones (the rest waits as lines).
const PARSED_BYTES: usize = 8 << 20;

/// Puts the terminal back as it was: raw mode off, main screen, cursor shown.
pub fn restore_terminal() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(io::stdout(), crossterm::event::DisableMouseCapture, LeaveAlternateScreen, cursor::Show);
}

/// Restores the terminal when dropped: on quit, on error, and while unwinding.
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Runs the console until the user quits.
pub async fn run(opts: ConsoleOptions, alerting: Alerting) -> io::Result<()> {
    let mut names: Vec<String> = opts.sources.iter().map(SourceSpec::display).collect();
    if let Some(store) = &opts.store {
        names.insert(0, format!("clickhouse {}", store.target().name()));
    }
    // Every default window, and the one asked for (any length is kept as given).
    let mut windows = crate::engine::DEFAULT_WINDOWS.to_vec();
    if !windows.contains(&opts.window) {
        windows.push(opts.window);
        windows.sort_unstable();
    }
    let config = Config { windows, clock: opts.clock, recent: 20_000, ..Config::default() };
    let now = match opts.clock {
        Clock::Wall => crate::time::now(),
        Clock::EventTime => 0,
    };
    let names_len = names.len();
    let mut live = Live::new(names, config.clone(), opts.prices.clone(), now);
    live.set_zone(opts.zone);
    live.watch(alerting.rules.clone());
    // Sources → lines → the parse stage (a thread) → events → here, where they are
    // aggregated: parsing and aggregating use a core each.
    let (tx, lines) = source::channel(1024, source::QUEUE_BYTES);
    let unparsed = lines.gauge();
    let (parsed_tx, mut rx) = source::channel(1024, PARSED_BYTES);
    // A table is read by queries, not as a source of lines: the feed stays open.
    let _open = opts.store.as_ref().map(|_| tx.clone());
    source::start(&opts.sources, &opts.source_options, tx);
    crate::live::parsing::spawn(
        lines,
        parsed_tx,
        crate::live::parsing::Parsing::new(names_len, opts.zone, opts.prices.clone())
            .with_metrics(opts.metrics.clone()),
    );

    // A panic restores the terminal before its message is printed.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        previous(info);
    }));
    terminal::enable_raw_mode()?;
    let _guard = TerminalGuard;
    // A fresh alternate screen, cleared without `Terminal::clear`, which asks the
    // terminal where its cursor is: a slow link (or a terminal that does not answer)
    // would make starting up fail.
    execute!(io::stdout(), EnterAlternateScreen, cursor::Hide, terminal::Clear(terminal::ClearType::All))?;
    if opts.mouse {
        execute!(io::stdout(), crossterm::event::EnableMouseCapture)?;
    }
    let mut term = Terminal::new(CrosstermBackend::new(BufWriter::with_capacity(1 << 16, io::stdout())))?;

    let mut app = App::new(config.windows.clone(), opts.window);
    app.utc = opts.utc;
    app.set_keymap(opts.keymap.clone());
    app.alert_info.problems = alerting.problems.clone();
    if !alerting.problems.is_empty() {
        let n = alerting.problems.len();
        let msg = format!("{n} invalid alert rule{} skipped: see the Alerts view (8)", if n == 1 { "" } else { "s" });
        app.message = Some((msg, Instant::now()));
    }
    // Reading ClickHouse: a task answers what the screen asks (window, filter), at
    // most once a second unless the ask changes; the keys never wait for it.
    let ask = |app: &App| crate::clickhouse::ViewAsk {
        window: app.window(),
        filter: app.filter(),
        list: app.view == view::View::Requests,
        parts: crate::clickhouse::Parts {
            properties: app.view == view::View::Properties,
            people: matches!(app.view, view::View::Users | view::View::Sessions),
            group_latency: matches!(app.view, view::View::Models | view::View::Providers),
        },
    };
    let (asks, mut answers) = match &opts.store {
        Some(store) => {
            let (ask_tx, ask_rx) = tokio::sync::watch::channel(ask(&app));
            let (answer_tx, answer_rx) = tokio::sync::watch::channel(None);
            tokio::spawn(crate::clickhouse::follow(store.clone(), ask_rx, answer_tx, TICK));
            (Some(ask_tx), Some(answer_rx))
        }
        None => (None, None),
    };
    let mut input = EventStream::new();
    let mut tick = tokio::time::interval(TICK);
    let data_every = opts.refresh.max(DATA_EVERY);
    let mut last_draw = Instant::now() - opts.refresh;
    let mut last_data = Instant::now() - data_every;
    let mut last_tick = Instant::now();
    // `urgent`: a key was pressed, so the next frame is drawn at once.
    let (mut dirty, mut data, mut urgent) = (true, true, false);
    let (mut rate_total, mut rate) = (0u64, 0.0f64);
    let mut sources_open = true;
    // The demo makes up its past first; the first frame waits for it (a few seconds
    // at most) so that it shows full charts and whatever alerts that past raises.
    let demo = opts.sources.iter().position(|s| matches!(s, SourceSpec::Demo));
    let mut warming = demo.filter(|_| opts.source_options.demo_history > 0);
    let warm_until = Instant::now() + WARM_MAX;
    loop {
        let wait = if dirty {
            opts.refresh.saturating_sub(last_draw.elapsed())
        } else {
            data_every.saturating_sub(last_data.elapsed())
        };
        let wait = if warming.is_some() { wait.max(WARM_POLL) } else { wait };
        tokio::select! {
            biased;
            ev = input.next() => match ev {
                Some(Ok(TermEvent::Key(k))) if k.kind != KeyEventKind::Release => {
                    if app.key(k) {
                        live.set_filter(app.filter());
                        data = true;
                    }
                    data |= app.needs_refresh;
                    dirty = true;
                    urgent = true;
                }
                Some(Ok(TermEvent::Mouse(m))) => {
                    app.mouse(m);
                    data |= app.needs_refresh;
                    dirty = true;
                    urgent = true;
                }
                Some(Ok(TermEvent::Resize(..))) => dirty = true,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => break,
            },
            feed = rx.recv(), if sources_open && (warming.is_some() || !data || last_data.elapsed() < data_every) => match feed {
                Some(feed) => {
                    if live.clock() == Clock::Wall {
                        live.tick(crate::time::now());
                    }
                    live.feed(feed);
                    // Drain what is queued for a few milliseconds at most, then look at
                    // the keys again: a key never waits behind a burst of events.
                    let until = Instant::now() + INGEST_SLICE;
                    while Instant::now() < until {
                        match rx.try_recv() {
                            Some(feed) => live.feed(feed),
                            None => break,
                        }
                    }
                    data = true;
                }
                None => {
                    // Every source has ended: keep showing what was read, and say so.
                    sources_open = false;
                    live.end_sources();
                    data = true;
                }
            },
            changed = async { answers.as_mut().expect("guarded").changed().await }, if answers.is_some() => {
                match changed {
                    Ok(()) => {
                        let answer = answers.as_mut().expect("guarded").borrow_and_update().clone();
                        if let Some(a) = answer {
                            live.store_answer(a);
                            data = true;
                        }
                    }
                    Err(_) => answers = None,
                }
            },
            _ = tick.tick() => {},
            _ = tokio::time::sleep(wait), if dirty || data => {}
        }
        if let Some(tx) = &asks {
            let now = ask(&app);
            tx.send_if_modified(|a| {
                let changed = *a != now;
                *a = now;
                changed
            });
        }
        if app.quit {
            break;
        }
        if let Some(i) = warming
            && (live.sources[i].state != source::SourceState::Starting || Instant::now() >= warm_until)
        {
            // The past is in: the clock, the rules and the rate start from here.
            warming = None;
            last_tick = Instant::now() - TICK;
            rate_total = live.total;
            data = true;
        }
        // Once a second, whatever the load (a busy source must not starve the clock,
        // the ingest rate or the alert rules).
        if last_tick.elapsed() >= TICK {
            let secs = last_tick.elapsed().as_secs_f64();
            last_tick = Instant::now();
            if live.clock() == Clock::Wall {
                live.tick(crate::time::now());
            }
            rate = live.total.saturating_sub(rate_total) as f64 / secs;
            rate_total = live.total;
            live.backlog_bytes = (unparsed.bytes() + rx.queued_bytes()) as u64;
            data = true;
            let changes = live.evaluate_alerts();
            let (bell, stale) = alerting.notify(&changes, &live, crate::time::now());
            app.alert_info.stale += stale;
            if bell {
                term.backend_mut().write_all(b"\x07")?;
                term.backend_mut().flush()?;
            }
            if let Some(n) = &alerting.notifier {
                app.alert_info.deliveries = n.deliveries.lock().map(|d| d.clone()).unwrap_or_default();
                app.alert_info.dropped = n.dropped.load(std::sync::atomic::Ordering::Relaxed);
            }
        }
        if let Some(text) = app.copy.take() {
            // OSC 52: the terminal (also over ssh, and tmux with set-clipboard) sets the clipboard.
            let seq = format!("\x1b]52;c;{}\x07", base64(text.as_bytes()));
            term.backend_mut().write_all(seq.as_bytes())?;
            term.backend_mut().flush()?;
        }
        let take_data = data && (last_data.elapsed() >= data_every || app.needs_refresh);
        if warming.is_some() && last_draw.elapsed() >= WARM_FRAME {
            let text = format!(
                "demo: making up the past {} of traffic, so that the charts start full… {} events",
                app::window_label(opts.source_options.demo_history),
                format::int(live.total)
            );
            term.draw(|f| render::draw_loading(f, &text, &opts.theme))?;
            last_draw = Instant::now();
        }
        if (dirty || take_data) && (urgent || last_draw.elapsed() >= opts.refresh) && warming.is_none() {
            if take_data {
                app.refresh(&live, rate);
                last_data = Instant::now();
                data = false;
            }
            draw(&mut term, &mut app, &opts.theme)?;
            last_draw = Instant::now();
            dirty = false;
            urgent = false;
        }
    }
    drop(term);
    Ok(())
}

fn draw<W: Write>(term: &mut Terminal<CrosstermBackend<W>>, app: &mut App, theme: &Theme) -> io::Result<()> {
    queue!(term.backend_mut(), BeginSynchronizedUpdate)?;
    term.draw(|f| render::draw(f, app, theme))?;
    execute!(term.backend_mut(), EndSynchronizedUpdate)?;
    Ok(())
}

/// Standard base64, for OSC 52.
fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foo"), "Zm9v");
        assert_eq!(super::base64(b"req-123"), "cmVxLTEyMw==");
    }
}
