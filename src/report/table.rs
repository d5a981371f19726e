//! The report as readable text (`--format table`).

use std::fmt::Write;

use super::{Group, Percentiles, Ranked, Report};
use crate::text::{sanitize, truncate};

fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
        None => "-".into(),
    }
}

fn usd(v: f64) -> String {
    if v != 0.0 && v.abs() < 0.01 { format!("${v:.6}") } else { format!("${v:.2}") }
}

fn latency_line(out: &mut String, label: &str, p: &Percentiles) {
    let _ = writeln!(
        out,
        "{label:<12} p50 {}  p95 {}  p99 {}  avg {}  max {}  (n={})",
        ms(p.p50),
        ms(p.p95),
        ms(p.p99),
        ms(p.avg),
        ms(p.max),
        p.count
    );
}

fn groups(out: &mut String, title: &str, rows: &Ranked<Group>) {
    if rows.0.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n{title}");
    let _ = writeln!(
        out,
        "  {:<32} {:>9} {:>6} {:>12} {:>6} {:>8} {:>8} {:>8} {:>6}",
        "NAME", "REQUESTS", "SHARE", "COST", "COST%", "P50 ms", "P95 ms", "P99 ms", "ERR%"
    );
    for (name, g) in &rows.0 {
        let _ = writeln!(
            out,
            "  {:<32} {:>9} {:>5.1}% {:>12} {:>5.1}% {:>8} {:>8} {:>8} {:>5.1}%",
            truncate(&sanitize(name), 32),
            g.requests,
            g.request_share,
            usd(g.cost),
            g.percentage,
            ms(g.latency.p50),
            ms(g.latency.p95),
            ms(g.latency.p99),
            g.error_rate
        );
    }
}

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let s = &r.summary;
    let _ = writeln!(
        out,
        "Window       {} → {}  ({:.0} s)",
        r.window.start.as_deref().unwrap_or("-"),
        r.window.end.as_deref().unwrap_or("-"),
        r.window.seconds
    );
    let _ = writeln!(out, "Requests     {}  ({:.2}/s)", s.total_requests, s.requests_per_second);
    let e = &r.errors;
    let _ = writeln!(
        out,
        "Errors       {:.2}%  4xx {}  5xx {}  429 {}  no response {}  success {:.2}%",
        e.error_rate, e.errors.e4xx, e.errors.e5xx, e.errors.e429, e.errors.status_0, s.success_rate
    );
    let _ = writeln!(
        out,
        "Cost         {}  per request {}  per user {}  unpriced requests {}",
        usd(r.cost.total),
        usd(r.cost.avg_cost_per_request),
        usd(r.cost.avg_cost_per_user),
        r.cost.unpriced_requests
    );
    latency_line(&mut out, "Latency ms", &r.latency);
    latency_line(&mut out, "TTFT ms", &r.ttft);
    let t = &r.tokens;
    let _ = writeln!(
        out,
        "Tokens       {} (prompt {}, completion {}), {:.1} per request",
        t.total_tokens, t.prompt_tokens, t.completion_tokens, t.avg_tokens_per_request
    );
    let c = &r.cache;
    let _ = writeln!(out, "Cache        {} hits ({:.2}%), saved {}", c.cache_hits, c.hit_rate, usd(c.cost_saved));
    let _ = writeln!(
        out,
        "Users        {}{} active, {:.1} requests each; retries {:.2}%; feedback {} rated, {:.1}% positive",
        s.active_users,
        if s.active_users_exact { "" } else { " (estimated)" },
        s.requests_per_user,
        s.retry_rate,
        s.feedback.rated,
        s.feedback.positive_rate
    );
    if let Some(ss) = &r.sessions {
        let _ = writeln!(
            out,
            "Sessions     {}  avg {:.1} s, {:.1} requests, {}; {:.1}% without errors",
            ss.total_sessions,
            ss.avg_duration,
            ss.avg_request_count,
            usd(ss.avg_cost),
            ss.success_rate
        );
    }
    if let Some(m) = &r.by_model {
        groups(&mut out, "By model", m);
    }
    if let Some(p) = &r.by_provider {
        groups(&mut out, "By provider", p);
    }
    for (key, values) in &r.by_property.0 {
        groups(&mut out, &format!("By property {}", sanitize(key)), values);
    }
    if let Some(users) = r.users.as_ref().filter(|u| !u.is_empty()) {
        let _ = writeln!(out, "\nTop users");
        let _ = writeln!(out, "  {:<32} {:>9} {:>12} {:>10}  LAST ACTIVE", "USER", "REQUESTS", "COST", "AVG ms");
        for u in users {
            let _ = writeln!(
                out,
                "  {:<32} {:>9} {:>12} {:>10}  {}",
                truncate(&sanitize(&u.user_id), 32),
                u.request_count,
                usd(u.total_cost),
                ms(u.avg_latency),
                u.last_active
            );
        }
    }
    let i = &r.ingest;
    let _ = writeln!(
        out,
        "\nIngest       {} lines, {} events, {} parse errors, {} outside the window",
        i.lines, i.events, i.parse_errors, i.outside_window
    );
    out
}
