//! Drawing: one function a screen region, reading only the `App` and its snapshot.
//!
//! ```text
//!  tabs ─────────────────────────────────────── window
//!  breadcrumb (when drilled down) / filter prompt
//!  ┌ body: the view ───────────────────────────────────┐
//!  │ Overview: KPI tiles, charts, bars by model/provider│
//!  │ tables: Models, Providers, Users, Sessions, …      │
//!  └────────────────────────────────────────────────────┘
//!  key hints
//!  status: sources · ingest rate · bad lines · window · paused · time
//! ```

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Borders, Cell, Chart, Clear, Dataset, GraphType, Paragraph, Row, Table, TableState,
};

use super::app::{App, GROUP_COLUMNS, Snapshot, USER_COLUMNS, View, window_label};
use super::theme::Theme;
use crate::engine::RecentRequest;
use crate::source::SourceState;
use crate::text::{sanitize, truncate};

/// Smallest terminal the console draws in; below it says so.
pub const MIN_SIZE: (u16, u16) = (60, 15);

pub fn draw(f: &mut Frame, app: &mut App, theme: &Theme) {
    let area = f.area();
    if area.width < MIN_SIZE.0 || area.height < MIN_SIZE.1 {
        let msg = format!("terminal too small ({}×{}, need {}×{})", area.width, area.height, MIN_SIZE.0, MIN_SIZE.1);
        f.render_widget(Paragraph::new(truncate(&msg, area.width as usize).into_owned()), area);
        return;
    }
    let top_lines = 1 + u16::from(!app.path.is_empty() || app.prompt.is_some());
    let banner_h = u16::from(!app.firing().is_empty());
    let [banner, tabs, crumbs, body, hints, status] = Layout::vertical([
        Constraint::Length(banner_h),
        Constraint::Length(1),
        Constraint::Length(top_lines - 1),
        Constraint::Min(5),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    app.first_row = None;
    draw_banner(f, app, theme, banner);
    draw_tabs(f, app, theme, tabs);
    draw_crumbs(f, app, theme, crumbs);
    match &app.snapshot {
        None => f.render_widget(Paragraph::new("waiting for data…").style(theme.dim()), body),
        Some(_) => match app.view {
            View::Overview => draw_overview(f, app, theme, body),
            View::Requests => draw_requests(f, app, theme, body),
            View::Alerts => draw_alerts(f, app, theme, body),
            _ => draw_table(f, app, theme, body),
        },
    }
    draw_hints(f, app, theme, hints);
    draw_status(f, app, theme, status);
    if let Some(r) = app.detail.clone() {
        draw_detail(f, &r, theme, area);
    }
    if app.help {
        draw_help(f, theme, area);
    }
}

fn draw_tabs(f: &mut Frame, app: &mut App, theme: &Theme, area: Rect) {
    let mut spans = vec![Span::styled(" tokentop ", theme.accent())];
    let compact = area.width < 110;
    let mut x = area.x + 10;
    let mut tab_spans = Vec::with_capacity(8);
    for (i, v) in View::ALL.iter().enumerate() {
        let label = if compact { format!(" {}{} ", i + 1, v.short()) } else { format!(" {} {} ", i + 1, v.title()) };
        let style = if *v == app.view { theme.selected() } else { Style::default() };
        let w = label.chars().count() as u16;
        tab_spans.push((x, x + w));
        x += w;
        spans.push(Span::styled(label, style));
    }
    let right = format!(" window {} ", window_label(app.window()));
    let used: usize = spans.iter().map(|s| s.width()).sum();
    let pad = (area.width as usize).saturating_sub(used + right.len());
    spans.push(Span::raw(" ".repeat(pad)));
    spans.push(Span::styled(right, theme.accent()));
    f.render_widget(Paragraph::new(Line::from(spans)), area);
    app.tab_spans = tab_spans;
}

fn draw_crumbs(f: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    if area.height == 0 {
        return;
    }
    let line = if let Some(p) = &app.prompt {
        let label = if p.command { ":" } else { "/ filter: " };
        let mut spans = vec![Span::styled(label, theme.accent()), Span::raw(p.text.clone()), Span::raw("▏")];
        if let Some(e) = &p.error {
            spans.push(Span::styled(format!("  {e}"), theme.bad()));
        }
        Line::from(spans)
    } else {
        let mut spans = vec![Span::styled("All", theme.accent())];
        for term in &app.path {
            spans.push(Span::raw(" › "));
            spans.push(Span::styled(sanitize(term).into_owned(), theme.accent()));
        }
        if let Some((at, n)) = app.snapshot.as_ref().and_then(|s| s.filtered_since) {
            spans.push(Span::styled(
                format!("   (since {}, {n} recent requests replayed)  Esc back", clock(at, app.utc)),
                theme.dim(),
            ));
        }
        Line::from(spans)
    };
    f.render_widget(Paragraph::new(line), area);
}

/// A time of day, local or UTC.
fn clock(t: i64, utc: bool) -> String {
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

/// A number with thousands separators.
fn int(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn usd(v: f64) -> String {
    if v >= 1000.0 {
        format!("${:.0}", v)
    } else if v >= 1.0 {
        format!("${v:.2}")
    } else {
        format!("${v:.4}")
    }
}

fn ms(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v >= 10_000.0 => format!("{:.1}s", v / 1000.0),
        Some(v) => format!("{v:.0}ms"),
    }
}

/// One KPI tile: label, value, and the change against the previous window.
struct Tile {
    label: &'static str,
    value: String,
    now: Option<f64>,
    before: Option<f64>,
    /// Whether a rise is good news (requests) or bad (latency, errors).
    up_is_good: bool,
}

fn tiles(s: &Snapshot) -> Vec<Tile> {
    let r = &s.report;
    let p = &s.previous;
    let secs = s.window as f64 / 1e6;
    let pct = |a: u64, b: u64| (b > 0).then(|| a as f64 * 100.0 / b as f64);
    let t = |label, value, now, before, up_is_good| Tile { label, value, now, before, up_is_good };
    vec![
        t(
            "Requests",
            int(r.summary.total_requests),
            Some(r.summary.total_requests as f64),
            Some(p.requests as f64),
            true,
        ),
        t(
            "Req/s",
            format!("{:.2}", r.summary.requests_per_second),
            Some(r.summary.requests_per_second),
            Some(p.requests as f64 / secs),
            true,
        ),
        t("Cost", usd(r.cost.total), Some(r.cost.total), Some(p.cost.to_f64()), false),
        t("Avg latency", ms(r.latency.avg), r.latency.avg, p.latency.moments.avg_ms(), false),
        t("p50", ms(r.latency.p50), r.latency.p50, p.latency.percentile(50.0), false),
        t("p95", ms(r.latency.p95), r.latency.p95, p.latency.percentile(95.0), false),
        t("p99", ms(r.latency.p99), r.latency.p99, p.latency.percentile(99.0), false),
        t("TTFT p50", ms(r.ttft.p50), r.ttft.p50, p.ttft.percentile(50.0), false),
        t(
            "Error rate",
            format!("{:.2}%", r.errors.error_rate),
            Some(r.errors.error_rate),
            pct(p.errors, p.requests),
            false,
        ),
        t("429s", int(r.errors.errors.e429), Some(r.errors.errors.e429 as f64), Some(p.e429 as f64), false),
        t(
            "Active users",
            int(r.summary.active_users),
            Some(r.summary.active_users as f64),
            s.previous_users.map(|u| u as f64),
            true,
        ),
        t(
            "Cache hits",
            format!("{:.1}% {}", r.cache.hit_rate, usd(r.cache.cost_saved)),
            Some(r.cache.hit_rate),
            pct(p.cache_hits, p.requests),
            true,
        ),
        t("Tokens", int(r.tokens.total_tokens), Some(r.tokens.total_tokens as f64), Some(p.tokens as f64), true),
    ]
}

fn draw_tiles(f: &mut Frame, s: &Snapshot, theme: &Theme, area: Rect) {
    let tiles = tiles(s);
    let cols = (area.width / 20).clamp(1, tiles.len() as u16) as usize;
    let width = area.width / cols as u16;
    for (i, tile) in tiles.iter().enumerate() {
        let (row, col) = ((i / cols) as u16, (i % cols) as u16);
        if row * 2 + 1 >= area.height {
            break;
        }
        let r = Rect { x: area.x + col * width, y: area.y + row * 2, width, height: 2 };
        let delta = match (tile.now, tile.before) {
            (Some(n), Some(b)) if b > 0.0 => {
                let change = (n - b) / b * 100.0;
                let better = (change > 0.0) == tile.up_is_good;
                let style = if change.abs() < 0.5 {
                    theme.dim()
                } else if better {
                    theme.good()
                } else {
                    theme.bad()
                };
                let arrow = if change >= 0.0 { "▲" } else { "▼" };
                Span::styled(format!(" {arrow}{:.0}%", change.abs()), style)
            }
            _ => Span::raw(""),
        };
        let lines = vec![
            Line::from(Span::styled(tile.label, theme.dim())),
            Line::from(vec![Span::styled(tile.value.clone(), theme.header()), delta]),
        ];
        f.render_widget(Paragraph::new(lines), r);
    }
}

fn draw_overview(f: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let Some(s) = &app.snapshot else { return };
    let cols = (area.width / 20).clamp(1, 13);
    let tile_rows = 13u16.div_ceil(cols);
    let tiles_h = (tile_rows * 2).min(area.height.saturating_sub(4));
    let rest = area.height.saturating_sub(tiles_h + 1);
    let bars_h = if rest >= 14 { (rest / 3).clamp(4, 12) } else { 0 };
    let [tiles, _, charts, bars] = Layout::vertical([
        Constraint::Length(tiles_h),
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(bars_h),
    ])
    .areas(area);
    draw_tiles(f, s, theme, tiles);
    draw_charts(f, s, theme, charts);
    if bars_h > 0 {
        let [left, right] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(bars);
        if app.path.is_empty() {
            let models = s.report.by_model.as_ref().map(|g| g.0.as_slice()).unwrap_or_default();
            let providers = s.report.by_provider.as_ref().map(|g| g.0.as_slice()).unwrap_or_default();
            draw_bars(f, "by model", models, theme, left);
            draw_bars(f, "by provider", providers, theme, right);
        } else {
            // Drilled down: how its requests ended, and how long they took.
            draw_counts(f, "status codes", &status_counts(s), theme, left);
            draw_counts(f, "latency", &latency_counts(s), theme, right);
        }
    }
}

/// Four charts over the window: requests/s, cost, latency p50/p95/p99, errors by class.
fn draw_charts(f: &mut Frame, s: &Snapshot, theme: &Theme, area: Rect) {
    let bucket = s.report.series_bucket_seconds.max(1) as f64;
    let pts = &s.chart;
    let line = |get: &dyn Fn(&super::app::ChartPoint) -> Option<f64>| -> Vec<(f64, f64)> {
        pts.iter().enumerate().filter_map(|(i, p)| get(p).map(|v| (i as f64, v))).collect()
    };
    /// (title, unit, lines by name)
    type Spec<'a> = (&'a str, &'a str, Vec<(&'a str, Vec<(f64, f64)>)>);
    let charts: [Spec; 4] = [
        ("requests/s", "req/s", vec![("req/s", line(&|p| Some(p.requests as f64 / bucket)))]),
        ("cost per bucket", "USD", vec![("cost", line(&|p| Some(p.cost)))]),
        ("latency", "ms", vec![("p50", line(&|p| p.p50)), ("p95", line(&|p| p.p95)), ("p99", line(&|p| p.p99))]),
        (
            "errors per bucket",
            "errors",
            vec![
                ("other 4xx", line(&|p| Some(p.other_4xx as f64))),
                ("5xx", line(&|p| Some(p.e5xx as f64))),
                ("429", line(&|p| Some(p.e429 as f64))),
            ],
        ),
    ];
    let (w, h) = (area.width / 2, area.height / 2);
    let cells = [
        Rect { x: area.x, y: area.y, width: w, height: h },
        Rect { x: area.x + w, y: area.y, width: area.width - w, height: h },
        Rect { x: area.x, y: area.y + h, width: w, height: area.height - h },
        Rect { x: area.x + w, y: area.y + h, width: area.width - w, height: area.height - h },
    ];
    let span = window_label(s.window);
    let n = pts.len().max(2) as f64;
    let marker = if theme.braille { Marker::Braille } else { Marker::Dot };
    for (i, (title, unit, series)) in charts.iter().enumerate() {
        let max = series.iter().flat_map(|(_, d)| d.iter().map(|p| p.1)).fold(0.0f64, f64::max).max(1e-9);
        if cells[i].height < 7 {
            // No room for axes: a labelled sparkline of the first series, latest value last.
            let data = &series[0].1;
            let width = cells[i].width.saturating_sub(2) as usize;
            // One bar a bucket, in time order (buckets without a value stay empty).
            let mut by_bucket = vec![0u64; pts.len()];
            for &(x, y) in data {
                by_bucket[x as usize] = (y / max * 1000.0).round() as u64;
            }
            let values = &by_bucket[by_bucket.len().saturating_sub(width)..];
            let last = data.last().map_or(0.0, |p| p.1);
            let label = if *unit == "USD" { usd(last) } else { format!("{last:.1}") };
            let spark = ratatui::widgets::Sparkline::default()
                .block(Block::default().title(Span::styled(format!(" {title} ({unit}) now {label}"), theme.dim())))
                .data(values)
                .style(theme.series(i));
            f.render_widget(spark, cells[i]);
            continue;
        }
        let datasets: Vec<Dataset> = series
            .iter()
            .enumerate()
            .map(|(j, (name, data))| {
                let style = if series.len() > 1 { theme.series(j + 1) } else { theme.series(i) };
                Dataset::default().name(*name).marker(marker).graph_type(GraphType::Line).style(style).data(data)
            })
            .collect();
        let label = |v: f64| {
            if *unit == "USD" {
                usd(v)
            } else if v >= 100.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            }
        };
        let names =
            if series.len() > 1 { series.iter().map(|(n, _)| *n).collect::<Vec<_>>().join("/") } else { String::new() };
        let chart = Chart::new(datasets)
            .block(
                Block::default()
                    .borders(Borders::TOP)
                    .title(Span::styled(format!(" {title} {names} ({unit}) "), theme.dim())),
            )
            .legend_position(None)
            .x_axis(Axis::default().bounds([0.0, n - 1.0]).labels([Line::from(format!("-{span}")), Line::from("now")]))
            .y_axis(Axis::default().bounds([0.0, max * 1.1]).labels([Line::from("0"), Line::from(label(max))]));
        f.render_widget(chart, cells[i]);
    }
}

fn status_counts(s: &Snapshot) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = s.report.errors.by_status.0.iter().map(|(k, n)| (k.clone(), *n)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

fn latency_counts(s: &Snapshot) -> Vec<(String, u64)> {
    let edges = super::app::LATENCY_EDGES;
    let label = |ms: f64| if ms >= 1000.0 { format!("{}s", ms / 1000.0) } else { format!("{ms}ms") };
    s.latency_bins
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let name = match i {
                0 => format!("< {}", label(edges[0])),
                i if i == edges.len() => format!("≥ {}", label(edges[i - 1])),
                i => format!("{}–{}", label(edges[i - 1]), label(edges[i])),
            };
            (name, *n)
        })
        .collect()
}

/// Labelled horizontal bars with counts and shares.
fn draw_counts(f: &mut Frame, title: &str, rows: &[(String, u64)], theme: &Theme, area: Rect) {
    let block = Block::default().borders(Borders::TOP).title(Span::styled(format!(" {title} "), theme.dim()));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let total: u64 = rows.iter().map(|r| r.1).sum::<u64>().max(1);
    let max = rows.iter().map(|r| r.1).max().unwrap_or(1).max(1);
    let bar_w = (inner.width as usize).saturating_sub(12 + 16);
    let lines: Vec<Line> = rows
        .iter()
        .take(inner.height as usize)
        .map(|(name, n)| {
            let len = (*n as f64 / max as f64 * bar_w as f64).round() as usize;
            let style = match name.parse::<u16>() {
                Ok(code) => status_style(code, theme),
                Err(_) => theme.series(0),
            };
            Line::from(vec![
                Span::raw(format!("{:<12}", truncate(name, 12))),
                Span::styled("█".repeat(len.min(bar_w)), style),
                Span::raw(format!(
                    "{} {:>7} {:>5.1}% ",
                    " ".repeat(bar_w - len.min(bar_w)),
                    int(*n),
                    *n as f64 * 100.0 / total as f64
                )),
            ])
        })
        .collect();
    f.render_widget(Paragraph::new(lines), inner);
}

/// Horizontal bars of requests (and cost) for the top groups; the rest as "other".
fn draw_bars(f: &mut Frame, title: &str, groups: &[(String, crate::report::Group)], theme: &Theme, area: Rect) {
    let block = Block::default().borders(Borders::TOP).title(Span::styled(format!(" {title} "), theme.dim()));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let rows = inner.height as usize;
    let max = groups.iter().map(|(_, g)| g.requests).max().unwrap_or(1).max(1);
    let name_w = 18usize.min(inner.width as usize / 3);
    let bar_w = (inner.width as usize).saturating_sub(name_w + 22);
    let mut shown: Vec<(String, u64, f64)> =
        groups.iter().take(rows.saturating_sub(1).max(1)).map(|(n, g)| (n.clone(), g.requests, g.cost)).collect();
    if groups.len() > shown.len() {
        let rest = &groups[shown.len()..];
        shown.push((
            "other".into(),
            rest.iter().map(|(_, g)| g.requests).sum(),
            rest.iter().map(|(_, g)| g.cost).sum(),
        ));
    }
    let lines: Vec<Line> = shown
        .into_iter()
        .enumerate()
        .map(|(i, (name, reqs, cost))| {
            let len = (reqs as f64 / max as f64 * bar_w as f64).round() as usize;
            Line::from(vec![
                Span::raw(format!("{:<name_w$} ", truncate(&sanitize(&name), name_w))),
                Span::styled("█".repeat(len.min(bar_w)), theme.series(i)),
                Span::raw(format!("{} {:>8} {:>9} ", " ".repeat(bar_w - len.min(bar_w)), int(reqs), usd(cost))),
            ])
        })
        .collect();
    f.render_widget(Paragraph::new(lines), inner);
}

fn draw_table(f: &mut Frame, app: &mut App, theme: &Theme, area: Rect) {
    let rows = app.rows();
    let (headers, widths): (Vec<&str>, Vec<Constraint>) = match app.view {
        View::Users => {
            let narrow = area.width < 110;
            let cols: Vec<&str> = USER_COLUMNS
                .iter()
                .copied()
                .filter(|c| !narrow || !matches!(*c, "SHARE" | "COST/REQ" | "TTFT" | "CACHE%" | "TOKENS" | "429%"))
                .collect();
            let widths =
                cols.iter().map(|c| if *c == "USER" { Constraint::Min(16) } else { Constraint::Length(9) }).collect();
            (cols, widths)
        }
        View::Sessions => (
            vec!["SESSION", "NAME", "DURATION", "REQS", "COST", "RESULT"],
            vec![
                Constraint::Min(14),
                Constraint::Length(14),
                Constraint::Length(10),
                Constraint::Length(6),
                Constraint::Length(11),
                Constraint::Length(10),
            ],
        ),
        _ => {
            let narrow = area.width < 100;
            let cols: Vec<&str> = GROUP_COLUMNS
                .iter()
                .copied()
                .filter(|c| !narrow || !matches!(*c, "COST/REQ" | "TTFT" | "P50"))
                .collect();
            let widths =
                cols.iter().map(|c| if *c == "NAME" { Constraint::Min(14) } else { Constraint::Length(9) }).collect();
            (cols, widths)
        }
    };
    let keep: Vec<usize> = match app.view {
        View::Sessions => (0..headers.len()).collect(),
        View::Users => USER_COLUMNS.iter().enumerate().filter(|(_, c)| headers.contains(c)).map(|(i, _)| i).collect(),
        _ => GROUP_COLUMNS.iter().enumerate().filter(|(_, c)| headers.contains(c)).map(|(i, _)| i).collect(),
    };
    let (sort_col, desc) = app.sort[View::ALL.iter().position(|v| *v == app.view).unwrap_or(0)];
    // A sparkline of each row's traffic over the window, where there is room.
    let trends = area.width >= 120 && rows.first().is_some_and(|r| app.trend(r).is_some());
    let mut widths = widths;
    if trends {
        widths.push(Constraint::Length(14));
    }
    let header = Row::new(
        keep.iter()
            .map(|&i| {
                let mark = if i == sort_col { if desc { "▼" } else { "▲" } } else { "" };
                Cell::from(format!("{}{mark}", headers[keep.iter().position(|k| *k == i).unwrap_or(0)]))
            })
            .chain(trends.then(|| Cell::from("TREND"))),
    )
    .style(theme.header());
    let body: Vec<Row> = rows
        .iter()
        .map(|r| {
            let cells = keep.iter().map(|&i| Cell::from(truncate(&r.cells[i], 40).into_owned()));
            let spark = trends
                .then(|| Cell::from(Span::styled(sparkline(app.trend(r).map_or(&[][..], |t| t)), theme.series(0))));
            Row::new(cells.chain(spark))
        })
        .collect();
    app.page = area.height.saturating_sub(2) as usize;
    let offset = app.selected.saturating_sub(app.page.saturating_sub(1));
    app.first_row = Some((area.y + 2, offset));
    let empty = body.is_empty();
    let table = Table::new(body, widths).header(header).row_highlight_style(theme.selected()).block(
        Block::default().borders(Borders::TOP).title(Span::styled(
            match app.view {
                View::Users => format!(
                    " Users · {} · {} rows · p segment, s sort, Enter drill down ",
                    app.segment.label(),
                    rows.len()
                ),
                _ => format!(" {} · {} rows · s sort, S reverse, Enter drill down ", app.view.title(), rows.len()),
            },
            theme.dim(),
        )),
    );
    let mut state =
        TableState::default().with_selected((!empty).then_some(app.selected.min(rows.len().saturating_sub(1))));
    f.render_stateful_widget(table, area, &mut state);
}

fn status_style(status: u16, theme: &Theme) -> Style {
    match status {
        200..=299 => theme.good(),
        429 => theme.warn(),
        0 | 400.. => theme.bad(),
        _ => Style::default(),
    }
}

fn draw_requests(f: &mut Frame, app: &mut App, theme: &Theme, area: Rect) {
    app.page = area.height.saturating_sub(2) as usize;
    app.first_row = Some((area.y + 2, app.selected.saturating_sub(area.height.saturating_sub(3) as usize)));
    let list = app.request_list();
    let timeline = app.in_session();
    let third = if timeline { "PATH" } else { "PROVIDER" };
    let header =
        Row::new(["TIME", "MODEL", third, "STATUS", "LATENCY", "TTFT", "TOKENS", "COST", "USER"]).style(theme.header());
    let skip = app.selected.saturating_sub(area.height.saturating_sub(3) as usize);
    let rows: Vec<Row> = list
        .iter()
        .skip(skip)
        .take(area.height as usize)
        .map(|r| {
            Row::new(vec![
                Cell::from(clock(r.created_at, app.utc)),
                Cell::from(truncate(&sanitize(&r.model), 28).into_owned()),
                Cell::from(truncate(&sanitize(if timeline { &r.session_path } else { &r.provider }), 24).into_owned()),
                Cell::from(Span::styled(r.status.to_string(), status_style(r.status, theme))),
                Cell::from(ms(r.latency_ms)),
                Cell::from(ms(r.ttft_ms)),
                Cell::from(int(r.prompt_tokens + r.completion_tokens)),
                Cell::from(if r.unpriced { "?".into() } else { usd(r.cost) }),
                Cell::from(truncate(&sanitize(&r.user_id), 20).into_owned()),
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(9),
        Constraint::Min(14),
        Constraint::Length(if timeline { 24 } else { 10 }),
        Constraint::Length(6),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Min(8),
    ];
    let mode = if app.slowest {
        "slowest first"
    } else if timeline {
        "session timeline, oldest first"
    } else {
        "newest first"
    };
    let frozen = if app.paused.is_some() { ", frozen" } else { "" };
    let title = format!(" Requests · {} · {mode}{frozen} · l slowest/newest, Enter details ", list.len());
    let selected = app.selected - skip;
    let table = Table::new(rows, widths)
        .header(header)
        .row_highlight_style(theme.selected())
        .block(Block::default().borders(Borders::TOP).title(Span::styled(title, theme.dim())));
    let mut state = TableState::default().with_selected((!list.is_empty()).then_some(selected));
    f.render_stateful_widget(table, area, &mut state);
}

/// A line across the top while alerts fire: the most severe first, with group, value and threshold.
fn draw_banner(f: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    if area.height == 0 {
        return;
    }
    let firing = app.firing();
    let mut text = format!(" ▲ {} firing: ", firing.len());
    for (i, a) in firing.iter().enumerate() {
        if i > 0 {
            text.push_str(" · ");
        }
        let group = a.group.as_deref().map(|g| format!(" [{}]", sanitize(g))).unwrap_or_default();
        text.push_str(&format!(
            "{} {}{group} {} {} {}",
            a.severity.to_uppercase(),
            sanitize(&a.rule),
            a.value.map_or_else(|| "–".to_string(), num),
            a.op,
            num(a.threshold)
        ));
    }
    let style = theme.bad().add_modifier(Modifier::REVERSED);
    f.render_widget(Paragraph::new(truncate(&text, area.width as usize).into_owned()).style(style), area);
}

fn num(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "+∞".into() } else { "-∞".into() };
    }
    if v.abs() >= 100.0 { format!("{v:.0}") } else { format!("{v:.2}") }
}

/// The Alerts view: invalid rules, every rule's state, past firings, webhook deliveries.
fn draw_alerts(f: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    use crate::ui::app::AlertState;
    let info = &app.alert_info;
    if app.alerts.is_empty() && info.problems.is_empty() {
        let text = vec![
            Line::from(Span::styled("No alert rules loaded.", theme.header())),
            Line::from(""),
            Line::from("Alert rules (thresholds and spikes on cost, latency, TTFT, errors and traffic) are"),
            Line::from("[[alerts]] tables in the config file (--config; see assets/config.example.toml);"),
            Line::from("firing alerts show as a banner above the tabs."),
        ];
        f.render_widget(Paragraph::new(text).block(Block::default().borders(Borders::TOP)), area);
        return;
    }
    let problems: Vec<Line> = info
        .problems
        .iter()
        .take(3)
        .map(|p| Line::from(Span::styled(format!("⚠ skipped {}", sanitize(p)), theme.warn())))
        .chain((info.problems.len() > 3).then(|| Line::from(format!("… and {} more", info.problems.len() - 3))))
        .collect();
    let deliveries = !info.deliveries.is_empty() || info.dropped > 0 || info.stale > 0;
    // The rules first, then as much history as fits (at least a few lines of it).
    let history_h = if info.history.is_empty() { 0 } else { (info.history.len() as u16 + 2).min(6) };
    let rules_h = (app.alerts.len() as u16 + 2).max(3);
    let [problems_area, rules_area, history_area, deliveries_area] = Layout::vertical([
        Constraint::Length(problems.len() as u16),
        Constraint::Max(rules_h),
        Constraint::Min(history_h),
        Constraint::Length(u16::from(deliveries)),
    ])
    .areas(area);
    f.render_widget(Paragraph::new(problems), problems_area);

    let rows = app.alert_list();
    // Narrower terminals drop the trend, then the severity (the state's colour remains).
    let (trend, severity) = (area.width >= 130, area.width >= 100);
    let (group_w, what_w) = match area.width {
        130.. => (24, 24),
        100.. => (20, 22),
        _ => (14, 16),
    };
    let mut header = vec!["STATE", "SEVERITY", "RULE", "GROUP", "METRIC", "VALUE", "THRESHOLD", "TREND"];
    let mut widths = vec![
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Min(12),
        Constraint::Length(group_w),
        Constraint::Length(what_w),
        Constraint::Length(9),
        Constraint::Length(10),
        Constraint::Length(16),
    ];
    fn pick<T>(v: Vec<T>, severity: bool, trend: bool) -> Vec<T> {
        v.into_iter().enumerate().filter(|(i, _)| (*i != 1 || severity) && (*i != 7 || trend)).map(|(_, x)| x).collect()
    }
    header = pick(header, severity, trend);
    widths = pick(widths, severity, trend);
    let header = Row::new(header).style(theme.header());
    let body: Vec<Row> = rows
        .iter()
        .map(|a| {
            let (state, style) = match a.state {
                AlertState::Firing => ("FIRING", theme.bad()),
                AlertState::Pending => ("pending", theme.warn()),
                AlertState::Ok => ("ok", theme.good()),
                AlertState::NoData => ("no data", theme.dim()),
            };
            let group = a.group.as_deref().map(|g| truncate(&sanitize(g), group_w as usize).into_owned());
            Row::new(pick(
                vec![
                    Cell::from(Span::styled(state, style)),
                    Cell::from(a.severity.clone()),
                    Cell::from(truncate(&sanitize(&a.rule), 30).into_owned()),
                    Cell::from(group.unwrap_or_default()),
                    Cell::from(truncate(&a.what, what_w as usize).into_owned()),
                    Cell::from(a.value.map_or_else(|| "–".to_string(), num)),
                    Cell::from(format!("{} {}", a.op, num(a.threshold))),
                    Cell::from(if trend { sparkline(&scaled(&a.trend)) } else { String::new() }),
                ],
                severity,
                trend,
            ))
        })
        .collect();
    let firing = rows.iter().filter(|a| a.state == AlertState::Firing).count();
    let table = Table::new(body, widths).header(header).row_highlight_style(theme.selected()).block(
        Block::default().borders(Borders::TOP).title(Span::styled(
            format!(" Alerts · {} rules · {firing} firing · Enter its traffic ", rows.len()),
            theme.dim(),
        )),
    );
    let mut state = TableState::default().with_selected((!rows.is_empty()).then_some(app.selected));
    f.render_stateful_widget(table, rules_area, &mut state);

    if !info.history.is_empty() {
        let header = Row::new(["START", "END", "SEVERITY", "RULE", "GROUP", "PEAK"]).style(theme.header());
        let time = |t: &str| crate::time::parse_rfc3339(t).map_or_else(|_| t.to_string(), |m| clock(m, app.utc));
        let body: Vec<Row> = info
            .history
            .iter()
            .map(|h| {
                Row::new(vec![
                    Cell::from(time(&h.start)),
                    match &h.end {
                        Some(e) => Cell::from(time(e)),
                        None => Cell::from(Span::styled("firing", theme.bad())),
                    },
                    Cell::from(h.severity.clone()),
                    Cell::from(truncate(&sanitize(&h.rule), 30).into_owned()),
                    Cell::from(h.group.as_deref().map(|g| truncate(&sanitize(g), 28).into_owned()).unwrap_or_default()),
                    Cell::from(num(h.peak)),
                ])
            })
            .collect();
        let widths = [
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(9),
            Constraint::Min(14),
            Constraint::Length(20),
            Constraint::Length(10),
        ];
        let table = Table::new(body, widths)
            .header(header)
            .block(Block::default().borders(Borders::TOP).title(Span::styled(" history ", theme.dim())));
        f.render_widget(table, history_area);
    }

    if deliveries {
        let mut spans = vec![Span::styled("webhooks: ", theme.dim())];
        for d in &info.deliveries {
            spans.push(Span::raw(format!("{} sent {}", d.target, d.sent)));
            if d.failed > 0 {
                spans.push(Span::styled(format!(" failed {}", d.failed), theme.bad()));
            }
            if let Some(e) = &d.last_error {
                spans.push(Span::styled(format!(" ({})", sanitize(e)), theme.bad()));
            }
            spans.push(Span::raw(" · "));
        }
        if info.dropped > 0 {
            spans.push(Span::styled(format!("{} dropped (queue full) · ", info.dropped), theme.warn()));
        }
        if info.stale > 0 {
            spans.push(Span::styled(format!("{} not sent (over 10 min old: a replay)", info.stale), theme.dim()));
        }
        f.render_widget(Paragraph::new(Line::from(spans)), deliveries_area);
    }
}

/// Values scaled to 0..=1000 of their largest, for a sparkline.
fn scaled(values: &[f64]) -> Vec<u64> {
    let max = values.iter().copied().filter(|v| v.is_finite()).fold(0.0f64, f64::max);
    values.iter().map(|v| if max > 0.0 && v.is_finite() { (v.max(0.0) / max * 1000.0) as u64 } else { 0 }).collect()
}

/// A one-line sparkline of block characters.
fn sparkline(values: &[u64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    values.iter().map(|&v| if v == 0 { ' ' } else { BARS[((v * 7) / max) as usize] }).collect()
}

fn popup(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width.saturating_sub(2));
    let h = h.min(area.height.saturating_sub(2));
    Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h }
}

fn draw_detail(f: &mut Frame, r: &RecentRequest, theme: &Theme, area: Rect) {
    let area = popup(area, 76, 22);
    let field = |k: &str, v: String| {
        Line::from(vec![
            Span::styled(format!("{k:<14}"), theme.dim()),
            Span::raw(truncate(&sanitize(&v), 58).into_owned()),
        ])
    };
    let mut lines = vec![
        field("request", r.request_id.clone()),
        field(
            "time",
            chrono::DateTime::from_timestamp_micros(r.created_at).map(|d| d.to_rfc3339()).unwrap_or_default(),
        ),
        field("model", r.model.clone()),
        field("provider", r.provider.clone()),
        field("status", r.status.to_string()),
        field("latency", ms(r.latency_ms)),
        field("ttft", ms(r.ttft_ms)),
        field(
            "tokens",
            format!(
                "{} in ({} cached), {} out ({} reasoning)",
                r.prompt_tokens, r.cache_read_tokens, r.completion_tokens, r.reasoning_tokens
            ),
        ),
        field(
            "cost",
            if r.unpriced {
                "unpriced".into()
            } else if r.cache_hit {
                "cache hit ($0)".into()
            } else {
                usd(r.cost)
            },
        ),
        field("user", r.user_id.clone()),
        field("session", format!("{} {}", r.session_id, r.session_path)),
        field("retry", r.retry.to_string()),
        field("error", r.error.clone()),
    ];
    for (k, v) in &r.properties {
        lines.push(field(&format!("{}", truncate(&sanitize(k), 13)), v.clone()));
    }
    f.render_widget(Clear, area);
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" request · Esc close ")),
        area,
    );
}

/// The keys, as shown by `?`.
pub const HELP: [(&str, &str); 16] = [
    ("q  Ctrl-C", "quit"),
    ("1–8  Tab  Shift-Tab", "views"),
    ("↑ ↓  j k  PgUp PgDn  Home End", "move"),
    ("Enter", "drill down; open a request or an alert"),
    ("Esc", "back along the path"),
    ("/", "filter, e.g. model:gpt-4o* status:5xx latency>5000"),
    ("s  S", "sort by the next column, reverse"),
    ("[ ]  - +", "shorter / longer window (1m … 7d)"),
    ("Space", "pause the screen (ingest goes on)"),
    ("l  p", "requests: slowest/newest first; users: segment"),
    ("e  y  :", "export view; copy selection; command (:model x, :window 15m)"),
    ("?", "this help"),
    ("filter terms", "model: provider: user: session: prop.KEY=VALUE"),
    ("", "status:429 status:5xx status:error cache:hit"),
    ("", "latency>5s ttft>=800 cost>0.01 tokens<100 -term"),
    ("", "Esc closes this help"),
];

fn draw_help(f: &mut Frame, theme: &Theme, area: Rect) {
    let area = popup(area, 84, HELP.len() as u16 + 2);
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(k, v)| Line::from(vec![Span::styled(format!("{k:<30}"), theme.accent()), Span::raw(*v)]))
        .collect();
    f.render_widget(Clear, area);
    f.render_widget(Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" keys ")), area);
}

fn draw_hints(f: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    if let Some((msg, at)) = &app.message
        && at.elapsed() < std::time::Duration::from_secs(5)
    {
        f.render_widget(Paragraph::new(truncate(msg, area.width as usize).into_owned()).style(theme.accent()), area);
        return;
    }
    let hint = if app.prompt.as_ref().is_some_and(|p| p.command) {
        "Enter run · Tab complete · ↑ ↓ history · Esc cancel · model provider user session filter clear window export"
    } else if app.prompt.is_some() {
        "Enter apply · Esc cancel"
    } else {
        "q quit · 1-8 views · Enter drill down · Esc back · / filter · [ ] window · Space pause · ? help"
    };
    f.render_widget(Paragraph::new(truncate(hint, area.width as usize).into_owned()).style(theme.dim()), area);
}

fn draw_status(f: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let mut spans = Vec::new();
    let st = &app.status;
    for src in &st.sources {
        let style = match src.state {
            SourceState::Failed(_) | SourceState::Retrying(_) | SourceState::Reconnecting { .. } => theme.bad(),
            SourceState::Waiting | SourceState::Connecting => theme.warn(),
            _ => theme.good(),
        };
        let state = match &src.state {
            SourceState::Reconnecting { in_ms, .. } => format!("reconnecting in {:.0}s", *in_ms as f64 / 1000.0),
            SourceState::Failed(e) => format!("error: {}", sanitize(e)),
            other => other.to_string(),
        };
        spans.push(Span::raw(format!("{} ", truncate(&sanitize(&src.name), 24))));
        spans.push(Span::styled(state, style));
        if src.bad > 0 {
            spans.push(Span::styled(format!(" {} bad", int(src.bad)), theme.warn()));
        }
        if src.fields_dropped > 0 {
            spans.push(Span::styled(format!(" {} fields dropped", int(src.fields_dropped)), theme.warn()));
        }
        if src.missed > 0 {
            spans.push(Span::styled(format!(" gap {}", int(src.missed)), theme.bad()));
        }
        if src.restarts > 0 {
            spans.push(Span::styled(" restarted".to_string(), theme.warn()));
        }
        spans.push(Span::raw(" · "));
    }
    if st.ended {
        spans.push(Span::styled("all sources ended".to_string(), theme.warn()));
        spans.push(Span::raw(" · "));
    } else {
        spans.push(Span::raw(format!("{} ev/s · ", int(st.events_per_sec.round() as u64))));
    }
    if st.backlog_bytes >= 1 << 20 {
        spans.push(Span::styled(format!("backlog {} MB", int(st.backlog_bytes >> 20)), theme.warn()));
        spans.push(Span::raw(" · "));
    }
    if let Some(at) = app.paused {
        spans.push(Span::styled(
            format!("PAUSED +{} ", int(st.total.saturating_sub(at))),
            theme.warn().add_modifier(Modifier::REVERSED),
        ));
        spans.push(Span::raw(" · "));
    }
    let right = if app.snapshot.is_some() { clock(app.status.now, app.utc) } else { String::new() };
    let used: usize = spans.iter().map(|s| s.width()).sum();
    if used + right.len() + 1 > area.width as usize {
        let keep = (area.width as usize).saturating_sub(right.len() + 1);
        let text: String = spans.iter().map(|s| s.content.as_ref()).collect::<String>();
        spans = vec![Span::raw(truncate(&text, keep).into_owned())];
    }
    let used: usize = spans.iter().map(|s| s.width()).sum();
    spans.push(Span::raw(" ".repeat((area.width as usize).saturating_sub(used + right.len()))));
    spans.push(Span::styled(right, theme.dim()));
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}
