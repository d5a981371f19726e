//! The Alerts view (invalid rules, every rule's state, past firings, webhook
//! deliveries) and the banner shown above the tabs while alerts fire.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState};

use super::clock;
use super::table::sparkline;
use crate::text::sanitize;
use crate::ui::app::{AlertRow, App};
use crate::ui::format::{fit, ms, num, pct, rate, usd, width};
use crate::ui::theme::Theme;

/// A value in its rule's unit.
pub(super) fn with_unit(v: f64, unit: &str) -> String {
    if !v.is_finite() {
        return num(v);
    }
    match unit {
        "$" => usd(v),
        "ms" => ms(Some(v)),
        "%" => pct(v),
        "/s" => format!("{}/s", rate(v)),
        "" => num(v),
        other => format!("{}{other}", num(v)),
    }
}

/// What crossed what: `8.39% > 2% (warning; critical at 10%)`.
pub(super) fn crossing(a: &AlertRow) -> String {
    let value = a.value.map_or_else(|| "no data".to_string(), |v| with_unit(v, a.unit));
    let mut text = format!("{value} {} {}", a.op, with_unit(a.threshold, a.unit));
    if a.threshold != a.limit {
        text.push_str(&format!(" (warning level; threshold {})", with_unit(a.limit, a.unit)));
    }
    text
}

/// The Alerts view: invalid rules, every rule's state, past firings, webhook deliveries.
pub(super) fn draw(f: &mut Frame, app: &App, theme: &Theme, area: Rect) {
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
    // The group and metric columns are as wide as what they hold where there is room.
    let natural = (
        rows.iter().map(|a| a.group.as_deref().map_or(0, width)).max().unwrap_or(0).clamp(5, 40),
        rows.iter().map(|a| width(&a.what)).max().unwrap_or(0).clamp(6, 40),
    );
    let (group_w, what_w) = match area.width {
        w if w as usize >= 8 + 9 + 20 + natural.0 + natural.1 + 12 + 14 + 16 + 8 => {
            (natural.0 as u16, natural.1 as u16)
        }
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
            let group = a.group.as_deref().map(|g| fit(&sanitize(g), group_w as usize).into_owned());
            Row::new(pick(
                vec![
                    Cell::from(Span::styled(state, style)),
                    Cell::from(a.severity.clone()),
                    Cell::from(fit(&sanitize(&a.rule), 30).into_owned()),
                    Cell::from(group.unwrap_or_default()),
                    Cell::from(fit(&a.what, what_w as usize).into_owned()),
                    Cell::from(a.value.map_or_else(|| "no data".to_string(), |v| with_unit(v, a.unit))),
                    Cell::from(format!("{} {}", a.op, with_unit(a.threshold, a.unit))),
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
                    Cell::from(fit(&sanitize(&h.rule), 30).into_owned()),
                    Cell::from(h.group.as_deref().map(|g| fit(&sanitize(g), 28).into_owned()).unwrap_or_default()),
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

/// A line across the top while alerts fire: the most severe first, each with its
/// level, group, value and the line it crossed, in the metric's unit. What does
/// not fit is counted (`+2 more`), not cut.
pub(super) fn draw_banner(f: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    if area.height == 0 {
        return;
    }
    let firing = app.firing();
    let room = area.width as usize;
    let mut text = format!(" ▲ {} firing: ", firing.len());
    for (i, a) in firing.iter().enumerate() {
        let group = a.group.as_deref().map(|g| format!(" [{}]", sanitize(g))).unwrap_or_default();
        let item = format!(
            "{}{} {}{group} {}",
            if i > 0 { " · " } else { "" },
            a.severity.to_uppercase(),
            sanitize(&a.rule),
            crossing(a)
        );
        let rest = firing.len() - i - 1;
        let more = if rest > 0 { format!(" · +{rest} more (8 Alerts)") } else { String::new() };
        if i > 0 && width(&text) + width(&item) + width(&more) > room {
            text.push_str(&format!(" · +{} more (8 Alerts)", firing.len() - i));
            break;
        }
        text.push_str(&item);
    }
    let style = theme.bad().add_modifier(Modifier::REVERSED);
    f.render_widget(Paragraph::new(fit(&text, room).into_owned()).style(style), area);
}
