//! Tables (Models, Providers, Users, Sessions, Properties) and the request list.
//!
//! Columns are sized from what they hold. When the terminal is too narrow, the least
//! important columns are left out whole, so that no number is ever cut; names give
//! up width down to a minimum and are cut with `…`.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::Span;
use ratatui::widgets::{Block, Borders, Cell, Row, Table, TableState};

use super::clock;
use crate::text::sanitize;
use crate::ui::app::{App, GROUP_COLUMNS, ListMode, SESSION_COLUMNS, Scope, USER_COLUMNS, View, window_label};
use crate::ui::format::{cost, count, fit, int, ms, width};
use crate::ui::rows::{Column, Kind};
use crate::ui::theme::Theme;

/// Space between columns.
const GAP: usize = 1;
/// Names are cut no shorter than this (with `…`).
const NAME_MIN: usize = 18;
/// Longer text no shorter than this.
const TEXT_MIN: usize = 8;
/// Text up to this long is shown whole or not at all.
const SHORT_TEXT: usize = 12;
/// Names are never wider than this.
const NAME_MAX: usize = 48;

/// The columns shown, as (index, width), in their order. `cells` are the rows'
/// texts; `present[i]` is false for a column with nothing to say (leave it out).
pub fn fit_columns(
    cols: &[Column],
    headers: &[String],
    cells: &[Vec<String>],
    present: &[bool],
    room: usize,
) -> Vec<(usize, usize)> {
    let natural: Vec<usize> = (0..cols.len())
        .map(|i| {
            let widest = cells.iter().map(|r| r.get(i).map_or(0, |c| width(c))).max().unwrap_or(0);
            let w = widest.max(width(&headers[i]));
            if cols[i].kind == Kind::Name { w.min(NAME_MAX) } else { w }
        })
        .collect();
    // Short text (ids, times) is never cut: the column goes whole before that.
    let min = |i: usize| match cols[i].kind {
        Kind::Num => natural[i],
        Kind::Name => natural[i].min(NAME_MIN),
        Kind::Text if natural[i] <= SHORT_TEXT => natural[i],
        Kind::Text => TEXT_MIN,
    };
    let mut shown: Vec<usize> = (0..cols.len()).filter(|&i| present[i]).collect();
    let need = |shown: &[usize]| shown.iter().map(|&i| min(i) + GAP).sum::<usize>().saturating_sub(GAP);
    // The least important goes first; among equals, the rightmost. The most
    // important (priority 0) stay while the name can still give way.
    while need(&shown) > room && shown.iter().any(|&i| cols[i].priority > 0) {
        let (pos, _) =
            shown.iter().enumerate().max_by_key(|(pos, i)| (cols[**i].priority, *pos)).expect("a column to drop");
        shown.remove(pos);
    }
    let mut widths: Vec<usize> = shown.iter().map(|&i| min(i)).collect();
    if need(&shown) > room
        && let Some(k) = shown.iter().position(|&i| cols[i].kind == Kind::Name)
    {
        let others = need(&shown) - widths[k];
        widths[k] = room.saturating_sub(others).max(1);
    }
    let used = widths.iter().map(|w| w + GAP).sum::<usize>().saturating_sub(GAP);
    let mut left = room.saturating_sub(used);
    // What is left goes to names first, then to other text, up to what they hold.
    for kind in [Kind::Name, Kind::Text] {
        for (k, &i) in shown.iter().enumerate() {
            if cols[i].kind == kind {
                let more = (natural[i] - widths[k]).min(left);
                widths[k] += more;
                left -= more;
            }
        }
    }
    shown.into_iter().zip(widths).collect()
}

pub(super) fn status_style(status: u16, theme: &Theme) -> Style {
    match status {
        200..=299 => theme.good(),
        429 => theme.warn(),
        0 | 400.. => theme.bad(),
        _ => Style::default(),
    }
}

/// A sparkline of block characters, one a value.
pub(super) fn sparkline(values: &[u64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    values.iter().map(|&v| if v == 0 { ' ' } else { BARS[((v * 7) / max) as usize] }).collect()
}

/// What a table's rows cover, for its title.
fn scope_note(app: &App) -> String {
    match app.snapshot.as_ref().map(|s| s.scope) {
        Some(Scope::Since { from, whole: false, .. }) => format!(" · since {} only", clock(from, app.utc)),
        _ => String::new(),
    }
}

pub(super) fn draw(f: &mut Frame, app: &mut App, theme: &Theme, area: Rect) {
    let rows = app.rows();
    let Some(snap) = &app.snapshot else { return };
    let cols: &[Column] = match app.view {
        View::Users => &USER_COLUMNS,
        View::Sessions => &SESSION_COLUMNS,
        _ => &GROUP_COLUMNS,
    };
    let (sort_col, desc) = app.sort[app.view.index()];
    let headers: Vec<String> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mark = if i == sort_col { if desc { "▼" } else { "▲" } } else { "" };
            format!("{}{mark}", c.name)
        })
        .collect();
    // A column of zeros for every row (no unpriced requests, no session names) says nothing.
    let present: Vec<bool> = (0..cols.len())
        .map(|i| match cols[i].name {
            "UNPRICED" => rows.iter().any(|r| r.values[i].is_some_and(|v| v > 0.0)),
            "NAME" if app.view == View::Sessions => rows.iter().any(|r| !r.cells[i].is_empty()),
            _ => true,
        })
        .collect();
    let cells: Vec<Vec<String>> = rows.iter().map(|r| r.cells.clone()).collect();
    // A sparkline of each row's traffic over the window, where there is room to spare.
    let trends = rows.first().is_some_and(|r| app.trend(r).is_some());
    let fitted = fit_columns(cols, &headers, &cells, &present, area.width as usize);
    let used: usize = fitted.iter().map(|(_, w)| w + GAP).sum();
    let all_shown = fitted.len() == present.iter().filter(|p| **p).count();
    let trend_w = if trends && all_shown && area.width as usize >= used + 15 { 14 } else { 0 };
    let mut widths: Vec<Constraint> = fitted.iter().map(|(_, w)| Constraint::Length(*w as u16)).collect();
    if trend_w > 0 {
        widths.push(Constraint::Length(trend_w));
    }
    let header = Row::new(
        fitted
            .iter()
            .map(|(i, w)| Cell::from(fit(&headers[*i], *w).into_owned()))
            .chain((trend_w > 0).then(|| Cell::from("TREND"))),
    )
    .style(theme.header());
    let body: Vec<Row> = rows
        .iter()
        .map(|r| {
            let cells = fitted.iter().map(|(i, w)| {
                let text = fit(&r.cells[*i], *w).into_owned();
                let style = if r.cells[*i] == "unpriced" { theme.warn() } else { Style::default() };
                Cell::from(Span::styled(text, style))
            });
            let spark = (trend_w > 0)
                .then(|| Cell::from(Span::styled(sparkline(app.trend(r).map_or(&[][..], |t| t)), theme.series(0))));
            Row::new(cells.chain(spark))
        })
        .collect();
    let hidden = present.iter().filter(|p| **p).count() - fitted.len();
    let more =
        if hidden > 0 { format!(" · {hidden} columns hidden (wider terminal shows them)") } else { String::new() };
    let title = match app.view {
        View::Users => {
            let total = snap.report.summary.active_users;
            let listed = if app.segment == crate::ui::app::Segment::All && (rows.len() as u64) < total {
                format!("{} of {} users (top by requests)", int(rows.len() as u64), int(total))
            } else {
                format!("{} rows", int(rows.len() as u64))
            };
            format!(
                " Users · {} · {listed}{} · p segment · Enter drill down{more} ",
                app.segment.label(),
                scope_note(app)
            )
        }
        View::Sessions => {
            let total = snap.report.sessions.as_ref().map_or(0, |s| s.total_sessions);
            let listed = if (rows.len() as u64) < total {
                format!("{} of {} sessions (busiest)", int(rows.len() as u64), int(total))
            } else {
                format!("{} sessions", int(rows.len() as u64))
            };
            format!(" Sessions · {listed}{} · Enter timeline{more} ", scope_note(app))
        }
        _ => format!(
            " {} · {} rows · {}{} · s sort · Enter drill down{more} ",
            app.view.title(),
            int(rows.len() as u64),
            window_label(snap.window),
            scope_note(app)
        ),
    };
    app.page = area.height.saturating_sub(2) as usize;
    let offset = app.selected.saturating_sub(app.page.saturating_sub(1));
    app.first_row = Some((area.y + 2, offset));
    let empty = body.is_empty();
    let table =
        Table::new(body, widths).header(header).column_spacing(GAP as u16).row_highlight_style(theme.selected()).block(
            Block::default()
                .borders(Borders::TOP)
                .title(Span::styled(fit(&title, area.width as usize).into_owned(), theme.dim())),
        );
    let mut state =
        TableState::default().with_selected((!empty).then_some(app.selected.min(rows.len().saturating_sub(1))));
    f.render_stateful_widget(table, area, &mut state);
}

/// The request list's columns.
const REQUEST_COLUMNS: [Column; 9] = [
    Column { name: "TIME", kind: Kind::Num, priority: 1 },
    Column { name: "MODEL", kind: Kind::Name, priority: 0 },
    Column { name: "PROVIDER", kind: Kind::Text, priority: 6 },
    Column { name: "STATUS", kind: Kind::Num, priority: 0 },
    Column { name: "LATENCY", kind: Kind::Num, priority: 1 },
    Column { name: "TTFT", kind: Kind::Num, priority: 5 },
    Column { name: "TOKENS", kind: Kind::Num, priority: 4 },
    Column { name: "COST", kind: Kind::Num, priority: 2 },
    Column { name: "USER", kind: Kind::Text, priority: 3 },
];

pub(super) fn draw_requests(f: &mut Frame, app: &mut App, theme: &Theme, area: Rect) {
    app.page = area.height.saturating_sub(2) as usize;
    let skip = app.selected.saturating_sub(app.page.saturating_sub(1));
    app.first_row = Some((area.y + 2, skip));
    let Some(snap) = &app.snapshot else { return };
    let list = &snap.requests;
    let timeline = snap.list == ListMode::Timeline;
    let mut headers: Vec<String> = REQUEST_COLUMNS.iter().map(|c| c.name.to_string()).collect();
    if timeline {
        headers[2] = "PATH".into();
    }
    let visible: Vec<Vec<String>> = list
        .iter()
        .skip(skip)
        .take(app.page.max(1))
        .map(|r| {
            vec![
                clock(r.created_at, app.utc),
                sanitize(&r.model).into_owned(),
                sanitize(if timeline { &r.session_path } else { &r.provider }).into_owned(),
                r.status.to_string(),
                ms(r.latency_ms),
                ms(r.ttft_ms),
                count(r.prompt_tokens + r.completion_tokens),
                if r.cache_hit { "cached".into() } else { cost(r.cost, r.unpriced) },
                sanitize(&r.user_id).into_owned(),
            ]
        })
        .collect();
    let present = [true; 9];
    let fitted = fit_columns(&REQUEST_COLUMNS, &headers, &visible, &present, area.width as usize);
    let widths: Vec<Constraint> = fitted.iter().map(|(_, w)| Constraint::Length(*w as u16)).collect();
    let header =
        Row::new(fitted.iter().map(|(i, w)| Cell::from(fit(&headers[*i], *w).into_owned()))).style(theme.header());
    let rows: Vec<Row> = list
        .iter()
        .skip(skip)
        .zip(&visible)
        .map(|(r, cells)| {
            Row::new(fitted.iter().map(|(i, w)| {
                let text = fit(&cells[*i], *w).into_owned();
                match *i {
                    3 => Cell::from(Span::styled(text, status_style(r.status, theme))),
                    _ => Cell::from(text),
                }
            }))
        })
        .collect();
    let w = window_label(snap.window);
    let what = match snap.list {
        ListMode::Slowest => format!("slowest {} of the {w} window", int(list.len() as u64)),
        ListMode::Timeline => format!("session timeline, oldest first · {} requests", int(list.len() as u64)),
        ListMode::Newest => {
            let total = snap.report.summary.total_requests;
            if (list.len() as u64) < total {
                format!("newest {} of {} in {w}", int(list.len() as u64), int(total))
            } else {
                format!("{} in {w}, newest first", int(list.len() as u64))
            }
        }
    };
    let frozen = if app.paused.is_some() { " · paused" } else { "" };
    let title = format!(" Requests · {what}{frozen} · l slowest/newest · Enter details · y copy id ");
    let selected = app.selected.saturating_sub(skip);
    let table =
        Table::new(rows, widths).header(header).column_spacing(GAP as u16).row_highlight_style(theme.selected()).block(
            Block::default()
                .borders(Borders::TOP)
                .title(Span::styled(fit(&title, area.width as usize).into_owned(), theme.dim())),
        );
    let mut state = TableState::default().with_selected((!list.is_empty()).then_some(selected));
    f.render_stateful_widget(table, area, &mut state);
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLS: [Column; 4] = [
        Column { name: "NAME", kind: Kind::Name, priority: 0 },
        Column { name: "REQS", kind: Kind::Num, priority: 0 },
        Column { name: "TOKENS", kind: Kind::Num, priority: 3 },
        Column { name: "COST", kind: Kind::Num, priority: 1 },
    ];

    fn fit_at(room: usize) -> Vec<(usize, usize)> {
        let headers: Vec<String> = COLS.iter().map(|c| c.name.to_string()).collect();
        let cells =
            vec![vec!["claude-sonnet-4-20250514".to_string(), "16,633".into(), "16.6M".into(), "$1.23k".into()]];
        fit_columns(&COLS, &headers, &cells, &[true; 4], room)
    }

    #[test]
    fn numbers_are_never_cut_columns_go_first() {
        assert_eq!(fit_at(80), vec![(0, 24), (1, 6), (2, 6), (3, 6)], "all at their natural width");
        assert_eq!(fit_at(39), vec![(0, 18), (1, 6), (2, 6), (3, 6)], "the name gives way, down to 18");
        assert_eq!(fit_at(35), vec![(0, 21), (1, 6), (3, 6)], "then the least important number goes whole");
        assert_eq!(fit_at(27), vec![(0, 20), (1, 6)]);
        assert_eq!(fit_at(20), vec![(0, 13), (1, 6)], "the most important stay; the name gives way further");
    }
}
