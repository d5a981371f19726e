//! Boxes over the view: the keys (`?`), one request (Enter in the request list),
//! and the sources panel (`o` or `:sources`).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::clock;
use super::status::{reason, state_style, state_text};
use crate::engine::RecentRequest;
use crate::text::sanitize;
use crate::ui::app::App;
use crate::ui::format::{cost, count, fit, int, ms, width};
use crate::ui::keys::HELP;
use crate::ui::theme::Theme;

/// A box of at most `w`×`h` in the middle of `area`, a cell from its edges.
fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width.saturating_sub(2));
    let h = h.min(area.height.saturating_sub(2));
    Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h }
}

fn boxed<'a>(f: &mut Frame, area: Rect, title: &'a str, lines: Vec<Line<'a>>) {
    f.render_widget(Clear, area);
    f.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(Block::default().borders(Borders::ALL).title(title)),
        area,
    );
}

pub(super) fn detail(f: &mut Frame, r: &RecentRequest, utc: bool, theme: &Theme, area: Rect) {
    let area = centered(area, 80, 24);
    let value_w = (area.width as usize).saturating_sub(2 + 14);
    let field = |k: &str, v: String| {
        Line::from(vec![
            Span::styled(format!("{:<14}", fit(k, 13)), theme.dim()),
            Span::raw(fit(&sanitize(&v), value_w).into_owned()),
        ])
    };
    let time = chrono::DateTime::from_timestamp_micros(r.created_at)
        .map(|d| format!("{} ({})", d.to_rfc3339(), clock(r.created_at, utc)))
        .unwrap_or_default();
    let mut lines = vec![
        field("request", if r.request_id.is_empty() { "(no id)".into() } else { r.request_id.clone() }),
        field("time", time),
        field("model", r.model.clone()),
        field("provider", r.provider.clone()),
        field("status", r.status.to_string()),
        field("latency", ms(r.latency_ms)),
        field("ttft", ms(r.ttft_ms)),
        field(
            "tokens",
            format!(
                "{} in ({} cached), {} out ({} reasoning)",
                int(r.prompt_tokens),
                int(r.cache_read_tokens),
                int(r.completion_tokens),
                int(r.reasoning_tokens)
            ),
        ),
        field("cost", if r.cache_hit { "cache hit ($0)".into() } else { cost(r.cost, r.unpriced) }),
        field("user", r.user_id.clone()),
        field("session", format!("{} {}", r.session_id, r.session_path)),
        field("retry", r.retry.to_string()),
        field("error", r.error.clone()),
    ];
    for (k, v) in &r.properties {
        lines.push(field(&sanitize(k), v.clone()));
    }
    boxed(f, area, " request · y copy id · Esc close ", lines);
}

pub(super) fn help(f: &mut Frame, theme: &Theme, area: Rect) {
    let key_w = HELP.iter().map(|(k, _)| width(k)).max().unwrap_or(0) + 2;
    let area = centered(area, 80, HELP.len() as u16 + 4);
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(k, v)| Line::from(vec![Span::styled(format!("{k:<key_w$}"), theme.accent()), Span::raw(*v)]))
        .collect();
    boxed(f, area, " keys · Esc close ", lines);
}

/// Every source: its state and problem, what it delivered, and the first bad lines
/// with why each was not read.
pub(super) fn sources(f: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let area = centered(area, 110, 40);
    let mut lines: Vec<Line> = Vec::new();
    for src in &app.status.sources {
        lines.push(Line::from(vec![
            Span::styled(sanitize(&src.name).into_owned(), theme.header()),
            Span::raw("  "),
            Span::styled(state_text(src), state_style(&src.state, theme)),
        ]));
        if let Some(why) = reason(src) {
            lines.push(Line::from(Span::styled(format!("  {why}"), theme.bad())));
        }
        let mut counts = vec![format!("{} events", count(src.events))];
        for (n, what) in [
            (src.bad, "bad lines"),
            (src.fields_dropped, "fields dropped"),
            (src.skipped, "records not LLM calls"),
            (src.missed, "missed (gap)"),
            (src.duplicates, "duplicates"),
            (src.restarts, "restarts"),
        ] {
            if n > 0 {
                counts.push(format!("{} {what}", count(n)));
            }
        }
        lines.push(Line::from(format!("  {}", counts.join(" · "))));
        if let Some(e) = &src.last_error {
            lines.push(Line::from(vec![
                Span::styled("  last problem: ", theme.dim()),
                Span::raw(sanitize(e).into_owned()),
            ]));
        }
        if !src.samples.is_empty() {
            let more = if src.bad > src.samples.len() as u64 { " (the first ones)" } else { "" };
            lines.push(Line::from(Span::styled(format!("  bad lines{more}:"), theme.dim())));
            for s in &src.samples {
                lines.push(Line::from(format!("    {}", sanitize(s))));
            }
        }
        lines.push(Line::from(""));
    }
    if lines.is_empty() {
        lines.push(Line::from("No sources."));
    }
    boxed(f, area, " sources · Esc close ", lines);
}
