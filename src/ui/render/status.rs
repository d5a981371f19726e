//! The status bar: every source's state and, when it has one, its problem in words;
//! then the ingest rate, the backlog, the pause, and the clock. What does not fit
//! is cut from the least important end, the reason last of all.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::clock;
use crate::live::SourceStatus;
use crate::source::SourceState;
use crate::text::sanitize;
use crate::ui::app::App;
use crate::ui::format::{count, fit, int, rate, width};
use crate::ui::theme::Theme;

/// A source's state as the status bar writes it; a reconnect counts down.
pub(super) fn state_text(src: &SourceStatus) -> String {
    match &src.state {
        SourceState::Reconnecting { in_ms, .. } => {
            let left = (*in_ms as f64 / 1000.0 - src.state_since.elapsed().as_secs_f64()).max(0.0);
            format!("reconnecting in {}s", left.ceil() as u64)
        }
        SourceState::Failed(_) => "failed".into(),
        SourceState::Retrying(_) => "cannot read (retrying)".into(),
        other => other.to_string(),
    }
}

pub(super) fn state_style(state: &SourceState, theme: &Theme) -> Style {
    match state {
        SourceState::Failed(_) | SourceState::Retrying(_) | SourceState::Reconnecting { .. } => theme.bad(),
        SourceState::Waiting | SourceState::Connecting => theme.warn(),
        // A refresh is asked for every second: slower than that, the numbers lag.
        SourceState::Answered { ms } if *ms >= 1_000 => theme.warn(),
        _ => theme.good(),
    }
}

/// The problem a source has now, if its state is a bad one.
pub(super) fn reason(src: &SourceStatus) -> Option<String> {
    match &src.state {
        SourceState::Failed(e) | SourceState::Retrying(e) | SourceState::Reconnecting { error: e, .. } => {
            Some(sanitize(e).into_owned())
        }
        _ => None,
    }
}

pub(super) fn draw(f: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let st = &app.status;
    let total_w = area.width as usize;
    let right = if app.snapshot.is_some() { clock(st.now, app.utc) } else { String::new() };
    // The tail, kept whole: rate, backlog, pause.
    let mut tail: Vec<Span> = Vec::new();
    if st.ended {
        tail.push(Span::styled("all sources ended", theme.warn()));
    } else {
        tail.push(Span::raw(format!("{} ev/s", rate(st.events_per_sec))));
    }
    if st.backlog_bytes >= 1 << 20 {
        tail.push(Span::styled(format!("backlog {} MB", int(st.backlog_bytes >> 20)), theme.warn()));
    }
    if let Some(at) = app.paused {
        let new = st.total.saturating_sub(at);
        tail.push(Span::styled(format!("PAUSED +{}", count(new)), theme.warn().add_modifier(Modifier::REVERSED)));
    }
    let tail_w: usize = tail.iter().map(|s| s.width() + 3).sum::<usize>() - 3;
    let mut room = total_w.saturating_sub(tail_w + width(&right) + 1);

    let mut spans: Vec<Span> = Vec::new();
    let several = st.sources.len() > 1;
    for src in &st.sources {
        let name = fit(&sanitize(&src.name), if several { 16 } else { 28 }).into_owned();
        let why =
            reason(src).or_else(|| (src.bad > 0 || src.fields_dropped > 0).then(|| src.last_error.clone()).flatten());
        let mut state = state_text(src);
        // Short of room for the reason, a reconnect says `retry 4s`.
        if let (Some(w), SourceState::Reconnecting { .. }) = (&why, &src.state)
            && width(&name) + width(&state) + 5 + width(w) > room
        {
            state = state.replace("reconnecting in ", "retry ");
        }
        let mut counters: Vec<(String, Style)> = Vec::new();
        if src.bad > 0 {
            counters.push((format!(" {} bad", count(src.bad)), theme.warn()));
        }
        if src.fields_dropped > 0 {
            counters.push((format!(" {} fields dropped", count(src.fields_dropped)), theme.warn()));
        }
        if src.missed > 0 {
            counters.push((format!(" gap {}", count(src.missed)), theme.bad()));
        }
        if src.restarts > 0 {
            counters.push((" restarted".into(), theme.warn()));
        }
        let head = width(&name) + 1 + width(&state);
        if head > room {
            spans.push(Span::raw(fit(&format!("{name} {state}"), room).into_owned()));
            break;
        }
        room -= head;
        spans.push(Span::raw(format!("{name} ")));
        spans.push(Span::styled(state, state_style(&src.state, theme)));
        for (text, style) in counters {
            if width(&text) <= room {
                room -= width(&text);
                spans.push(Span::styled(text, style));
            }
        }
        // The reason takes what is left, cut with `…`; `o` shows it whole.
        if let Some(why) = why
            && room > 12
        {
            let text = fit(&format!(": {}", sanitize(&why)), room - 3).into_owned();
            room -= width(&text);
            spans.push(Span::styled(text, theme.bad()));
        }
        if room >= 3 {
            spans.push(Span::raw(" · "));
            room -= 3;
        }
    }
    for (i, s) in tail.into_iter().enumerate() {
        if i > 0 {
            spans.push(Span::raw(" · "));
        }
        spans.push(s);
    }
    let used: usize = spans.iter().map(|s| s.width()).sum();
    spans.push(Span::raw(" ".repeat(total_w.saturating_sub(used + width(&right)))));
    spans.push(Span::styled(right, theme.dim()));
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}
