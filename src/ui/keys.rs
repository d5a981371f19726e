//! Keys: one table maps keys to actions (remappable from the config file), and one
//! table says what the help overlay lists. What an action does is in `App::act`.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{App, View};

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
    Sources,
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
        (Char('o'), none, Action::Sources),
    ];
    for (i, c) in ('1'..='8').enumerate() {
        map.push((Char(c), none, Action::View(i)));
    }
    map
}

/// The action bound to `key`. A binding without modifiers also takes Shift for
/// symbols (`?`, `+`, `:` come with Shift on most layouts).
pub fn action(keymap: &[(KeyCode, KeyModifiers, Action)], key: KeyEvent) -> Option<Action> {
    keymap
        .iter()
        .find(|(c, m, _)| {
            *c == key.code
                && (key.modifiers == *m
                    || (*m == KeyModifiers::NONE
                        && key.modifiers == KeyModifiers::SHIFT
                        && matches!(c, KeyCode::Char(ch) if !ch.is_ascii_alphabetic())))
        })
        .map(|(_, _, a)| *a)
}

/// Ctrl-C quits from anywhere: a prompt, a popup, the help.
pub fn is_interrupt(key: KeyEvent) -> bool {
    key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL)
}

/// The keys, as the help overlay lists them.
pub const HELP: [(&str, &str); 17] = [
    ("q", "quit (closes a popup first)"),
    ("Ctrl-C", "quit from anywhere"),
    ("1–8 Tab S-Tab", "views"),
    ("↑↓ jk PgUp PgDn g G", "move"),
    ("Enter", "drill down; open a request or alert"),
    ("Esc", "back one step (view and cursor)"),
    ("/", "filter: model:gpt-4o* status:5xx"),
    ("s  S", "sort by the next column, reverse"),
    ("[ ]  - +", "shorter / longer window"),
    ("Space", "pause the picture (ingest goes on)"),
    ("l", "requests: slowest / newest first"),
    ("p", "users: segment"),
    ("o", "sources: state, errors, bad lines"),
    ("e  y", "export the view; copy the id"),
    (":", "command (:model x, :window 15m)"),
    ("?", "this help"),
    ("filter terms", "model: provider: user: session: prop.K=V status: cache:hit latency>5s ttft>=800 cost>0.01 -term"),
];

impl App {
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
                if let Some(i) = self.tab_spans.iter().position(|(a, b)| (*a..*b).contains(&m.column))
                    && m.row == self.tab_y
                {
                    self.set_view(View::ALL[i]);
                } else if let Some((y0, first)) = self.first_row
                    && m.row >= y0
                {
                    let i = first + usize::from(m.row - y0);
                    if i < self.rows_len() {
                        self.select(i);
                    }
                }
            }
            _ => {}
        }
    }
}
