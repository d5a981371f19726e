//! The Overview: KPI tiles with their change against the window before, four charts
//! over the window, and bars by model and provider (or, drilled down, by status and
//! latency).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Borders, Chart, Dataset, GraphType, Paragraph};

use crate::text::sanitize;
use crate::ui::app::{App, ChartPoint, LATENCY_EDGES, Scope, Snapshot, window_label};
use crate::ui::format::{count, fit, ms, num, pct, rate, usd, width};
use crate::ui::theme::Theme;

/// One KPI tile: label, value, and the change against the previous window.
struct Tile {
    label: String,
    value: String,
    now: Option<f64>,
    before: Option<f64>,
    /// Whether a rise is good news (requests) or bad (latency, errors).
    up_is_good: bool,
    /// The label is a warning (unpriced requests).
    warn: bool,
}

fn tiles(s: &Snapshot) -> Vec<Tile> {
    let r = &s.report;
    let p = &s.previous;
    let secs = s.window as f64 / 1e6;
    // Counts of the window before (exactly one window long) are scaled to the span
    // the current ones cover (whole slabs: up to 1/12 more), so a change is a change.
    let k = if r.window.seconds > 0.0 { r.window.seconds / secs } else { 1.0 };
    let scaled = |n: f64| Some(n * k);
    let share = |a: u64, b: u64| (b > 0).then(|| a as f64 * 100.0 / b as f64);
    let (percentiles, detail, users) = match s.scope {
        Scope::Groups { known } => (known.percentiles, known.detail, r.summary.active_users_exact),
        _ => (true, true, true),
    };
    let hide = |known: bool, v: String| if known { v } else { "-".into() };
    let t = |label: &str, value: String, now, before, up_is_good| Tile {
        label: label.into(),
        value,
        now,
        before,
        up_is_good,
        warn: false,
    };
    let unpriced = r.cost.unpriced_requests;
    let mut cost = t("Cost", usd(r.cost.total), Some(r.cost.total), scaled(p.cost.to_f64()), false);
    if unpriced > 0 {
        cost.label = format!("Cost {} unpriced", count(unpriced));
        cost.warn = true;
    }
    // Drilled down to groups, TTFT is known as an average only.
    let ttft = if matches!(s.scope, Scope::Groups { .. }) {
        t("TTFT avg", hide(detail, ms(r.ttft.avg)), r.ttft.avg, None, false)
    } else {
        t("TTFT p50", ms(r.ttft.p50), r.ttft.p50, p.ttft.percentile(50.0), false)
    };
    vec![
        t(
            "Requests",
            count(r.summary.total_requests),
            Some(r.summary.total_requests as f64),
            scaled(p.requests as f64),
            true,
        ),
        t(
            "Req/s",
            rate(r.summary.requests_per_second),
            Some(r.summary.requests_per_second),
            Some(p.requests as f64 / secs),
            true,
        ),
        cost,
        t("Avg latency", hide(detail, ms(r.latency.avg)), r.latency.avg, p.latency.moments.avg_ms(), false),
        t("p50", hide(percentiles, ms(r.latency.p50)), r.latency.p50, p.latency.percentile(50.0), false),
        t("p95", hide(percentiles, ms(r.latency.p95)), r.latency.p95, p.latency.percentile(95.0), false),
        t("p99", hide(percentiles, ms(r.latency.p99)), r.latency.p99, p.latency.percentile(99.0), false),
        ttft,
        t("Error rate", pct(r.errors.error_rate), Some(r.errors.error_rate), share(p.errors, p.requests), false),
        t(
            "429s",
            hide(detail, count(r.errors.errors.e429)),
            Some(r.errors.errors.e429 as f64),
            scaled(p.e429 as f64),
            false,
        ),
        t(
            "Active users",
            hide(users, count(r.summary.active_users)),
            Some(r.summary.active_users as f64),
            s.previous_users.map(|u| u as f64),
            true,
        ),
        t(
            "Cache hits",
            hide(detail, format!("{} {}", pct(r.cache.hit_rate), usd(r.cache.cost_saved))),
            Some(r.cache.hit_rate),
            share(p.cache_hits, p.requests),
            true,
        ),
        t(
            "Tokens",
            hide(detail, count(r.tokens.total_tokens)),
            Some(r.tokens.total_tokens as f64),
            scaled(p.tokens as f64),
            true,
        ),
    ]
}

fn draw_tiles(f: &mut Frame, s: &Snapshot, theme: &Theme, area: Rect) {
    let tiles = tiles(s);
    let cols = (area.width / 20).clamp(1, tiles.len() as u16) as usize;
    let width_each = area.width / cols as u16;
    for (i, tile) in tiles.iter().enumerate() {
        let (row, col) = ((i / cols) as u16, (i % cols) as u16);
        if row * 2 + 1 >= area.height {
            break;
        }
        let r = Rect { x: area.x + col * width_each, y: area.y + row * 2, width: width_each, height: 2 };
        let delta = match (tile.now, tile.before) {
            (Some(n), Some(b)) if b > 0.0 && tile.value != "-" => {
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
        let label_style = if tile.warn { theme.warn() } else { theme.dim() };
        let lines = vec![
            Line::from(Span::styled(fit(&tile.label, width_each as usize - 1).into_owned(), label_style)),
            Line::from(vec![Span::styled(tile.value.clone(), theme.header()), delta]),
        ];
        f.render_widget(Paragraph::new(lines), r);
    }
}

pub(super) fn draw(f: &mut Frame, app: &App, theme: &Theme, area: Rect) {
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
            draw_counts(f, "status", &status_counts(s), theme, left);
            if matches!(s.scope, Scope::Groups { known } if !known.percentiles) {
                let text = Line::from(Span::styled(" latency: averages only for this drill-down", theme.dim()));
                f.render_widget(Paragraph::new(text).block(Block::default().borders(Borders::TOP)), right);
            } else {
                draw_counts(f, "latency", &latency_counts(s), theme, right);
            }
        }
    }
}

/// A chart: its title, unit, and its lines by name.
struct Spec {
    title: &'static str,
    /// Writes a value of this chart.
    label: fn(f64) -> String,
    lines: Vec<(&'static str, Vec<(f64, f64)>)>,
}

fn specs(pts: &[ChartPoint]) -> [Spec; 4] {
    let line = |get: &dyn Fn(&ChartPoint) -> Option<f64>| -> Vec<(f64, f64)> {
        pts.iter().filter_map(|p| get(p).map(|v| (p.x, v))).collect()
    };
    // Counts become rates over the seconds each bucket was watched: the bucket now
    // filling is drawn at its pace so far, not as a drop.
    let per_min = |n: f64, p: &ChartPoint| n / p.secs * 60.0;
    [
        Spec { title: "requests/s", label: rate, lines: vec![("req/s", line(&|p| Some(p.requests as f64 / p.secs)))] },
        Spec { title: "cost/min", label: usd, lines: vec![("$/min", line(&|p| Some(per_min(p.cost, p))))] },
        Spec {
            title: "latency",
            label: |v| ms(Some(v)),
            lines: vec![("p50", line(&|p| p.p50)), ("p95", line(&|p| p.p95)), ("p99", line(&|p| p.p99))],
        },
        Spec {
            title: "errors/min",
            label: num,
            lines: vec![
                ("4xx", line(&|p| Some(per_min(p.other_4xx as f64, p)))),
                ("5xx", line(&|p| Some(per_min(p.e5xx as f64, p)))),
                ("429", line(&|p| Some(per_min(p.e429 as f64, p)))),
            ],
        },
    ]
}

/// Four charts over the whole window, each with a legend in its title; without
/// colour the lines differ by their marks, which the legend shows.
fn draw_charts(f: &mut Frame, s: &Snapshot, theme: &Theme, area: Rect) {
    let (w, h) = (area.width / 2, area.height / 2);
    let cells = [
        Rect { x: area.x, y: area.y, width: w, height: h },
        Rect { x: area.x + w, y: area.y, width: area.width - w, height: h },
        Rect { x: area.x, y: area.y + h, width: w, height: area.height - h },
        Rect { x: area.x + w, y: area.y + h, width: area.width - w, height: area.height - h },
    ];
    let buckets = (s.window as f64 / s.bucket.max(1) as f64).ceil().max(1.0);
    let span = window_label(s.window);
    let per = window_label(s.bucket);
    for (i, spec) in specs(&s.chart).into_iter().enumerate() {
        let cell = cells[i];
        let max = spec.lines.iter().flat_map(|(_, d)| d.iter().map(|p| p.1)).fold(0.0f64, f64::max);
        let many = spec.lines.len() > 1;
        let style_of = |j: usize| if many { theme.series(j + 1) } else { theme.series(i) };
        let mark_of = |j: usize| theme.mark(if many { j } else { 0 });
        // The title: name, then each line's name in its colour (and mark), then the
        // latest and largest values.
        let mut title = vec![Span::styled(format!(" {} ", spec.title), theme.dim())];
        for (j, (name, data)) in spec.lines.iter().enumerate() {
            let (glyph, _) = mark_of(j);
            let last = data.last().map_or_else(|| "-".into(), |p| (spec.label)(p.1));
            let text = if many { format!("{glyph}{name} {last} ") } else { format!("now {last} ") };
            title.push(Span::styled(text, style_of(j)));
        }
        let title_w: usize = title.iter().map(|s| s.width()).sum();
        let max_text = format!("max {} ", (spec.label)(max));
        if title_w + width(&max_text) < cell.width as usize {
            title.push(Span::styled(max_text, theme.dim()));
        }
        let datasets: Vec<Dataset> = spec
            .lines
            .iter()
            .enumerate()
            .map(|(j, (_, data))| {
                let (_, marker) = mark_of(j);
                let marker = if marker == Marker::Braille && !theme.braille { Marker::Dot } else { marker };
                Dataset::default().marker(marker).graph_type(GraphType::Line).style(style_of(j)).data(data)
            })
            .collect();
        let roomy = cell.height >= 7 && cell.width >= 30;
        let mut x_axis = Axis::default().bounds([0.0, buckets]);
        let mut y_axis = Axis::default().bounds([0.0, (max * 1.1).max(1e-9)]);
        if roomy {
            x_axis =
                x_axis.labels([Line::from(format!("-{span}")), Line::from(format!("per {per}")), Line::from("now")]);
            y_axis = y_axis.labels([Line::from("0"), Line::from((spec.label)(max))]);
        }
        let chart = Chart::new(datasets)
            .block(Block::default().borders(Borders::TOP).title(Line::from(title)))
            .legend_position(None)
            .x_axis(x_axis.style(theme.dim()))
            .y_axis(y_axis.style(theme.dim()));
        f.render_widget(chart, cell);
    }
}

fn status_counts(s: &Snapshot) -> Vec<(String, u64, Style)> {
    let e = &s.report.errors;
    if !e.by_status.0.is_empty() {
        let mut v: Vec<(String, u64, Style)> =
            e.by_status.0.iter().map(|(k, n)| (k.clone(), *n, Style::default())).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        return v;
    }
    // Groups keep status classes, not codes.
    let c = &e.errors;
    let mut v = vec![("2xx".to_string(), e.successful, Style::default())];
    if matches!(s.scope, Scope::Groups { known } if !known.detail) {
        v.push(("errors".into(), c.total, Style::default()));
        return v;
    }
    v.extend([
        ("429".to_string(), c.e429, Style::default()),
        ("other 4xx".to_string(), c.e4xx - c.e429, Style::default()),
        ("5xx".to_string(), c.e5xx, Style::default()),
        ("no response".to_string(), c.status_0, Style::default()),
    ]);
    v.retain(|r| r.1 > 0);
    v
}

fn latency_counts(s: &Snapshot) -> Vec<(String, u64, Style)> {
    let edges = LATENCY_EDGES;
    let label = |v: f64| ms(Some(v));
    s.latency_bins
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let name = match i {
                0 => format!("< {}", label(edges[0])),
                i if i == edges.len() => format!("≥ {}", label(edges[i - 1])),
                i => format!("{}–{}", label(edges[i - 1]), label(edges[i])),
            };
            (name, *n, Style::default())
        })
        .collect()
}

fn status_style(name: &str, theme: &Theme) -> Style {
    match name {
        "2xx" => theme.good(),
        "429" => theme.warn(),
        _ => match name.parse::<u16>() {
            Ok(code) => super::table::status_style(code, theme),
            Err(_) if name.contains("xx") || name == "errors" || name == "no response" => theme.bad(),
            Err(_) => theme.series(0),
        },
    }
}

/// Labelled horizontal bars with counts and shares.
fn draw_counts(f: &mut Frame, title: &str, rows: &[(String, u64, Style)], theme: &Theme, area: Rect) {
    let block = Block::default().borders(Borders::TOP).title(Span::styled(format!(" {title} "), theme.dim()));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let total: u64 = rows.iter().map(|r| r.1).sum::<u64>().max(1);
    let max = rows.iter().map(|r| r.1).max().unwrap_or(1).max(1);
    let bar_w = (inner.width as usize).saturating_sub(12 + 16);
    let lines: Vec<Line> = rows
        .iter()
        .take(inner.height as usize)
        .map(|(name, n, _)| {
            let len = ((*n as f64 / max as f64 * bar_w as f64).round() as usize).min(bar_w);
            Line::from(vec![
                Span::raw(format!("{:<12}", fit(name, 12))),
                Span::styled("█".repeat(len), status_style(name, theme)),
                Span::raw(format!(
                    "{} {:>7} {:>6} ",
                    " ".repeat(bar_w - len),
                    count(*n),
                    pct(*n as f64 * 100.0 / total as f64)
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
    let mut shown: Vec<(String, u64, String)> = groups
        .iter()
        .take(rows.saturating_sub(1).max(1))
        .map(|(n, g)| (n.clone(), g.requests, group_cost(g)))
        .collect();
    if groups.len() > shown.len() {
        let rest = &groups[shown.len()..];
        shown.push((
            "other".into(),
            rest.iter().map(|(_, g)| g.requests).sum(),
            usd(rest.iter().map(|(_, g)| g.cost).sum()),
        ));
    }
    let lines: Vec<Line> = shown
        .into_iter()
        .enumerate()
        .map(|(i, (name, reqs, cost))| {
            let len = ((reqs as f64 / max as f64 * bar_w as f64).round() as usize).min(bar_w);
            Line::from(vec![
                Span::raw(format!("{:<name_w$} ", fit(&sanitize(&name), name_w))),
                Span::styled("█".repeat(len), theme.series(i)),
                Span::raw(format!("{} {:>8} {:>9} ", " ".repeat(bar_w - len), count(reqs), cost)),
            ])
        })
        .collect();
    f.render_widget(Paragraph::new(lines), inner);
}

/// A group's cost, or `unpriced` when none of its requests had a price.
fn group_cost(g: &crate::report::Group) -> String {
    g.known_cost().map_or_else(|| "unpriced".into(), usd)
}
