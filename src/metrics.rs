//! Prometheus metrics (`--metrics ADDR`): the events a process sees, as counters and
//! histograms a Prometheus server scrapes from `http://ADDR/metrics`, so that Grafana
//! and alertmanager see what the console shows.
//!
//! Counts are cumulative since the process started (Prometheus computes rates and
//! windows). Labels are `provider` and `model`, plus `status_class` on requests and
//! `kind` on tokens; users and properties become labels only when asked
//! (`--metrics-label user`, `--metrics-label feature`). Cardinality is bounded: each
//! label keeps at most [`MAX_VALUES`] values, later ones are counted under `(other)`.
//!
//! Latency buckets are chosen for LLM calls (100 ms to 5 min), TTFT buckets for first
//! tokens (50 ms to 30 s).

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::event::Event;
use crate::pricing::Cost;

/// Values a label keeps before the rest go to `(other)`.
pub const MAX_VALUES: usize = 500;
/// The value that stands for every value past [`MAX_VALUES`].
pub const OTHER: &str = "(other)";
/// Labels besides provider and model, at most.
pub const MAX_EXTRA_LABELS: usize = 4;

/// Request latency buckets, seconds.
const LATENCY: [f64; 17] =
    [0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 300.0];
/// Time-to-first-token buckets, seconds.
const TTFT: [f64; 14] = [0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0];

const CLASSES: [&str; 5] = ["2xx", "3xx", "4xx", "5xx", "none"];
const TOKEN_KINDS: [&str; 5] = ["prompt", "completion", "cache_read", "cache_write", "reasoning"];

/// A label beyond provider and model.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Extra {
    User,
    Property(String),
}

impl Extra {
    fn name(&self) -> String {
        match self {
            Extra::User => "user".into(),
            Extra::Property(p) => format!("property_{}", sanitize_name(p)),
        }
    }

    fn value<'e>(&self, ev: &'e Event) -> &'e str {
        match self {
            Extra::User => ev.user_id.as_deref().unwrap_or(""),
            Extra::Property(p) => {
                ev.properties.iter().rev().find(|(k, _)| k == p).map(|(_, v)| v.as_ref()).unwrap_or("")
            }
        }
    }
}

/// A label name of letters, digits and underscores.
fn sanitize_name(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect()
}

#[derive(Default, Clone)]
struct Histogram {
    /// Per bucket (not cumulative), and past the last.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; bounds.len() + 1];
        }
        let i = bounds.partition_point(|b| *b < v);
        self.counts[i] += 1;
        self.sum += v;
        self.count += 1;
    }
}

#[derive(Default)]
struct Series {
    labels: Vec<Box<str>>,
    requests: [u64; 5],
    tokens: [u64; 5],
    cost: f64,
    unpriced: u64,
    cache_hits: u64,
    latency: Histogram,
    ttft: Histogram,
}

#[derive(Default)]
struct Registry {
    series: Vec<Series>,
    /// Series by the hash of their label values.
    index: HashMap<u64, Vec<usize>>,
    /// Values kept, per label (provider, model, extras).
    values: Vec<std::collections::HashSet<Box<str>>>,
    events: u64,
}

/// The metrics of one process.
pub struct Metrics {
    extra: Vec<Extra>,
    registry: Mutex<Registry>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("extra", &self.extra).finish_non_exhaustive()
    }
}

impl Metrics {
    /// `labels`: `user` and property names to add as labels.
    pub fn new(labels: &[String]) -> Result<Arc<Metrics>, String> {
        if labels.len() > MAX_EXTRA_LABELS {
            return Err(format!("at most {MAX_EXTRA_LABELS} --metrics-label"));
        }
        let extra = labels
            .iter()
            .map(|l| match l.trim() {
                "" => Err("--metrics-label: an empty name".to_string()),
                "user" => Ok(Extra::User),
                p => Ok(Extra::Property(p.to_string())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let values = vec![Default::default(); 2 + extra.len()];
        Ok(Arc::new(Metrics { extra, registry: Mutex::new(Registry { values, ..Registry::default() }) }))
    }

    /// Counts one event, with what it cost.
    pub fn record(&self, ev: &Event, cost: Cost) {
        let mut raw: [&str; 2 + MAX_EXTRA_LABELS] = [""; 2 + MAX_EXTRA_LABELS];
        raw[0] = ev.provider();
        raw[1] = ev.model();
        for (i, e) in self.extra.iter().enumerate() {
            raw[2 + i] = e.value(ev);
        }
        let n = 2 + self.extra.len();
        let mut reg = self.registry.lock().expect("metrics lock");
        // Past its bound, a label's new values are `(other)`.
        for (i, v) in raw[..n].iter_mut().enumerate() {
            let kept = &mut reg.values[i];
            if !kept.contains(*v) {
                if kept.len() < MAX_VALUES {
                    kept.insert((*v).into());
                } else {
                    *v = OTHER;
                }
            }
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        raw[..n].hash(&mut h);
        let hash = h.finish();
        let found = reg.index.get(&hash).and_then(|ids| {
            ids.iter().copied().find(|&i| reg.series[i].labels.iter().map(|l| &**l).eq(raw[..n].iter().copied()))
        });
        let i = match found {
            Some(i) => i,
            None => {
                let i = reg.series.len();
                reg.series.push(Series { labels: raw[..n].iter().map(|s| (*s).into()).collect(), ..Series::default() });
                reg.index.entry(hash).or_default().push(i);
                i
            }
        };
        reg.events += 1;
        let s = &mut reg.series[i];
        let class = match ev.status {
            200..=299 => 0,
            300..=399 => 1,
            400..=499 => 2,
            500..=599 => 3,
            _ => 4,
        };
        s.requests[class] += 1;
        let tokens =
            [ev.prompt_tokens, ev.completion_tokens, ev.cache_read_tokens, ev.cache_write_tokens, ev.reasoning_tokens];
        for (slot, t) in s.tokens.iter_mut().zip(tokens) {
            *slot += t;
        }
        match cost {
            Cost::Billed(c) | Cost::Priced(c) => s.cost += c,
            Cost::CacheHit { .. } => {}
            Cost::Unpriced => s.unpriced += 1,
        }
        if ev.cache_hit {
            s.cache_hits += 1;
        }
        if let Some(l) = ev.latency_ms {
            s.latency.observe(&LATENCY, l / 1e3);
        }
        if let Some(t) = ev.ttft_ms {
            s.ttft.observe(&TTFT, t / 1e3);
        }
    }

    /// The Prometheus text exposition format (0.0.4).
    pub fn render(&self) -> String {
        let reg = self.registry.lock().expect("metrics lock");
        let mut names = vec!["provider".to_string(), "model".to_string()];
        names.extend(self.extra.iter().map(Extra::name));
        let mut order: Vec<usize> = (0..reg.series.len()).collect();
        order.sort_by(|&a, &b| reg.series[a].labels.cmp(&reg.series[b].labels));
        let labels = |s: &Series, more: &str| {
            let mut out = String::from("{");
            for (n, v) in names.iter().zip(&s.labels) {
                let _ = write!(out, "{n}=\"{}\",", escape(v));
            }
            out.push_str(more);
            if out.ends_with(',') {
                out.pop();
            }
            out.push('}');
            out
        };
        let mut out = String::new();
        let family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family(&mut out, "tokentop_events_total", "counter", "Events (LLM calls) seen since the process started.");
        let _ = writeln!(out, "tokentop_events_total {}", reg.events);
        family(
            &mut out,
            "tokentop_requests_total",
            "counter",
            "LLM requests by provider, model and status class (none: no response).",
        );
        for &i in &order {
            let s = &reg.series[i];
            for (c, n) in CLASSES.iter().zip(s.requests) {
                if n > 0 {
                    let _ = writeln!(out, "tokentop_requests_total{} {n}", labels(s, &format!("status_class=\"{c}\"")));
                }
            }
        }
        family(
            &mut out,
            "tokentop_tokens_total",
            "counter",
            "Tokens by kind (prompt tokens include cached ones; completion tokens include reasoning).",
        );
        for &i in &order {
            let s = &reg.series[i];
            for (k, n) in TOKEN_KINDS.iter().zip(s.tokens) {
                let _ = writeln!(out, "tokentop_tokens_total{} {n}", labels(s, &format!("kind=\"{k}\"")));
            }
        }
        family(
            &mut out,
            "tokentop_cost_usd_total",
            "counter",
            "Cost in USD, as billed or from the price table (unpriced requests add nothing).",
        );
        for &i in &order {
            let s = &reg.series[i];
            let _ = writeln!(out, "tokentop_cost_usd_total{} {}", labels(s, ""), number(s.cost));
        }
        family(&mut out, "tokentop_unpriced_requests_total", "counter", "Requests with no bill and no price.");
        for &i in &order {
            let s = &reg.series[i];
            let _ = writeln!(out, "tokentop_unpriced_requests_total{} {}", labels(s, ""), s.unpriced);
        }
        family(&mut out, "tokentop_cache_hits_total", "counter", "Requests served from a gateway cache.");
        for &i in &order {
            let s = &reg.series[i];
            let _ = writeln!(out, "tokentop_cache_hits_total{} {}", labels(s, ""), s.cache_hits);
        }
        for (name, help, bounds, pick) in [
            (
                "tokentop_request_duration_seconds",
                "Request latency, to the last byte.",
                &LATENCY[..],
                (|s: &Series| &s.latency) as fn(&Series) -> &Histogram,
            ),
            (
                "tokentop_time_to_first_token_seconds",
                "Time to first token of streamed requests.",
                &TTFT[..],
                |s: &Series| &s.ttft,
            ),
        ] {
            family(&mut out, name, "histogram", help);
            for &i in &order {
                let s = &reg.series[i];
                let h = pick(s);
                if h.count == 0 {
                    continue;
                }
                let mut cumulative = 0;
                for (b, n) in bounds.iter().zip(&h.counts) {
                    cumulative += n;
                    let _ = writeln!(out, "{name}_bucket{} {cumulative}", labels(s, &format!("le=\"{}\"", number(*b))));
                }
                let _ = writeln!(out, "{name}_bucket{} {}", labels(s, "le=\"+Inf\""), h.count);
                let _ = writeln!(out, "{name}_sum{} {}", labels(s, ""), number(h.sum));
                let _ = writeln!(out, "{name}_count{} {}", labels(s, ""), h.count);
            }
        }
        out
    }
}

/// Prices events and counts them, for a command that parses events without pricing
/// them (`serve`, a headless `proxy`); does nothing without metrics.
pub struct Counter {
    metrics: Option<Arc<Metrics>>,
    prices: crate::pricing::PriceTable,
    cache: crate::pricing::PriceCache,
}

impl Counter {
    pub fn new(metrics: Option<Arc<Metrics>>) -> Counter {
        let prices = if metrics.is_some() { crate::pricing::PriceTable::builtin() } else { Default::default() };
        Counter { metrics, prices, cache: Default::default() }
    }

    pub fn event(&mut self, ev: &Event) {
        if let Some(m) = &self.metrics {
            let price = self.cache.get(&self.prices, ev.provider(), ev.model());
            m.record(ev, crate::pricing::cost_of(ev, price.as_ref()));
        }
    }
}

/// A label value in the text format: backslash, quote and line feed escaped.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A float as Prometheus reads it back exactly.
fn number(v: f64) -> String {
    format!("{v:?}")
}

/// Serves `GET /metrics` on `addr` until the process ends.
pub async fn serve(addr: &str, metrics: Arc<Metrics>) -> Result<std::net::SocketAddr, String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("--metrics: cannot listen on {addr}: {e}; choose another address"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let metrics = metrics.clone();
                    async move {
                        let mut r = if req.uri().path() == "/metrics" {
                            let mut r = Response::new(Full::new(Bytes::from(metrics.render())));
                            r.headers_mut().insert(
                                "content-type",
                                "text/plain; version=0.0.4; charset=utf-8".parse().expect("header"),
                            );
                            r
                        } else {
                            Response::new(Full::new(Bytes::from_static(b"tokentop: metrics are at /metrics\n")))
                        };
                        if req.uri().path() != "/metrics" {
                            *r.status_mut() = StatusCode::NOT_FOUND;
                        }
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn ev(model: &str, status: u16, latency: f64, user: &str) -> Event<'static> {
        Event {
            provider: Some(Cow::Borrowed("openai")),
            model: Some(Cow::Owned(model.to_string())),
            status,
            latency_ms: Some(latency),
            prompt_tokens: 100,
            completion_tokens: 10,
            cache_read_tokens: 40,
            user_id: Some(Cow::Owned(user.to_string())),
            properties: vec![(Cow::Borrowed("feature"), Cow::Borrowed("search"))],
            ..Event::default()
        }
    }

    #[test]
    fn counts_render_in_the_text_format() {
        let m = Metrics::new(&["feature".to_string()]).unwrap();
        m.record(&ev("gpt-4o", 200, 800.0, "a"), Cost::Priced(0.25));
        m.record(&ev("gpt-4o", 429, 100.0, "b"), Cost::Priced(0.5));
        let mut e = ev("we\"ird\nmodel", 0, 2500.0, "c");
        e.ttft_ms = Some(300.0);
        m.record(&e, Cost::Unpriced);
        let text = m.render();
        let want = [
            "tokentop_events_total 3",
            r#"tokentop_requests_total{provider="openai",model="gpt-4o",property_feature="search",status_class="2xx"} 1"#,
            r#"tokentop_requests_total{provider="openai",model="gpt-4o",property_feature="search",status_class="4xx"} 1"#,
            r#"tokentop_requests_total{provider="openai",model="we\"ird\nmodel",property_feature="search",status_class="none"} 1"#,
            r#"tokentop_tokens_total{provider="openai",model="gpt-4o",property_feature="search",kind="prompt"} 200"#,
            r#"tokentop_tokens_total{provider="openai",model="gpt-4o",property_feature="search",kind="cache_read"} 80"#,
            r#"tokentop_cost_usd_total{provider="openai",model="gpt-4o",property_feature="search"} 0.75"#,
            r#"tokentop_unpriced_requests_total{provider="openai",model="we\"ird\nmodel",property_feature="search"} 1"#,
            r#"tokentop_request_duration_seconds_bucket{provider="openai",model="gpt-4o",property_feature="search",le="0.1"} 1"#,
            r#"tokentop_request_duration_seconds_bucket{provider="openai",model="gpt-4o",property_feature="search",le="0.5"} 1"#,
            r#"tokentop_request_duration_seconds_bucket{provider="openai",model="gpt-4o",property_feature="search",le="1.0"} 2"#,
            r#"tokentop_request_duration_seconds_bucket{provider="openai",model="gpt-4o",property_feature="search",le="+Inf"} 2"#,
            r#"tokentop_request_duration_seconds_sum{provider="openai",model="gpt-4o",property_feature="search"} 0.9"#,
            r#"tokentop_time_to_first_token_seconds_bucket{provider="openai",model="we\"ird\nmodel",property_feature="search",le="0.2"} 0"#,
            r#"tokentop_time_to_first_token_seconds_bucket{provider="openai",model="we\"ird\nmodel",property_feature="search",le="0.3"} 1"#,
        ];
        for w in want {
            assert!(text.lines().any(|l| l == w), "missing {w}\n{text}");
        }
        // No TTFT series for a model without streamed calls.
        assert!(!text.contains(r#"tokentop_time_to_first_token_seconds_count{provider="openai",model="gpt-4o""#));
    }

    #[test]
    fn label_values_are_bounded() {
        let m = Metrics::new(&["user".to_string()]).unwrap();
        for i in 0..MAX_VALUES + 100 {
            m.record(&ev("m", 200, 1.0, &format!("u{i}")), Cost::Unpriced);
        }
        let text = m.render();
        let series = text.lines().filter(|l| l.starts_with("tokentop_requests_total{")).count();
        assert_eq!(series, MAX_VALUES + 1);
        let other = r#"tokentop_requests_total{provider="openai",model="m",user="(other)",status_class="2xx"} 100"#;
        assert!(text.lines().any(|l| l == other), "{text}");
        assert!(Metrics::new(&vec!["a".to_string(); 5]).is_err());
    }
}
