//! The console's state and what keys do to it. No terminal here: tests drive `App`
//! directly and check the state, and the renderer only reads it.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::engine::RecentRequest;
use crate::filter::Filter;
use crate::live::{Live, SourceStatus};
use crate::report::{self, Report};
use crate::stats::series::Point;
use crate::text::sanitize;
use crate::time::{MICROS_PER_SEC, Micros};

/// The views, in tab order (their number is their key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Overview,
    Models,
    Providers,
    Users,
    Sessions,
    Properties,
    Requests,
    Alerts,
}

impl View {
    pub const ALL: [View; 8] = [
        View::Overview,
        View::Models,
        View::Providers,
        View::Users,
        View::Sessions,
        View::Properties,
        View::Requests,
        View::Alerts,
    ];

    pub fn title(self) -> &'static str {
        match self {
            View::Overview => "Overview",
            View::Models => "Models",
            View::Providers => "Providers",
            View::Users => "Users",
            View::Sessions => "Sessions",
            View::Properties => "Properties",
            View::Requests => "Requests",
            View::Alerts => "Alerts",
        }
    }

    /// A label for narrow terminals.
    pub fn short(self) -> &'static str {
        match self {
            View::Overview => "Over",
            View::Models => "Model",
            View::Providers => "Prov",
            View::Users => "User",
            View::Sessions => "Sess",
            View::Properties => "Prop",
            View::Requests => "Req",
            View::Alerts => "Alert",
        }
    }

    fn index(self) -> usize {
        View::ALL.iter().position(|v| *v == self).unwrap_or(0)
    }
}

/// Everything a key can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    View(usize),
    NextView,
    PrevView,
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    DrillDown,
    Back,
    Filter,
    SortNext,
    SortReverse,
    ZoomIn,
    ZoomOut,
    Pause,
    Help,
    SlowestMode,
    Export,
    Copy,
    Command,
    Segment,
}

/// The default key bindings: a table, so they read at a glance (and can be remapped).
pub fn default_keymap() -> Vec<(KeyCode, KeyModifiers, Action)> {
    use KeyCode::*;
    let none = KeyModifiers::NONE;
    let mut map = vec![
        (Char('q'), none, Action::Quit),
        (Char('c'), KeyModifiers::CONTROL, Action::Quit),
        (Tab, none, Action::NextView),
        (BackTab, KeyModifiers::SHIFT, Action::PrevView),
        (Up, none, Action::Up),
        (Char('k'), none, Action::Up),
        (Down, none, Action::Down),
        (Char('j'), none, Action::Down),
        (PageUp, none, Action::PageUp),
        (PageDown, none, Action::PageDown),
        (Home, none, Action::Home),
        (Char('g'), none, Action::Home),
        (End, none, Action::End),
        (Char('G'), KeyModifiers::SHIFT, Action::End),
        (Enter, none, Action::DrillDown),
        (Esc, none, Action::Back),
        (Char('/'), none, Action::Filter),
        (Char('s'), none, Action::SortNext),
        (Char('S'), KeyModifiers::SHIFT, Action::SortReverse),
        (Char(']'), none, Action::ZoomOut),
        (Char('+'), none, Action::ZoomOut),
        (Char('['), none, Action::ZoomIn),
        (Char('-'), none, Action::ZoomIn),
        (Char(' '), none, Action::Pause),
        (Char('?'), none, Action::Help),
        (Char('l'), none, Action::SlowestMode),
        (Char('e'), none, Action::Export),
        (Char('y'), none, Action::Copy),
        (Char(':'), none, Action::Command),
        (Char('p'), none, Action::Segment),
    ];
    for (i, c) in ('1'..='8').enumerate() {
        map.push((Char(c), none, Action::View(i)));
    }
    map
}

/// A line of text being typed: a filter (`/`) or a command (`:`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prompt {
    pub text: String,
    pub error: Option<String>,
    pub command: bool,
    /// Position in the command history while browsing it with ↑ ↓.
    pub history: Option<usize>,
}

/// The commands of the `:` line.
pub const COMMANDS: [&str; 18] = [
    "model",
    "provider",
    "user",
    "session",
    "filter",
    "clear",
    "window",
    "export",
    "overview",
    "models",
    "providers",
    "users",
    "sessions",
    "properties",
    "requests",
    "alerts",
    "help",
    "quit",
];

/// A table row: its name (for drill-down) and its cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub key: String,
    pub cells: Vec<String>,
    /// Numbers to sort by, one per column (text columns sort by `cells`).
    pub sort: Vec<f64>,
}

/// One bucket of the Overview's charts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChartPoint {
    pub requests: u64,
    pub cost: f64,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub other_4xx: u64,
    pub e5xx: u64,
    pub e429: u64,
}

/// Segments of the Users view (`p` cycles them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Segment {
    #[default]
    All,
    /// The top 10% of the window's users by requests.
    Power,
    /// First seen within the window.
    New,
    /// Traffic falling: fewer than half as many requests in the window's second half as in its first.
    AtRisk,
}

impl Segment {
    pub fn label(self) -> &'static str {
        match self {
            Segment::All => "all users",
            Segment::Power => "power users (top 10%)",
            Segment::New => "new users",
            Segment::AtRisk => "at-risk users (traffic falling)",
        }
    }

    fn next(self) -> Segment {
        match self {
            Segment::All => Segment::Power,
            Segment::Power => Segment::New,
            Segment::New => Segment::AtRisk,
            Segment::AtRisk => Segment::All,
        }
    }
}

pub use crate::alert::State as AlertState;
/// One alert rule (or group) as the banner and the Alerts view show it.
pub use crate::alert::watch::Status as AlertRow;

/// What the Alerts view shows besides the rules.
#[derive(Debug, Clone, Default)]
pub struct AlertInfo {
    /// Invalid rules, each with its name and problem (they are skipped).
    pub problems: Vec<String>,
    /// Past and present firings, newest first.
    pub history: Vec<crate::alert::Firing>,
    /// How notifications went, per webhook.
    pub deliveries: Vec<crate::alert::notify::Delivery>,
    /// Notifications dropped because the queue was full.
    pub dropped: u64,
    /// Changes not sent because they happened long ago (a replayed log).
    pub stale: u64,
}

/// What the screen shows, taken from the engine at most every redraw interval.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub report: Report,
    /// Active users of the previous window (an estimate), for the tile's change.
    pub previous_users: Option<u64>,
    /// The window's time series, one entry a bucket, computed once per snapshot.
    pub chart: Vec<ChartPoint>,
    pub previous: Point,
    pub window: Micros,
    pub now: Micros,
    /// Newest first.
    pub requests: Vec<RecentRequest>,
    pub sessions: Vec<Row>,
    /// When the filtered view's history starts, if filtered.
    pub filtered_since: Option<(Micros, usize)>,
    /// Users first seen within the window.
    pub new_users: std::collections::HashSet<String>,
    /// Requests by latency range (see [`LATENCY_EDGES`]).
    pub latency_bins: Vec<u64>,
    /// Requests per slab of the window, oldest first, by row key (`model:…`, `user:…`).
    pub trends: std::collections::HashMap<String, Vec<u64>>,
}

/// The sources and ingest, for the status bar.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub sources: Vec<SourceStatus>,
    pub events_per_sec: f64,
    /// Events ingested so far.
    pub total: u64,
    /// Every source has ended.
    pub ended: bool,
    /// Bytes read and not yet ingested.
    pub backlog_bytes: u64,
    /// The engine's clock.
    pub now: Micros,
}

pub struct App {
    pub view: View,
    pub windows: Vec<Micros>,
    pub window: usize,
    pub paused: Option<u64>,
    pub selected: usize,
    /// Per view: sort column and whether descending.
    pub sort: [(usize, bool); 8],
    /// The drill-down path; each entry is a filter term added by Enter or `/`.
    pub path: Vec<String>,
    pub prompt: Option<Prompt>,
    pub help: bool,
    pub slowest: bool,
    /// A request opened with Enter in the Requests view.
    pub detail: Option<RecentRequest>,
    pub snapshot: Option<Snapshot>,
    pub quit: bool,
    keymap: Vec<(KeyCode, KeyModifiers, Action)>,
    /// Rows on screen in the current table (set by the renderer, for paging).
    pub page: usize,
    /// Show times in UTC rather than local time.
    pub utc: bool,
    /// The snapshot lacks what the view shows (the request list): take a new one.
    pub needs_refresh: bool,
    /// A line for the hint bar (what `e` wrote, what `y` copied), with when it was set.
    pub message: Option<(String, std::time::Instant)>,
    /// Text to put on the clipboard (OSC 52), for the terminal loop to send.
    pub copy: Option<String>,
    /// Commands run from the `:` line, oldest first.
    pub history: Vec<String>,
    /// Where the renderer put the tabs (x from, x to) and the first table row (y, index),
    /// for mouse clicks.
    pub tab_spans: Vec<(u16, u16)>,
    pub first_row: Option<(u16, usize)>,
    /// Alert rules and their states; firing ones make the banner.
    pub alerts: Vec<AlertRow>,
    pub alert_info: AlertInfo,
    /// What the status bar shows: kept current while the picture is paused.
    pub status: Status,
    /// The Users view's segment.
    pub segment: Segment,
}

impl App {
    pub fn new(windows: Vec<Micros>, window: Micros) -> App {
        let idx = windows.iter().position(|w| *w >= window).unwrap_or(0);
        App {
            view: View::Overview,
            windows,
            window: idx,
            paused: None,
            selected: 0,
            sort: [(1, true); 8],
            path: Vec::new(),
            prompt: None,
            help: false,
            slowest: false,
            detail: None,
            snapshot: None,
            quit: false,
            keymap: default_keymap(),
            page: 10,
            utc: false,
            needs_refresh: false,
            message: None,
            copy: None,
            history: Vec::new(),
            tab_spans: Vec::new(),
            first_row: None,
            alerts: Vec::new(),
            alert_info: AlertInfo::default(),
            status: Status::default(),
            segment: Segment::All,
        }
    }

    pub fn window(&self) -> Micros {
        self.windows[self.window]
    }

    /// Replaces the key bindings (from the config file).
    pub fn set_keymap(&mut self, keymap: Vec<(KeyCode, KeyModifiers, Action)>) {
        self.keymap = keymap;
    }

    /// The filter in force: the drill-down path's terms together.
    pub fn filter(&self) -> Option<Filter> {
        (!self.path.is_empty()).then(|| self.path.join(" ").parse().expect("path terms were checked"))
    }

    /// Takes a new snapshot from the engine (unless paused).
    pub fn refresh(&mut self, live: &Live, events_per_sec: f64) {
        self.status = Status {
            sources: live.sources.clone(),
            events_per_sec,
            total: live.total,
            ended: live.sources_ended,
            backlog_bytes: live.backlog_bytes,
            now: live.engine.now(),
        };
        // Alerts stay live while the rest is paused.
        if let Some(w) = &live.alerts {
            self.alerts = w.status();
            self.alert_info.history = w.evaluator.history.iter().rev().take(100).cloned().collect();
        }
        if self.paused.is_some() && self.snapshot.is_some() && !self.needs_refresh {
            return;
        }
        self.needs_refresh = false;
        let engine = live.view();
        let window = self.window();
        let opts = report::Options { top: 500, ..report::Options::default() };
        // One merge of the window's slabs serves the report and the sessions list.
        let (stats, series, span, users) = engine.window_stats(window);
        let ingest =
            report::IngestReport { events: engine.counts().events, late: engine.counts().late, ..Default::default() };
        let report = Report::build(&stats, &series, Some(span), users, ingest, &opts);
        let chart = series
            .points(span.start + 1, span.end)
            .into_iter()
            .map(|(_, p)| ChartPoint {
                requests: p.requests,
                cost: p.cost.to_f64(),
                p50: p.latency.percentile(50.0),
                p95: p.latency.percentile(95.0),
                p99: p.latency.percentile(99.0),
                other_4xx: p.e4xx - p.e429,
                e5xx: p.e5xx,
                e429: p.e429,
            })
            .collect();
        // Sort first, format only the rows kept.
        let mut top: Vec<(&str, &crate::stats::SessionAgg)> = stats.sessions.iter().collect();
        top.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then_with(|| a.0.cmp(b.0)));
        top.truncate(500);
        let sessions: Vec<Row> = top
            .into_iter()
            .map(|(id, s)| Row {
                key: id.to_string(),
                cells: vec![
                    sanitize(id).into_owned(),
                    s.name.as_deref().map(|n| sanitize(n).into_owned()).unwrap_or_default(),
                    format!("{:.1}s", s.duration_micros() as f64 / 1e6),
                    s.requests.to_string(),
                    format!("${:.4}", s.cost.to_f64()),
                    if s.errors == 0 { "ok".into() } else { format!("{} errors", s.errors) },
                ],
                sort: vec![0.0, 0.0, s.duration_micros() as f64, s.requests as f64, s.cost.to_f64(), s.errors as f64],
            })
            .collect();
        let latency_bins = stats.total.latency.bins(&LATENCY_EDGES);
        let new_users = report
            .users
            .iter()
            .flatten()
            .filter(|u| engine.first_seen(&u.user_id).is_some_and(|t| t > span.start))
            .map(|u| u.user_id.clone())
            .collect();
        // Sparklines for the rows of every table: requests per slab.
        let mut trends = std::collections::HashMap::new();
        if let Some(g) = &report.by_model {
            for (name, _) in &g.0 {
                trends.insert(
                    format!("model:{name}"),
                    engine.trend(window, |s| s.by_model.get(name).map_or(0, |a| a.requests)),
                );
            }
        }
        if let Some(g) = &report.by_provider {
            for (name, _) in &g.0 {
                trends.insert(
                    format!("provider:{name}"),
                    engine.trend(window, |s| s.by_provider.get(name).map_or(0, |a| a.requests)),
                );
            }
        }
        for (key, values) in &report.by_property.0 {
            for (value, _) in &values.0 {
                let t = engine
                    .trend(window, |s| s.by_property.get(key).and_then(|v| v.get(value)).map_or(0, |a| a.requests));
                trends.insert(format!("prop:{key}={value}"), t);
            }
        }
        if let Some(users) = &report.users {
            for u in users {
                trends.insert(
                    format!("user:{}", u.user_id),
                    engine.trend(window, |s| s.users.get(&u.user_id).map_or(0, |a| a.requests)),
                );
            }
        }
        // The request list is copied only while it is on screen.
        let requests: Vec<RecentRequest> =
            if self.view == View::Requests { engine.recent().rev().take(2_000).cloned().collect() } else { Vec::new() };
        self.snapshot = Some(Snapshot {
            previous_users: engine.previous_users(window),
            report,
            chart,
            previous: engine.previous(window),
            window,
            now: engine.now(),
            requests,
            sessions,
            filtered_since: live.filtered.as_ref().map(|(_, _, s)| (s.at, s.backfilled)),
            latency_bins,
            new_users,
            trends,
        });
    }

    /// What a key does. Returns whether the filter changed (the caller rebuilds the
    /// filtered engine and takes a new snapshot).
    pub fn key(&mut self, key: KeyEvent) -> bool {
        if let Some(p) = self.prompt.clone() {
            return self.prompt_key(key, p);
        }
        if self.detail.is_some() {
            if matches!(key.code, KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q')) {
                self.detail = None;
            }
            return false;
        }
        let action = self
            .keymap
            .iter()
            .find(|(c, m, _)| {
                *c == key.code
                    && (key.modifiers == *m
                        || (*m == KeyModifiers::NONE
                            && key.modifiers == KeyModifiers::SHIFT
                            && matches!(c, KeyCode::Char(ch) if !ch.is_ascii_alphabetic())))
            })
            .map(|(_, _, a)| *a);
        let Some(action) = action else { return false };
        if self.help && !matches!(action, Action::Help | Action::Quit) {
            self.help = false;
            if action == Action::Back {
                return false;
            }
        }
        self.act(action)
    }

    fn act(&mut self, action: Action) -> bool {
        let rows = self.rows_len();
        match action {
            Action::Quit => self.quit = true,
            Action::View(i) => self.set_view(View::ALL[i.min(7)]),
            Action::NextView => self.set_view(View::ALL[(self.view.index() + 1) % 8]),
            Action::PrevView => self.set_view(View::ALL[(self.view.index() + 7) % 8]),
            Action::Up => self.selected = self.selected.saturating_sub(1),
            Action::Down => self.selected = (self.selected + 1).min(rows.saturating_sub(1)),
            Action::PageUp => self.selected = self.selected.saturating_sub(self.page.max(1)),
            Action::PageDown => self.selected = (self.selected + self.page.max(1)).min(rows.saturating_sub(1)),
            Action::Home => self.selected = 0,
            Action::End => self.selected = rows.saturating_sub(1),
            Action::DrillDown => return self.drill_down(),
            Action::Back => {
                if self.path.pop().is_some() {
                    self.selected = 0;
                    return true;
                }
            }
            Action::Filter => self.prompt = Some(Prompt::default()),
            Action::Command => self.prompt = Some(Prompt { command: true, ..Prompt::default() }),
            Action::Segment => {
                if self.view == View::Users {
                    self.segment = self.segment.next();
                    self.selected = 0;
                }
            }
            Action::SortNext => {
                let (col, desc) = self.sort[self.view.index()];
                let cols = self.columns().max(1);
                self.sort[self.view.index()] = ((col + 1) % cols, desc);
            }
            Action::SortReverse => {
                let s = &mut self.sort[self.view.index()];
                s.1 = !s.1;
            }
            Action::ZoomIn => self.window = self.window.saturating_sub(1),
            Action::ZoomOut => self.window = (self.window + 1).min(self.windows.len() - 1),
            Action::Pause => {
                self.paused = match self.paused {
                    Some(_) => None,
                    None => Some(self.status.total),
                }
            }
            Action::Help => self.help = !self.help,
            Action::SlowestMode => {
                if self.view == View::Requests {
                    self.slowest = !self.slowest;
                    self.selected = 0;
                }
            }
            Action::Export => {
                let text = match self.export(std::path::Path::new(".")) {
                    Ok(path) => format!("exported to {}", path.display()),
                    Err(e) => format!("export failed: {e}"),
                };
                self.message = Some((text, std::time::Instant::now()));
            }
            Action::Copy => {
                let text = match self.view {
                    View::Requests => self.request_list().get(self.selected).map(|r| r.request_id.clone()),
                    View::Overview | View::Alerts => None,
                    _ => self.rows().get(self.selected).map(|r| r.key.clone()),
                };
                if let Some(t) = text.filter(|t| !t.is_empty()) {
                    self.message = Some((format!("copied {}", sanitize(&t)), std::time::Instant::now()));
                    self.copy = Some(t);
                }
            }
        }
        false
    }

    /// Writes the current view to `path`, or to a file named after it in the current
    /// directory.
    pub fn export_to(&self, path: Option<&std::path::Path>) -> std::io::Result<std::path::PathBuf> {
        let written = self.export(std::path::Path::new("."))?;
        match path {
            None => Ok(written),
            Some(p) => {
                std::fs::rename(&written, p).or_else(|_| std::fs::copy(&written, p).map(|_| ()))?;
                let _ = std::fs::remove_file(&written);
                Ok(p.to_path_buf())
            }
        }
    }

    /// Writes the current view to a file in `dir`: the Overview as the report's JSON,
    /// tables as CSV, the request list as JSON lines. Returns the path.
    pub fn export(&self, dir: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
        let Some(snap) = &self.snapshot else { return Err(std::io::Error::other("no data yet")) };
        let stamp = chrono::DateTime::from_timestamp_micros(snap.now)
            .map(|d| d.format("%Y%m%d-%H%M%S").to_string())
            .unwrap_or_default();
        let name = self.view.title().to_lowercase();
        let (path, bytes) = match self.view {
            View::Overview | View::Alerts => (
                dir.join(format!("tokentop-{name}-{stamp}.json")),
                serde_json::to_vec_pretty(&snap.report).map_err(std::io::Error::other)?,
            ),
            View::Requests => {
                let mut out = Vec::new();
                for r in self.request_list() {
                    crate::parse::native::write_line(&r.as_event(), &mut out);
                }
                (dir.join(format!("tokentop-{name}-{stamp}.jsonl")), out)
            }
            _ => {
                let mut w = csv::Writer::from_writer(Vec::new());
                let header: Vec<&str> = match self.view {
                    View::Users => USER_COLUMNS.iter().map(|c| c.trim()).collect(),
                    View::Sessions => vec!["session", "name", "duration", "requests", "cost", "result"],
                    _ => GROUP_COLUMNS.iter().map(|c| c.trim()).collect(),
                };
                w.write_record(&header).map_err(std::io::Error::other)?;
                for row in self.rows() {
                    let mut cells = row.cells.clone();
                    cells[0] = row.key.clone();
                    w.write_record(&cells).map_err(std::io::Error::other)?;
                }
                (
                    dir.join(format!("tokentop-{name}-{stamp}.csv")),
                    w.into_inner().map_err(|e| std::io::Error::other(e.to_string()))?,
                )
            }
        };
        std::fs::write(&path, bytes)?;
        Ok(path)
    }

    fn set_view(&mut self, v: View) {
        if v != self.view {
            self.view = v;
            self.selected = 0;
            self.needs_refresh = true;
        }
    }

    fn prompt_key(&mut self, key: KeyEvent, mut p: Prompt) -> bool {
        match key.code {
            KeyCode::Esc => {
                self.prompt = None;
                return false;
            }
            KeyCode::Enter if p.command => {
                let text = p.text.trim().to_string();
                self.prompt = None;
                if text.is_empty() {
                    return false;
                }
                self.history.retain(|h| *h != text);
                self.history.push(text.clone());
                return match self.command(&text) {
                    Ok(changed) => changed,
                    Err(e) => {
                        self.prompt = Some(Prompt { error: Some(e), ..p });
                        false
                    }
                };
            }
            KeyCode::Tab if p.command => {
                p.text = self.complete(&p.text);
                p.error = None;
            }
            KeyCode::Up | KeyCode::Down if p.command && !self.history.is_empty() => {
                let last = self.history.len() - 1;
                let i = match (p.history, key.code) {
                    (None, KeyCode::Up) => Some(last),
                    (Some(i), KeyCode::Up) => Some(i.saturating_sub(1)),
                    (Some(i), KeyCode::Down) if i < last => Some(i + 1),
                    _ => None,
                };
                p.history = i;
                p.text = i.map(|i| self.history[i].clone()).unwrap_or_default();
            }
            KeyCode::Enter => {
                let text = p.text.trim().to_string();
                if text.is_empty() {
                    self.prompt = None;
                    return false;
                }
                let mut candidate = self.path.clone();
                candidate.push(text.clone());
                return match candidate.join(" ").parse::<Filter>() {
                    Ok(_) => {
                        self.path.push(text);
                        self.prompt = None;
                        self.selected = 0;
                        true
                    }
                    // A bad filter shows why and keeps the old one.
                    Err(e) => {
                        p.error = Some(e.to_string());
                        self.prompt = Some(p);
                        false
                    }
                };
            }
            KeyCode::Backspace => {
                p.text.pop();
                p.error = None;
            }
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                p.text.push(c);
                p.error = None;
            }
            _ => {}
        }
        self.prompt = Some(p);
        false
    }

    /// A mouse event (with `--mouse`): the wheel moves, a click on a tab switches view,
    /// a click on a table row selects it.
    pub fn mouse(&mut self, m: crossterm::event::MouseEvent) {
        use crossterm::event::{MouseButton, MouseEventKind};
        match m.kind {
            MouseEventKind::ScrollDown => {
                self.act(Action::Down);
            }
            MouseEventKind::ScrollUp => {
                self.act(Action::Up);
            }
            MouseEventKind::Down(MouseButton::Left) => {
                if m.row == 0 {
                    if let Some(i) = self.tab_spans.iter().position(|(a, b)| (*a..*b).contains(&m.column)) {
                        self.set_view(View::ALL[i]);
                    }
                } else if let Some((y0, first)) = self.first_row
                    && m.row >= y0
                {
                    let i = first + usize::from(m.row - y0);
                    if i < self.rows_len() {
                        self.selected = i;
                    }
                }
            }
            _ => {}
        }
    }

    /// Runs a `:` command. Returns whether the filter changed.
    fn command(&mut self, line: &str) -> Result<bool, String> {
        let (cmd, arg) = line.split_once(char::is_whitespace).map_or((line, ""), |(c, a)| (c, a.trim()));
        let need = |what: &str| if arg.is_empty() { Err(format!(":{cmd} needs {what}")) } else { Ok(()) };
        let push = |app: &mut App, term: String| -> Result<bool, String> {
            let mut candidate = app.path.clone();
            candidate.push(term.clone());
            candidate.join(" ").parse::<Filter>().map_err(|e| e.to_string())?;
            app.path.push(term);
            app.selected = 0;
            Ok(true)
        };
        match cmd {
            "model" | "provider" | "user" | "session" => {
                need("a name")?;
                push(self, format!("{cmd}:{arg}"))
            }
            "filter" => {
                need("a filter expression")?;
                push(self, arg.to_string())
            }
            "clear" => {
                let changed = !self.path.is_empty();
                self.path.clear();
                Ok(changed)
            }
            "window" => {
                need("a length, e.g. 15m")?;
                let w = crate::time::parse_duration(arg)?;
                self.window = self.windows.iter().position(|x| *x >= w).unwrap_or(self.windows.len() - 1);
                self.needs_refresh = true;
                Ok(false)
            }
            "export" => {
                let path = if arg.is_empty() { None } else { Some(std::path::PathBuf::from(arg)) };
                let text = match self.export_to(path.as_deref()) {
                    Ok(p) => format!("exported to {}", p.display()),
                    Err(e) => return Err(format!("export failed: {e}")),
                };
                self.message = Some((text, std::time::Instant::now()));
                Ok(false)
            }
            "help" => {
                self.help = true;
                Ok(false)
            }
            "q" | "quit" => {
                self.quit = true;
                Ok(false)
            }
            _ => match View::ALL.iter().find(|v| v.title().eq_ignore_ascii_case(cmd)) {
                Some(v) => {
                    self.set_view(*v);
                    Ok(false)
                }
                None => Err(format!(
                    "unknown command `{cmd}`: Tab completes, e.g. :model gpt-4o, :window 15m, :export top.csv"
                )),
            },
        }
    }

    /// Completes a command name, or the name after `model`, `provider` or `user`.
    fn complete(&self, text: &str) -> String {
        let (cmd, arg) = match text.split_once(' ') {
            None => {
                let matches: Vec<&str> = COMMANDS.iter().copied().filter(|c| c.starts_with(text)).collect();
                return match matches.as_slice() {
                    [one] => format!("{one} "),
                    _ => common_prefix(&matches).unwrap_or(text).to_string(),
                };
            }
            Some(x) => x,
        };
        let Some(snap) = &self.snapshot else { return text.to_string() };
        let names: Vec<&str> = match cmd {
            "model" => {
                snap.report.by_model.as_ref().map(|g| g.0.iter().map(|(n, _)| n.as_str()).collect()).unwrap_or_default()
            }
            "provider" => snap
                .report
                .by_provider
                .as_ref()
                .map(|g| g.0.iter().map(|(n, _)| n.as_str()).collect())
                .unwrap_or_default(),
            "user" => {
                snap.report.users.as_ref().map(|u| u.iter().map(|r| r.user_id.as_str()).collect()).unwrap_or_default()
            }
            _ => Vec::new(),
        };
        let matches: Vec<&str> =
            names.into_iter().filter(|n| n.starts_with(arg) && !n.contains(char::is_whitespace)).collect();
        match matches.as_slice() {
            [one] => format!("{cmd} {one}"),
            _ => format!("{cmd} {}", common_prefix(&matches).unwrap_or(arg)),
        }
    }

    /// Enter: narrow everything to the selected row (a model, provider, user, session
    /// or property value), or open the selected request.
    fn drill_down(&mut self) -> bool {
        let Some(snap) = &self.snapshot else { return false };
        let term = match self.view {
            View::Models | View::Providers | View::Users | View::Properties | View::Sessions => {
                let rows = self.rows();
                let Some(row) = rows.get(self.selected) else { return false };
                if row.key == crate::stats::OTHER {
                    return false;
                }
                let quoted = |s: &str| if s.contains(char::is_whitespace) { None } else { Some(s.to_string()) };
                match self.view {
                    View::Models => quoted(&row.key).map(|k| format!("model:{k}")),
                    View::Providers => quoted(&row.key).map(|k| format!("provider:{k}")),
                    View::Users => quoted(&row.key).map(|k| format!("user:{k}")),
                    View::Sessions => quoted(&row.key).map(|k| format!("session:{k}")),
                    _ => row.key.split_once('=').and_then(|(k, v)| quoted(v).map(|v| format!("prop.{k}={v}"))),
                }
            }
            View::Requests => {
                let list = self.request_list();
                self.detail = list.get(self.selected).map(|r| (*r).clone());
                return false;
            }
            // An alert opens as the traffic it watches: its filter and group.
            View::Alerts => self.alert_list().get(self.selected).and_then(|a| a.drill.clone()),
            _ => None,
        };
        let _ = snap;
        match term {
            Some(t) if t.parse::<Filter>().is_ok() => {
                // A session opens as its timeline; everything else on the Overview.
                self.view = if t.starts_with("session:") { View::Requests } else { View::Overview };
                self.needs_refresh = true;
                self.path.push(t);
                self.selected = 0;
                true
            }
            _ => false,
        }
    }

    /// The Alerts view's rows as listed: by state (firing first), then by rule.
    pub fn alert_list(&self) -> Vec<&AlertRow> {
        let mut rows: Vec<&AlertRow> = self.alerts.iter().collect();
        rows.sort_by(|a, b| a.state.cmp(&b.state).then_with(|| a.rule.cmp(&b.rule)));
        rows
    }

    /// Firing alerts, most severe first (critical before warning), then by rule.
    pub fn firing(&self) -> Vec<&AlertRow> {
        let rank = |s: &str| match s {
            "critical" => 0,
            "warning" => 1,
            _ => 2,
        };
        let mut f: Vec<&AlertRow> = self.alerts.iter().filter(|a| a.state == AlertState::Firing).collect();
        f.sort_by(|a, b| rank(&a.severity).cmp(&rank(&b.severity)).then_with(|| a.rule.cmp(&b.rule)));
        f
    }

    /// Whether the view is narrowed to one session (its requests read as a timeline).
    pub fn in_session(&self) -> bool {
        self.path.iter().any(|t| t.starts_with("session:"))
    }

    /// The requests the Requests view lists: newest first, slowest first, or, inside a
    /// session, as its timeline (oldest first).
    pub fn request_list(&self) -> Vec<&RecentRequest> {
        let Some(snap) = &self.snapshot else { return Vec::new() };
        let mut list: Vec<&RecentRequest> = snap.requests.iter().collect();
        if self.slowest {
            list.sort_by(|a, b| b.latency_ms.unwrap_or(0.0).total_cmp(&a.latency_ms.unwrap_or(0.0)));
        } else if self.in_session() {
            list.reverse();
        }
        list
    }

    fn columns(&self) -> usize {
        self.rows().first().map_or(1, |r| r.cells.len())
    }

    fn rows_len(&self) -> usize {
        match self.view {
            View::Requests => self.snapshot.as_ref().map_or(0, |s| s.requests.len()),
            View::Alerts => self.alerts.len(),
            _ => self.rows().len(),
        }
    }

    /// The users of the current segment.
    fn segment_rows(&self, mut rows: Vec<Row>) -> Vec<Row> {
        let Some(snap) = &self.snapshot else { return rows };
        // The folded `(other)` row is not a user.
        rows.retain(|r| r.key != crate::stats::OTHER);
        match self.segment {
            Segment::All => {}
            Segment::Power => {
                // Users are listed by requests already; keep the top tenth (at least one).
                rows.sort_by(|a, b| b.sort[1].total_cmp(&a.sort[1]));
                let keep = snap.report.summary.active_users.div_ceil(10).max(1) as usize;
                rows.truncate(keep);
            }
            Segment::New => rows.retain(|r| snap.new_users.contains(&r.key)),
            Segment::AtRisk => rows.retain(|r| {
                self.trend(r).is_some_and(|t| {
                    let (a, b) = t.split_at(t.len() / 2);
                    let (first, second): (u64, u64) = (a.iter().sum(), b.iter().sum());
                    first >= 2 && second * 2 < first
                })
            }),
        }
        rows
    }

    /// A row's sparkline data, if any.
    pub fn trend(&self, row: &Row) -> Option<&Vec<u64>> {
        let snap = self.snapshot.as_ref()?;
        let prefix = match self.view {
            View::Models => "model:",
            View::Providers => "provider:",
            View::Users => "user:",
            View::Properties => "prop:",
            _ => return None,
        };
        snap.trends.get(&format!("{prefix}{}", row.key))
    }

    /// The rows of the current table view, sorted as chosen.
    pub fn rows(&self) -> Vec<Row> {
        let Some(snap) = &self.snapshot else { return Vec::new() };
        let r = &snap.report;
        let mut rows = match self.view {
            View::Models => r.by_model.as_ref().map(|g| group_rows(&g.0)).unwrap_or_default(),
            View::Providers => r.by_provider.as_ref().map(|g| group_rows(&g.0)).unwrap_or_default(),
            View::Properties => r
                .by_property
                .0
                .iter()
                .flat_map(|(k, values)| {
                    group_rows(&values.0).into_iter().map(move |mut row| {
                        row.key = format!("{k}={}", row.key);
                        row.cells[0] = sanitize(&row.key).into_owned();
                        row
                    })
                })
                .collect(),
            View::Users => r
                .users
                .as_ref()
                .map(|users| {
                    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
                    users
                        .iter()
                        .map(|u| Row {
                            key: u.user_id.clone(),
                            cells: vec![
                                sanitize(&u.user_id).into_owned(),
                                u.request_count.to_string(),
                                format!("{:.1}%", u.request_share),
                                format!("${:.4}", u.total_cost),
                                format!("${:.4}", u.cost_per_request),
                                ms(u.avg_latency),
                                ms(u.ttft_avg),
                                format!("{:.1}%", u.error_rate),
                                format!("{:.1}%", u.rate_429),
                                format!("{:.1}%", u.cache_hit_rate),
                                u.tokens.to_string(),
                                u.last_active.get(11..19).unwrap_or("").to_string(),
                            ],
                            sort: vec![
                                0.0,
                                u.request_count as f64,
                                u.request_share,
                                u.total_cost,
                                u.cost_per_request,
                                u.avg_latency.unwrap_or(0.0),
                                u.ttft_avg.unwrap_or(0.0),
                                u.error_rate,
                                u.rate_429,
                                u.cache_hit_rate,
                                u.tokens as f64,
                                0.0,
                            ],
                        })
                        .collect()
                })
                .unwrap_or_default(),
            View::Sessions => snap.sessions.clone(),
            _ => Vec::new(),
        };
        if self.view == View::Users && self.segment != Segment::All {
            rows = self.segment_rows(rows);
        }
        let (col, desc) = self.sort[self.view.index()];
        if rows.first().is_some_and(|r| col < r.cells.len()) {
            rows.sort_by(|a, b| {
                let ord = if a.sort[col] == 0.0 && b.sort[col] == 0.0 {
                    a.cells[col].cmp(&b.cells[col]).reverse()
                } else {
                    a.sort[col].total_cmp(&b.sort[col])
                };
                if desc { ord.reverse() } else { ord }
            });
        }
        rows
    }
}

fn common_prefix<'a>(words: &[&'a str]) -> Option<&'a str> {
    let first = *words.first()?;
    let len = words
        .iter()
        .fold(first.len(), |len, w| first.bytes().zip(w.bytes()).take(len).take_while(|(a, b)| a == b).count());
    Some(&first[..len])
}

/// The columns of the Users table.
pub const USER_COLUMNS: [&str; 12] =
    ["USER", "REQS", "SHARE", "COST", "COST/REQ", "AVG ms", "TTFT", "ERR%", "429%", "CACHE%", "TOKENS", "LAST"];

/// The latency histogram's edges, in ms.
pub const LATENCY_EDGES: [f64; 9] = [100.0, 250.0, 500.0, 1_000.0, 2_000.0, 5_000.0, 10_000.0, 30_000.0, 60_000.0];

/// The columns of the Models, Providers and Properties tables.
pub const GROUP_COLUMNS: [&str; 13] =
    ["NAME", "REQS", "SHARE", "COST", "COST/REQ", "P50", "P95", "P99", "TTFT", "ERR%", "429%", "CACHE%", "TOKENS"];

fn group_rows(groups: &[(String, report::Group)]) -> Vec<Row> {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    groups
        .iter()
        .map(|(name, g)| Row {
            key: name.clone(),
            cells: vec![
                sanitize(name).into_owned(),
                g.requests.to_string(),
                format!("{:.1}%", g.request_share),
                format!("${:.2}", g.cost),
                format!("${:.4}", g.cost_per_request),
                ms(g.latency.p50),
                ms(g.latency.p95),
                ms(g.latency.p99),
                ms(g.ttft_avg),
                format!("{:.1}%", g.error_rate),
                format!("{:.1}%", g.rate_429),
                format!("{:.1}%", g.cache_hit_rate),
                g.tokens.to_string(),
            ],
            sort: vec![
                0.0,
                g.requests as f64,
                g.request_share,
                g.cost,
                g.cost_per_request,
                g.latency.p50.unwrap_or(0.0),
                g.latency.p95.unwrap_or(0.0),
                g.latency.p99.unwrap_or(0.0),
                g.ttft_avg.unwrap_or(0.0),
                g.error_rate,
                g.rate_429,
                g.cache_hit_rate,
                g.tokens as f64,
            ],
        })
        .collect()
}

/// Window lengths as the status bar writes them.
pub fn window_label(w: Micros) -> String {
    crate::time::format_duration(w)
}

/// Seconds to a compact label for chart axes.
pub fn seconds_label(s: i64) -> String {
    crate::time::format_duration(s * MICROS_PER_SEC)
}
