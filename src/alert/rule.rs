//! Alert rules as the config file writes them (`[[alerts]]` tables), checked once:
//! an invalid rule is reported with its name and the problem, and skipped.

use crate::filter::Filter;
use crate::report::{Group, Report};
use crate::stats::{SessionAgg, UserAgg};
use crate::time::{Micros, parse_duration};

/// Comparison of the metric with the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
        }
    }

    /// `<` or `<=`: fires on too little (where a window not yet seen whole would mislead).
    pub fn is_below(self) -> bool {
        matches!(self, Op::Lt | Op::Le)
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
        }
    }
}

/// What a rule watches each group by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    Model,
    Provider,
    User,
    Session,
    Property(String),
}

impl GroupBy {
    /// The metrics this grouping has (users and sessions keep fewer numbers than models).
    pub fn metrics(&self) -> &'static [&'static str] {
        match self {
            GroupBy::Model | GroupBy::Provider | GroupBy::Property(_) => &GROUP_METRICS,
            GroupBy::User => &USER_METRICS,
            GroupBy::Session => &SESSION_METRICS,
        }
    }
}

/// What a rule compares with its threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// The metric itself.
    Threshold,
    /// The metric divided by its value over a baseline window (2.0 = doubled).
    Ratio(Baseline),
    /// How many standard deviations the metric is from its mean over the last N windows.
    ZScore(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    /// The window just before.
    Previous,
    /// The same window one day earlier.
    Yesterday,
}

/// What a rule does when its window has no data (or fewer than `min_requests`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// Treat as OK: a firing alert resolves.
    Ok,
    /// Keep the state it had.
    Keep,
    /// Mark it "no data" (a firing alert resolves).
    NoData,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub kind: Kind,
    pub missing: Missing,
    pub name: String,
    pub metric: String,
    pub op: Op,
    pub threshold: f64,
    /// Fires as a warning when crossed (and the threshold is not).
    pub warning: Option<f64>,
    pub window: Micros,
    pub min_requests: u64,
    /// How long the condition must hold before firing.
    pub for_: Micros,
    pub group_by: Option<GroupBy>,
    pub filter: Option<Filter>,
    pub severity: String,
    /// While firing, notify again this often.
    pub renotify: Option<Micros>,
}

/// The metrics a rule may watch: the report's field names.
pub const METRICS: [&str; 20] = [
    "request_count",
    "requests_per_second",
    "error_rate",
    "rate_4xx",
    "rate_5xx",
    "rate_429",
    "latency_avg",
    "latency_p50",
    "latency_p95",
    "latency_p99",
    "ttft_avg",
    "ttft_p95",
    "total_cost",
    "cost_per_request",
    "total_tokens",
    "cache_hit_rate",
    "feedback_positive_rate",
    "active_users",
    "avg_tokens_per_request",
    "success_rate",
];

/// The unit a metric is written in.
pub fn unit(metric: &str) -> &'static str {
    match metric {
        "requests_per_second" => "/s",
        "error_rate"
        | "rate_4xx"
        | "rate_5xx"
        | "rate_429"
        | "cache_hit_rate"
        | "feedback_positive_rate"
        | "success_rate" => "%",
        "latency_avg" | "latency_p50" | "latency_p95" | "latency_p99" | "ttft_avg" | "ttft_p95" => "ms",
        "total_cost" | "cost_per_request" => "$",
        _ => "",
    }
}

/// A metric's value over a whole report (`None`: no data, e.g. no latencies).
pub fn overall(report: &Report, metric: &str) -> Option<f64> {
    let s = &report.summary;
    Some(match metric {
        "request_count" => s.total_requests as f64,
        "requests_per_second" => s.requests_per_second,
        "error_rate" => report.errors.error_rate,
        "rate_4xx" => report.errors.rate_4xx,
        "rate_5xx" => report.errors.rate_5xx,
        "rate_429" => report.errors.rate_429,
        "latency_avg" => report.latency.avg?,
        "latency_p50" => report.latency.p50?,
        "latency_p95" => report.latency.p95?,
        "latency_p99" => report.latency.p99?,
        "ttft_avg" => report.ttft.avg?,
        "ttft_p95" => report.ttft.p95?,
        "total_cost" => report.cost.total,
        "cost_per_request" => report.cost.avg_cost_per_request,
        "total_tokens" => report.tokens.total_tokens as f64,
        "cache_hit_rate" => report.cache.hit_rate,
        "feedback_positive_rate" => (s.feedback.rated > 0).then_some(s.feedback.positive_rate)?,
        "active_users" => s.active_users as f64,
        "avg_tokens_per_request" => report.tokens.avg_tokens_per_request,
        "success_rate" => s.success_rate,
        _ => return None,
    })
}

/// A metric's value for one group (model, provider, property value).
pub fn of_group(g: &Group, metric: &str, window_secs: f64) -> Option<f64> {
    Some(match metric {
        "request_count" => g.requests as f64,
        "requests_per_second" => g.requests as f64 / window_secs.max(1e-9),
        "error_rate" => g.error_rate,
        "rate_429" => g.rate_429,
        "latency_avg" => g.latency.avg?,
        "latency_p50" => g.latency.p50?,
        "latency_p95" => g.latency.p95?,
        "latency_p99" => g.latency.p99?,
        "ttft_avg" => g.ttft_avg?,
        "total_cost" => g.cost,
        "cost_per_request" => g.cost_per_request,
        "total_tokens" => g.tokens as f64,
        "cache_hit_rate" => g.cache_hit_rate,
        _ => return None,
    })
}

/// A metric's value for one user.
pub fn of_user(u: &UserAgg, metric: &str, window_secs: f64) -> Option<f64> {
    let pct = |n: u64| if u.requests == 0 { 0.0 } else { n as f64 * 100.0 / u.requests as f64 };
    Some(match metric {
        "request_count" => u.requests as f64,
        "requests_per_second" => u.requests as f64 / window_secs.max(1e-9),
        "error_rate" => pct(u.errors),
        "rate_429" => pct(u.e429),
        "latency_avg" => u.latency.avg_ms()?,
        "ttft_avg" => u.ttft.avg_ms()?,
        "total_cost" => u.cost.to_f64(),
        "cost_per_request" => u.cost.to_f64() / (u.requests.max(1)) as f64,
        "total_tokens" => u.tokens() as f64,
        "cache_hit_rate" => pct(u.cache_hits),
        _ => return None,
    })
}

/// A metric's value for one session.
pub fn of_session(s: &SessionAgg, metric: &str, window_secs: f64) -> Option<f64> {
    Some(match metric {
        "request_count" => s.requests as f64,
        "requests_per_second" => s.requests as f64 / window_secs.max(1e-9),
        "error_rate" => {
            if s.requests == 0 {
                0.0
            } else {
                s.errors as f64 * 100.0 / s.requests as f64
            }
        }
        "total_cost" => s.cost.to_f64(),
        "cost_per_request" => s.cost.to_f64() / (s.requests.max(1)) as f64,
        _ => return None,
    })
}

/// The metrics available per group (the rest only overall).
pub const GROUP_METRICS: [&str; 13] = [
    "request_count",
    "requests_per_second",
    "error_rate",
    "rate_429",
    "latency_avg",
    "latency_p50",
    "latency_p95",
    "latency_p99",
    "ttft_avg",
    "total_cost",
    "cost_per_request",
    "total_tokens",
    "cache_hit_rate",
];

/// The metrics each user has.
pub const USER_METRICS: [&str; 10] = [
    "request_count",
    "requests_per_second",
    "error_rate",
    "rate_429",
    "latency_avg",
    "ttft_avg",
    "total_cost",
    "cost_per_request",
    "total_tokens",
    "cache_hit_rate",
];

/// The metrics each session has.
pub const SESSION_METRICS: [&str; 5] =
    ["request_count", "requests_per_second", "error_rate", "total_cost", "cost_per_request"];

/// Parses the `[[alerts]]` tables: the valid rules, and a message for each invalid one.
pub fn parse_rules(tables: &[toml::Table]) -> (Vec<Rule>, Vec<String>) {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for (i, t) in tables.iter().enumerate() {
        let name = t.get("name").and_then(|v| v.as_str()).map_or_else(|| format!("#{}", i + 1), str::to_string);
        match parse_rule(&name, t) {
            Ok(r) => rules.push(r),
            Err(e) => errors.push(format!("alert rule `{name}`: {e}")),
        }
    }
    (rules, errors)
}

/// Parses the `[[alerts]]` tables of a config file's text (its other settings are ignored).
pub fn parse_rules_str(text: &str) -> Result<(Vec<Rule>, Vec<String>), toml::de::Error> {
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(default)]
        alerts: Vec<toml::Table>,
    }
    let file: File = toml::from_str(text)?;
    Ok(parse_rules(&file.alerts))
}

fn parse_rule(name: &str, t: &toml::Table) -> Result<Rule, String> {
    const KNOWN: [&str; 15] = [
        "name",
        "metric",
        "op",
        "threshold",
        "warning",
        "window",
        "min_requests",
        "for",
        "group_by",
        "filter",
        "severity",
        "renotify",
        "baseline",
        "zscore",
        "missing",
    ];
    if let Some(k) = t.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!("unknown setting `{k}` (known: {})", KNOWN.join(", ")));
    }
    let text = |k: &str| -> Result<Option<&str>, String> {
        match t.get(k) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| format!("`{k}` must be a string")),
        }
    };
    let number = |k: &str| -> Result<Option<f64>, String> {
        match t.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_float()
                .or_else(|| v.as_integer().map(|i| i as f64))
                .map(Some)
                .ok_or_else(|| format!("`{k}` must be a number")),
        }
    };
    let metric = text("metric")?.ok_or("`metric` is missing")?.to_string();
    if !METRICS.contains(&metric.as_str()) {
        return Err(format!("unknown metric `{metric}` (one of {})", METRICS.join(", ")));
    }
    let op = match text("op")?.unwrap_or(">") {
        ">" => Op::Gt,
        ">=" => Op::Ge,
        "<" => Op::Lt,
        "<=" => Op::Le,
        other => return Err(format!("`op` is `{other}`: use >, >=, < or <=")),
    };
    let threshold = number("threshold")?.ok_or("`threshold` is missing")?;
    let warning = number("warning")?;
    if let Some(w) = warning
        && !(op.holds(threshold, w) || w == threshold)
    {
        return Err(format!("`warning` ({w}) must come before `threshold` ({threshold}) for op {}", op.symbol()));
    }
    let duration = |k: &str, default: &str| -> Result<Micros, String> {
        parse_duration(text(k)?.unwrap_or(default)).map_err(|e| format!("`{k}`: {e}"))
    };
    let window = duration("window", "5m")?;
    if !(30_000_000..=30 * 86_400_000_000).contains(&window) {
        return Err("`window` must be between 30s and 30d".into());
    }
    let for_ = match text("for")? {
        Some("0") | Some("0s") | None => 0,
        Some(d) => parse_duration(d).map_err(|e| format!("`for`: {e}"))?,
    };
    let min_requests = match number("min_requests")? {
        Some(n) if n >= 0.0 && n.fract() == 0.0 => n as u64,
        Some(_) => return Err("`min_requests` must be a whole number ≥ 0".into()),
        None => 1,
    };
    let group_by = match text("group_by")? {
        None => None,
        Some("model") => Some(GroupBy::Model),
        Some("provider") => Some(GroupBy::Provider),
        Some("user") => Some(GroupBy::User),
        Some("session") => Some(GroupBy::Session),
        Some(p) => match p.strip_prefix("property:") {
            Some(k) if !k.is_empty() => Some(GroupBy::Property(k.to_string())),
            _ => return Err(format!("`group_by` is `{p}`: use model, provider, user, session or property:NAME")),
        },
    };
    if let Some(g) = &group_by
        && !g.metrics().contains(&metric.as_str())
    {
        return Err(format!("`{metric}` is not available per group (here: {})", g.metrics().join(", ")));
    }
    let renotify = match text("renotify")? {
        None => None,
        Some(d) => Some(parse_duration(d).map_err(|e| format!("`renotify`: {e}"))?).filter(|d| *d > 0),
    };
    let filter = text("filter")?.map(|f| f.parse::<Filter>().map_err(|e| e.to_string())).transpose()?;
    let severity = text("severity")?.unwrap_or("critical").to_string();
    let kind = match (text("baseline")?, number("zscore")?) {
        (Some(_), Some(_)) => return Err("give `baseline` or `zscore`, not both".into()),
        (Some("previous"), None) => Kind::Ratio(Baseline::Previous),
        (Some("yesterday"), None) => Kind::Ratio(Baseline::Yesterday),
        (Some(b), None) => return Err(format!("`baseline` is `{b}`: use previous or yesterday")),
        (None, Some(n)) if (2.0..=1000.0).contains(&n) && n.fract() == 0.0 => Kind::ZScore(n as usize),
        (None, Some(_)) => return Err("`zscore` is the number of past windows: a whole number from 2 to 1000".into()),
        (None, None) => Kind::Threshold,
    };
    let missing = match text("missing")?.unwrap_or("ok") {
        "ok" => Missing::Ok,
        "keep" => Missing::Keep,
        "nodata" | "no-data" => Missing::NoData,
        m => return Err(format!("`missing` is `{m}`: use ok, keep or nodata")),
    };
    Ok(Rule {
        kind,
        missing,
        name: name.to_string(),
        metric,
        op,
        threshold,
        warning,
        window,
        min_requests,
        for_,
        group_by,
        filter,
        severity,
        renotify,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid_rules() {
        let (rules, errors) = parse_rules_str(
            r#"
            [[alerts]]
            name = "error-rate"
            metric = "error_rate"
            op = ">"
            threshold = 5
            warning = 3
            window = "5m"
            min_requests = 20
            for = "1m"
            group_by = "provider"
            filter = "model:gpt-4o*"
            severity = "critical"

            [[alerts]]
            name = "typo"
            metric = "eror_rate"
            threshold = 1

            [[alerts]]
            name = "bad-warning"
            metric = "latency_p95"
            threshold = 1000
            warning = 2000

            [[alerts]]
            name = "users-per-group"
            metric = "active_users"
            threshold = 1
            group_by = "model"

            [[alerts]]
            name = "traffic-stopped"
            metric = "request_count"
            op = "<"
            threshold = 1
            min_requests = 0
            "#,
        )
        .unwrap();
        assert_eq!(rules.len(), 2);
        let r = &rules[0];
        assert_eq!((r.op, r.threshold, r.warning, r.min_requests), (Op::Gt, 5.0, Some(3.0), 20));
        assert_eq!((r.window, r.for_), (300_000_000, 60_000_000));
        assert_eq!(r.group_by, Some(GroupBy::Provider));
        assert_eq!(errors.len(), 3);
        assert!(errors[0].contains("`typo`") && errors[0].contains("eror_rate"), "{errors:?}");
        assert!(errors[1].contains("`bad-warning`") && errors[1].contains("warning"), "{errors:?}");
        assert!(errors[2].contains("not available per group"), "{errors:?}");
    }
}
