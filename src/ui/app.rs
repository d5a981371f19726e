//! The console's state and what actions do to it. No terminal here: tests drive
//! `App` directly and check the state, and the renderer only reads it.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

pub use super::keys::{Action, default_keymap};
use super::keys::{action, is_interrupt};
pub use super::rows::{GROUP_COLUMNS, Row, SESSION_COLUMNS, USER_COLUMNS};

use super::snapshot::Want;
pub use super::snapshot::{ChartPoint, LATENCY_EDGES, ListMode, Scope, Snapshot};
pub use super::view::{Segment, View};
use crate::engine::RecentRequest;
use crate::filter::Filter;
use crate::live::{Live, SourceStatus};
use crate::text::sanitize;
use crate::time::{MICROS_PER_SEC, Micros};

/// A line of text being typed: a filter (`/`) or a command (`:`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prompt {
    pub text: String,
    pub error: Option<String>,
    pub command: bool,
    /// Position in the command history while browsing it with ↑ ↓.
    pub history: Option<usize>,
    /// What Tab found when there was more than one match.
    pub candidates: Vec<String>,
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

/// The sources and ingest, for the status bar: kept current while the picture is paused.
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

/// A box over the view; keys go to it first.
#[derive(Debug, Clone, PartialEq)]
pub enum Overlay {
    Help,
    /// A request opened with Enter.
    Detail(Box<RecentRequest>),
    /// Every source: state, counts, last error, first bad lines.
    Sources,
}

/// Where Esc goes back to: a view, its filter and its cursor.
#[derive(Debug, Clone, PartialEq)]
struct Place {
    view: View,
    path_len: usize,
    selected: usize,
    anchor: Option<String>,
}

pub struct App {
    pub view: View,
    pub windows: Vec<Micros>,
    pub window: usize,
    /// Events ingested when the picture was paused.
    pub paused: Option<u64>,
    pub selected: usize,
    /// What the cursor is on (a row's name, a request's identity): the cursor follows
    /// it as rows move.
    anchor: Option<String>,
    /// Per view: sort column and whether descending.
    pub sort: [(usize, bool); 8],
    /// The drill-down path; each entry is a filter term added by Enter, `/` or `:`.
    pub path: Vec<String>,
    back: Vec<Place>,
    pub prompt: Option<Prompt>,
    pub overlay: Option<Overlay>,
    pub slowest: bool,
    pub snapshot: Option<Snapshot>,
    pub quit: bool,
    pub(super) keymap: Vec<(KeyCode, KeyModifiers, Action)>,
    /// Rows on screen in the current table (set by the renderer, for paging).
    pub page: usize,
    /// Show times in UTC rather than local time.
    pub utc: bool,
    /// The snapshot lacks what the view shows: take a new one (also while paused).
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
    pub tab_y: u16,
    pub first_row: Option<(u16, usize)>,
    /// Alert rules and their states; firing ones make the banner.
    pub alerts: Vec<AlertRow>,
    pub alert_info: AlertInfo,
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
            anchor: None,
            sort: View::ALL.map(View::default_sort),
            path: Vec::new(),
            back: Vec::new(),
            prompt: None,
            overlay: None,
            slowest: false,
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
            tab_y: 0,
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

    /// The status bar's numbers, then (unless paused) a new snapshot.
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
        let list = (self.view == View::Requests).then(|| self.list_mode());
        let want = Want { window: self.window(), overview: self.view == View::Overview, list };
        self.snapshot = Some(Snapshot::take(live, want));
        self.follow_anchor();
    }

    fn list_mode(&self) -> ListMode {
        if self.slowest {
            ListMode::Slowest
        } else if self.in_session() {
            ListMode::Timeline
        } else {
            ListMode::Newest
        }
    }

    /// Puts the cursor back on what it was on, wherever that moved to.
    fn follow_anchor(&mut self) {
        let len = self.rows_len();
        if let Some(a) = self.anchor.clone()
            && let Some(i) = (0..len).find(|&i| self.key_at(i).as_deref() == Some(a.as_str()))
        {
            self.selected = i;
            return;
        }
        self.selected = self.selected.min(len.saturating_sub(1));
    }

    /// What identifies row `i` of the current view.
    fn key_at(&self, i: usize) -> Option<String> {
        match self.view {
            View::Overview => None,
            View::Requests => self.request_list().get(i).map(|r| {
                let (t, id, model) = r.identity();
                format!("{t}\u{1f}{id}\u{1f}{model}")
            }),
            View::Alerts => self.alert_list().get(i).map(|a| format!("{}\u{1f}{:?}", a.rule, a.group)),
            _ => self.rows().get(i).map(|r| r.key.clone()),
        }
    }

    /// Moves the cursor to row `i` and remembers what is there.
    pub(super) fn select(&mut self, i: usize) {
        self.selected = i;
        self.anchor = self.key_at(i);
    }

    /// What a key does. Returns whether the filter changed (the caller rebuilds the
    /// filtered engine and takes a new snapshot).
    pub fn key(&mut self, key: KeyEvent) -> bool {
        if is_interrupt(key) {
            self.quit = true;
            return false;
        }
        if let Some(p) = self.prompt.clone() {
            return self.prompt_key(key, p);
        }
        let action = action(&self.keymap, key);
        if let Some(overlay) = &self.overlay {
            match action {
                Some(Action::Quit | Action::Back) => self.overlay = None,
                Some(Action::Help) if *overlay == Overlay::Help => self.overlay = None,
                Some(Action::Sources) if *overlay == Overlay::Sources => self.overlay = None,
                Some(Action::DrillDown) if matches!(overlay, Overlay::Detail(_)) => self.overlay = None,
                Some(Action::Copy) => {
                    if let Overlay::Detail(r) = overlay {
                        let id = r.request_id.clone();
                        self.copy_text(id);
                    }
                }
                // Another view or help replaces the popup; other keys are the popup's.
                Some(a @ (Action::View(_) | Action::Help | Action::Sources)) => {
                    self.overlay = None;
                    return self.act(a);
                }
                _ => {}
            }
            return false;
        }
        match action {
            Some(a) => self.act(a),
            None => false,
        }
    }

    pub(super) fn act(&mut self, action: Action) -> bool {
        let rows = self.rows_len();
        let last = rows.saturating_sub(1);
        match action {
            Action::Quit => self.quit = true,
            Action::View(i) => self.set_view(View::ALL[i.min(7)]),
            Action::NextView => self.set_view(View::ALL[(self.view.index() + 1) % 8]),
            Action::PrevView => self.set_view(View::ALL[(self.view.index() + 7) % 8]),
            Action::Up => self.select(self.selected.saturating_sub(1)),
            Action::Down => self.select((self.selected + 1).min(last)),
            Action::PageUp => self.select(self.selected.saturating_sub(self.page.max(1))),
            Action::PageDown => self.select((self.selected + self.page.max(1)).min(last)),
            Action::Home => self.select(0),
            Action::End => self.select(last),
            Action::DrillDown => return self.drill_down(),
            Action::Back => return self.go_back(),
            Action::Filter => self.prompt = Some(Prompt::default()),
            Action::Command => self.prompt = Some(Prompt { command: true, ..Prompt::default() }),
            Action::Segment => {
                if self.view == View::Users {
                    self.segment = self.segment.next();
                    self.select(0);
                }
            }
            Action::SortNext => {
                let (col, desc) = self.sort[self.view.index()];
                let cols = self.columns().max(1);
                self.sort[self.view.index()] = ((col + 1) % cols, desc);
                self.follow_anchor();
            }
            Action::SortReverse => {
                let s = &mut self.sort[self.view.index()];
                s.1 = !s.1;
                self.follow_anchor();
            }
            Action::ZoomIn | Action::ZoomOut => {
                self.window = match action {
                    Action::ZoomIn => self.window.saturating_sub(1),
                    _ => (self.window + 1).min(self.windows.len() - 1),
                };
                // While paused the picture stays; the new window applies on resume.
                self.needs_refresh = self.paused.is_none();
            }
            Action::Pause => {
                self.paused = match self.paused {
                    Some(_) => {
                        self.needs_refresh = true;
                        None
                    }
                    None => Some(self.status.total),
                }
            }
            Action::Help => self.overlay = Some(Overlay::Help),
            Action::Sources => self.overlay = Some(Overlay::Sources),
            Action::SlowestMode => {
                if self.view == View::Requests {
                    self.slowest = !self.slowest;
                    self.needs_refresh = true;
                    self.selected = 0;
                    self.anchor = None;
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
                if let Some(t) = text {
                    self.copy_text(t);
                }
            }
        }
        false
    }

    fn copy_text(&mut self, text: String) {
        if text.is_empty() {
            self.message = Some(("nothing to copy: this request has no id".into(), std::time::Instant::now()));
            return;
        }
        self.message = Some((format!("copied {}", sanitize(&text)), std::time::Instant::now()));
        self.copy = Some(text);
    }

    pub(super) fn set_view(&mut self, v: View) {
        if v != self.view {
            self.view = v;
            self.selected = 0;
            self.anchor = None;
            self.needs_refresh = true;
        }
    }

    /// Narrows to `term` (already checked), opening `view`; Esc comes back here.
    pub(super) fn push_term(&mut self, term: String, view: View) {
        self.back.push(Place {
            view: self.view,
            path_len: self.path.len(),
            selected: self.selected,
            anchor: self.anchor.clone(),
        });
        self.path.push(term);
        self.set_view(view);
        self.needs_refresh = true;
        self.selected = 0;
        self.anchor = None;
    }

    /// Clears the path, and the way back along it.
    pub(super) fn clear_path(&mut self) -> bool {
        self.back.clear();
        !std::mem::take(&mut self.path).is_empty()
    }

    /// Esc: one step back, to the view, filter and row it came from.
    fn go_back(&mut self) -> bool {
        let Some(place) = self.back.pop() else {
            return self.path.pop().is_some();
        };
        let changed = self.path.len() != place.path_len;
        self.path.truncate(place.path_len);
        self.set_view(place.view);
        self.needs_refresh = true;
        self.selected = place.selected;
        self.anchor = place.anchor;
        changed
    }

    /// Enter: narrow everything to the selected row (a model, provider, user, session
    /// or property value), or open the selected request.
    fn drill_down(&mut self) -> bool {
        if self.snapshot.is_none() {
            return false;
        }
        let term = match self.view {
            View::Models | View::Providers | View::Users | View::Properties | View::Sessions => {
                let rows = self.rows();
                let Some(row) = rows.get(self.selected) else { return false };
                if row.is_other() {
                    self.message = Some((
                        "(other) folds many names together: it cannot be opened".into(),
                        std::time::Instant::now(),
                    ));
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
                self.overlay = list.get(self.selected).map(|r| Overlay::Detail(Box::new((*r).clone())));
                return false;
            }
            // An alert opens as the traffic it watches: its filter and group.
            View::Alerts => self.alert_list().get(self.selected).and_then(|a| a.drill.clone()),
            View::Overview => None,
        };
        match term {
            Some(t)
                if self.path.iter().chain([&t]).cloned().collect::<Vec<_>>().join(" ").parse::<Filter>().is_ok() =>
            {
                // A session opens as its timeline; everything else on the Overview.
                let view = if t.starts_with("session:") { View::Requests } else { View::Overview };
                self.push_term(t, view);
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

    /// The requests the Requests view lists, in the snapshot's order.
    pub fn request_list(&self) -> Vec<&RecentRequest> {
        self.snapshot.as_ref().map(|s| s.requests.iter().collect()).unwrap_or_default()
    }

    fn columns(&self) -> usize {
        self.rows().first().map_or(1, |r| r.cells.len())
    }

    pub(super) fn rows_len(&self) -> usize {
        match self.view {
            View::Requests => self.snapshot.as_ref().map_or(0, |s| s.requests.len()),
            View::Alerts => self.alerts.len(),
            View::Overview => 0,
            _ => self.rows().len(),
        }
    }
}

/// Window lengths as the status bar writes them.
pub fn window_label(w: Micros) -> String {
    crate::time::format_duration(w)
}

/// Seconds to a compact label for chart axes.
pub fn seconds_label(s: i64) -> String {
    crate::time::format_duration(s * MICROS_PER_SEC)
}
