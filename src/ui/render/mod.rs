//! Drawing: one function a screen region, reading only the `App` and its snapshot.
//!
//! ```text
//!  alert banner (while alerts fire)
//!  tabs ─────────────────────────────────────── window
//!  breadcrumb and what the numbers cover (when drilled down) / prompt
//!  ┌ body: the view ───────────────────────────────────┐
//!  │ overview.rs: KPI tiles, charts, bars               │
//!  │ table.rs: Models, Providers, Users, Sessions, …    │
//!  │ alerts.rs: rules, history, deliveries              │
//!  └────────────────────────────────────────────────────┘
//!  key hints (by priority: what fits)
//!  status: sources and their problems · ingest rate · paused · time
//! ```
//! Popups (help, a request, the sources panel) are in `popup.rs`.

mod alerts;
mod overview;
mod popup;
mod status;
mod table;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::app::{App, Overlay, Scope, View, window_label};
use super::format::{fit, int, width};
use super::theme::Theme;
use crate::text::sanitize;

/// Smallest terminal the console draws in; below it says so.
pub const MIN_SIZE: (u16, u16) = (60, 15);

pub fn draw(f: &mut Frame, app: &mut App, theme: &Theme) {
    let area = f.area();
    if area.width < MIN_SIZE.0 || area.height < MIN_SIZE.1 {
        let msg = format!("terminal too small ({}×{}, need {}×{})", area.width, area.height, MIN_SIZE.0, MIN_SIZE.1);
        f.render_widget(Paragraph::new(fit(&msg, area.width as usize).into_owned()), area);
        return;
    }
    let crumbs_h = u16::from(!app.path.is_empty() || app.prompt.is_some());
    let prompt_h = u16::from(app.prompt.as_ref().is_some_and(|p| p.error.is_some() || !p.candidates.is_empty()));
    let banner_h = u16::from(!app.firing().is_empty());
    let [banner, tabs, crumbs, prompt_extra, body, hints, status] = Layout::vertical([
        Constraint::Length(banner_h),
        Constraint::Length(1),
        Constraint::Length(crumbs_h),
        Constraint::Length(prompt_h),
        Constraint::Min(5),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    app.first_row = None;
    alerts::draw_banner(f, app, theme, banner);
    draw_tabs(f, app, theme, tabs);
    draw_crumbs(f, app, theme, crumbs, prompt_extra);
    match &app.snapshot {
        None => f.render_widget(Paragraph::new("waiting for data…").style(theme.dim()), body),
        Some(_) => match app.view {
            View::Overview => overview::draw(f, app, theme, body),
            View::Requests => table::draw_requests(f, app, theme, body),
            View::Alerts => alerts::draw(f, app, theme, body),
            _ => table::draw(f, app, theme, body),
        },
    }
    draw_hints(f, app, theme, hints);
    status::draw(f, app, theme, status);
    match app.overlay.clone() {
        Some(Overlay::Detail(r)) => popup::detail(f, &r, app.utc, theme, area),
        Some(Overlay::Help) => popup::help(f, theme, area),
        Some(Overlay::Sources) => popup::sources(f, app, theme, area),
        None => {}
    }
}

/// A line in the middle of the screen while there is nothing else to show yet.
pub fn draw_loading(f: &mut Frame, text: &str, theme: &Theme) {
    let area = f.area();
    let y = area.y + area.height / 2;
    let line = Rect { x: area.x, y, width: area.width, height: 1.min(area.height) };
    f.render_widget(Paragraph::new(fit(text, area.width as usize).into_owned()).style(theme.dim()).centered(), line);
}

fn draw_tabs(f: &mut Frame, app: &mut App, theme: &Theme, area: Rect) {
    let mut spans = vec![Span::styled(" tokentop ", theme.accent())];
    // While paused, a new window applies on resume: say so rather than show old
    // numbers under the new label.
    let shown = app.snapshot.as_ref().map_or(app.window(), |s| s.window);
    let right = if app.paused.is_some() && shown != app.window() {
        format!(" window {} → {} on resume ", window_label(shown), window_label(app.window()))
    } else {
        format!(" window {} ", window_label(app.window()))
    };
    // Full tab names when they fit beside the window, short ones otherwise.
    let compact = (area.width as usize) < 100 + width(&right);
    let mut x = area.x + 10;
    let mut tab_spans = Vec::with_capacity(8);
    for (i, v) in View::ALL.iter().enumerate() {
        let label = if compact { format!(" {}{} ", i + 1, v.short()) } else { format!(" {} {} ", i + 1, v.title()) };
        let style = if *v == app.view { theme.selected() } else { Style::default() };
        let w = width(&label) as u16;
        tab_spans.push((x, x + w));
        x += w;
        spans.push(Span::styled(label, style));
    }
    let used: usize = spans.iter().map(|s| s.width()).sum();
    let pad = (area.width as usize).saturating_sub(used + width(&right));
    spans.push(Span::raw(" ".repeat(pad)));
    spans.push(Span::styled(right, theme.accent()));
    f.render_widget(Paragraph::new(Line::from(spans)), area);
    app.tab_spans = tab_spans;
    app.tab_y = area.y;
}

/// The drill-down path and what its numbers cover, or the prompt being typed (with
/// its error or Tab's candidates on the line below).
fn draw_crumbs(f: &mut Frame, app: &App, theme: &Theme, area: Rect, extra: Rect) {
    if area.height == 0 {
        return;
    }
    let line = if let Some(p) = &app.prompt {
        let label = if p.command { ":" } else { "/ filter: " };
        if extra.height > 0 {
            let below = match &p.error {
                Some(e) => Span::styled(fit(&sanitize(e), extra.width as usize).into_owned(), theme.bad()),
                None => Span::styled(
                    fit(&sanitize(&p.candidates.join("  ")), extra.width as usize).into_owned(),
                    theme.dim(),
                ),
            };
            f.render_widget(Paragraph::new(Line::from(below)), extra);
        }
        Line::from(vec![Span::styled(label, theme.accent()), Span::raw(sanitize(&p.text).into_owned()), Span::raw("▏")])
    } else {
        let mut spans = vec![Span::styled("All", theme.accent())];
        for term in &app.path {
            spans.push(Span::raw(" › "));
            spans.push(Span::styled(sanitize(term).into_owned(), theme.accent()));
        }
        if let Some(s) = &app.snapshot {
            let (text, style) = coverage(s.scope, s.window, app.utc, app.view);
            spans.push(Span::styled(format!("   {text}"), style(theme)));
        }
        let used: usize = spans.iter().map(|s| s.width()).sum();
        let hint = "  Esc back";
        if used + hint.len() <= area.width as usize {
            spans.push(Span::styled(hint, theme.dim()));
        }
        Line::from(spans)
    };
    f.render_widget(Paragraph::new(line), area);
}

/// What a drilled-down view's numbers cover, in words, and how to show it.
fn coverage(scope: Scope, window: i64, utc: bool, view: View) -> (String, fn(&Theme) -> Style) {
    let w = window_label(window);
    match scope {
        Scope::All => (String::new(), Theme::dim),
        Scope::Groups { known } if !known.percentiles => {
            (format!("whole {w}; averages only (no percentiles kept per user or session)"), Theme::dim)
        }
        Scope::Groups { .. } => (format!("whole {w}"), Theme::dim),
        Scope::Since { whole: true, .. } => (format!("whole {w}"), Theme::dim),
        Scope::Since { from, replayed, .. } => {
            let more = if view == View::Overview { "" } else { "; Overview has the whole window for one name" };
            (
                format!(
                    "covers since {} only ({} recent requests replayed){more}",
                    clock(from, utc),
                    int(replayed as u64)
                ),
                Theme::warn,
            )
        }
    }
}

/// A time of day, local or UTC.
pub(super) fn clock(t: i64, utc: bool) -> String {
    chrono::DateTime::from_timestamp_micros(t)
        .map(|d| {
            if utc {
                d.format("%H:%M:%S").to_string()
            } else {
                d.with_timezone(&chrono::Local).format("%H:%M:%S").to_string()
            }
        })
        .unwrap_or_default()
}

/// Key hints, most useful first; those that do not fit are left out whole (`?` is
/// always there: it lists the rest).
fn draw_hints(f: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    if let Some((msg, at)) = &app.message
        && at.elapsed() < std::time::Duration::from_secs(5)
    {
        f.render_widget(Paragraph::new(fit(msg, area.width as usize).into_owned()).style(theme.accent()), area);
        return;
    }
    let hints: &[(&str, &str)] = if app.prompt.as_ref().is_some_and(|p| p.command) {
        &[("Enter", "run"), ("Esc", "cancel"), ("Tab", "complete"), ("↑↓", "history")]
    } else if app.prompt.is_some() {
        &[("Enter", "apply"), ("Esc", "cancel")]
    } else if matches!(app.overlay, Some(Overlay::Detail(_))) {
        &[("Esc", "close"), ("y", "copy id"), ("Ctrl-C", "quit")]
    } else if app.overlay.is_some() {
        &[("Esc", "close"), ("Ctrl-C", "quit")]
    } else {
        let enter = match app.view {
            View::Requests => ("Enter", "details"),
            View::Overview => ("1-8", "views"),
            _ => ("Enter", "drill down"),
        };
        let back: (&str, &str) = if app.path.is_empty() { ("/", "filter") } else { ("Esc", "back") };
        &[
            ("?", "help"),
            ("q", "quit"),
            enter,
            back,
            ("[ ]", "window"),
            ("Space", if app.paused.is_some() { "resume" } else { "pause" }),
            ("1-8", "views"),
            ("/", "filter"),
            ("s", "sort"),
            ("o", "sources"),
            (":", "command"),
        ]
    };
    let mut chosen: Vec<usize> = Vec::new();
    let mut used = 0;
    for (i, (k, v)) in hints.iter().enumerate() {
        if chosen.iter().any(|&j| hints[j] == hints[i]) {
            continue;
        }
        let w = width(k) + 1 + width(v) + 3;
        if used + w <= area.width as usize + 3 {
            used += w;
            chosen.push(i);
        }
    }
    // Shown in a steady order: on the main screen, help and quit last, where people
    // look for them.
    if app.prompt.is_none() && app.overlay.is_none() {
        chosen.sort_by_key(|&i| if i < 2 { 100 + i } else { i });
    }
    let mut spans = Vec::new();
    for (n, i) in chosen.iter().enumerate() {
        if n > 0 {
            spans.push(Span::styled(" · ", theme.dim()));
        }
        spans.push(Span::styled(hints[*i].0, theme.accent()));
        spans.push(Span::styled(format!(" {}", hints[*i].1), theme.dim()));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}
