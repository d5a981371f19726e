//! Synthetic LLM traffic: realistic enough to benchmark on and to demo with.
//!
//! Deterministic for a seed: 14 models on 5 providers with their own latency profiles
//! (lognormal), about 2.5% errors (429s, 5xx, timeouts), 20% cache hits, retries,
//! feedback, thousands of users with a heavy-tailed activity, sessions with paths, and
//! a few custom properties.

use std::borrow::Cow;
use std::io::Write as _;

use crate::event::Event;
use crate::time::Micros;

/// SplitMix64: tiny, fast, and good enough for synthetic data (not for security).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.f64().max(1e-300);
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Lognormal with the given median and shape.
    pub fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }
}

/// A model the generator sends traffic to.
#[derive(Clone)]
struct Model {
    provider: &'static str,
    name: Cow<'static, str>,
    /// Share of traffic (relative weight).
    weight: f64,
    latency_median_ms: f64,
    ttft_median_ms: f64,
    /// Whether the gateway reports `cost_usd` itself (otherwise tokentop prices it).
    billed: bool,
}

const MODELS: [Model; 14] = [
    Model {
        provider: "openai",
        name: Cow::Borrowed("gpt-4o"),
        weight: 14.0,
        latency_median_ms: 1400.0,
        ttft_median_ms: 380.0,
        billed: true,
    },
    Model {
        provider: "openai",
        name: Cow::Borrowed("gpt-4o-mini"),
        weight: 22.0,
        latency_median_ms: 700.0,
        ttft_median_ms: 220.0,
        billed: false,
    },
    Model {
        provider: "openai",
        name: Cow::Borrowed("gpt-4.1"),
        weight: 6.0,
        latency_median_ms: 1800.0,
        ttft_median_ms: 450.0,
        billed: false,
    },
    Model {
        provider: "openai",
        name: Cow::Borrowed("o4-mini"),
        weight: 4.0,
        latency_median_ms: 5200.0,
        ttft_median_ms: 2500.0,
        billed: true,
    },
    Model {
        provider: "openai",
        name: Cow::Borrowed("text-embedding-3-small"),
        weight: 10.0,
        latency_median_ms: 90.0,
        ttft_median_ms: 0.0,
        billed: false,
    },
    Model {
        provider: "anthropic",
        name: Cow::Borrowed("claude-sonnet-4-5"),
        weight: 12.0,
        latency_median_ms: 2100.0,
        ttft_median_ms: 600.0,
        billed: false,
    },
    Model {
        provider: "anthropic",
        name: Cow::Borrowed("claude-haiku-4-5"),
        weight: 8.0,
        latency_median_ms: 800.0,
        ttft_median_ms: 250.0,
        billed: true,
    },
    Model {
        provider: "anthropic",
        name: Cow::Borrowed("claude-3-7-sonnet-20250219"),
        weight: 2.0,
        latency_median_ms: 2400.0,
        ttft_median_ms: 700.0,
        billed: false,
    },
    Model {
        provider: "gemini",
        name: Cow::Borrowed("gemini-2.5-flash"),
        weight: 7.0,
        latency_median_ms: 900.0,
        ttft_median_ms: 300.0,
        billed: false,
    },
    Model {
        provider: "gemini",
        name: Cow::Borrowed("gemini-2.5-pro"),
        weight: 3.0,
        latency_median_ms: 3000.0,
        ttft_median_ms: 900.0,
        billed: false,
    },
    Model {
        provider: "mistral",
        name: Cow::Borrowed("mistral-large-latest"),
        weight: 3.0,
        latency_median_ms: 1600.0,
        ttft_median_ms: 420.0,
        billed: false,
    },
    Model {
        provider: "mistral",
        name: Cow::Borrowed("mistral-small-latest"),
        weight: 3.0,
        latency_median_ms: 600.0,
        ttft_median_ms: 180.0,
        billed: false,
    },
    Model {
        provider: "deepseek",
        name: Cow::Borrowed("deepseek-chat"),
        weight: 4.0,
        latency_median_ms: 2000.0,
        ttft_median_ms: 700.0,
        billed: false,
    },
    Model {
        provider: "deepseek",
        name: Cow::Borrowed("deepseek-reasoner"),
        weight: 2.0,
        latency_median_ms: 9000.0,
        ttft_median_ms: 4000.0,
        billed: false,
    },
];

const FEATURES: &[&str] =
    &["chat", "search", "summarize", "code-review", "support-bot", "extract", "translate", "agent"];
const ENVIRONMENTS: &[&str] = &["production", "production", "production", "staging", "dev"];
const TIERS: &[&str] = &["free", "pro", "enterprise"];
const PATHS: &[&str] = &["/plan", "/plan/search", "/plan/search/read", "/answer", "/answer/verify", "/tool/call"];
const ERRORS: &[(u16, &str)] = &[
    (429, "rate limit exceeded"),
    (429, "too many requests"),
    (500, "internal server error"),
    (502, "bad gateway"),
    (503, "service overloaded"),
    (400, "context length exceeded"),
    (401, "invalid api key"),
    (0, "upstream timeout"),
];

/// Generates events at a steady average rate from a start time.
pub struct Synth {
    rng: Rng,
    start: Micros,
    incidents: bool,
    models: Vec<Model>,
    t: Micros,
    mean_gap_us: f64,
    users: u64,
    sessions: u64,
    seq: u64,
    total_weight: f64,
}

impl Synth {
    /// `rate` events per second on average, starting at `start`.
    pub fn new(seed: u64, start: Micros, rate: f64) -> Self {
        Synth {
            rng: Rng::new(seed),
            start,
            incidents: false,
            models: MODELS.to_vec(),
            t: start,
            mean_gap_us: 1e6 / rate.max(1e-9),
            users: 5_000,
            sessions: 20_000,
            seq: 0,
            total_weight: MODELS.iter().map(|m| m.weight).sum(),
        }
    }

    /// Sets how many distinct users and sessions the traffic spreads over.
    pub fn with_cardinality(mut self, users: u64, sessions: u64) -> Self {
        self.users = users.max(1);
        self.sessions = sessions.max(1);
        self
    }

    /// Spreads traffic over `n` models: the 14 real ones, then fine-tuned variants of
    /// them (which the price table does not know: they show up as unpriced).
    pub fn with_models(mut self, n: usize) -> Self {
        self.models = (0..n.max(1))
            .map(|i| {
                let base = &MODELS[i % MODELS.len()];
                let name =
                    if i < MODELS.len() { base.name.clone() } else { Cow::Owned(format!("{}-ft{i}", base.name)) };
                Model { name, weight: base.weight / (1 + i / MODELS.len()) as f64, ..base.clone() }
            })
            .collect();
        self.total_weight = self.models.iter().map(|m| m.weight).sum();
        self
    }

    /// Adds a recurring incident schedule (every 10 minutes from the start): a 429
    /// storm on `anthropic` in minute 2, a latency spike on `gpt-4o` in minute 5, and
    /// a cost spike from `user-00042` in minute 8; so the console and alerts have
    /// something to show.
    pub fn with_incidents(mut self) -> Self {
        self.incidents = true;
        self
    }

    /// The time of the next event.
    pub fn now(&self) -> Micros {
        self.t
    }

    /// The start of the incident schedule (and of the traffic).
    pub fn start(&self) -> Micros {
        self.start
    }

    pub fn next_event(&mut self) -> Event<'static> {
        let r = &mut self.rng;
        self.seq += 1;
        self.t += (-(1.0 - r.f64()).ln() * self.mean_gap_us).round() as i64;
        let mut pick = r.f64() * self.total_weight;
        let model = self
            .models
            .iter()
            .find(|m| {
                pick -= m.weight;
                pick < 0.0
            })
            .unwrap_or(&self.models[0]);
        let embedding = model.ttft_median_ms == 0.0;

        // Users: a heavy tail, a few users send most of the traffic.
        let user = (r.f64().powi(3) * self.users as f64) as u64;
        // Each session belongs to one user: a user has a few of them.
        let per_user = (self.sessions / self.users).max(1);
        let session = user * per_user + r.below(per_user);
        let cache_hit = r.chance(0.20);
        let (status, error) = if !cache_hit && r.chance(0.031) {
            let (s, msg) = ERRORS[r.below(ERRORS.len() as u64) as usize];
            (s, Some(msg))
        } else {
            (200, None)
        };
        let prompt = if embedding { r.lognormal(300.0, 0.8) } else { r.lognormal(1200.0, 1.0) } as u64;
        let completion = if embedding || status != 200 { 0 } else { r.lognormal(350.0, 0.9) as u64 };
        let cache_read = if !embedding && r.chance(0.3) { prompt / 2 } else { 0 };
        let reasoning = if model.name.starts_with('o') || model.name.contains("reasoner") { completion / 2 } else { 0 };
        let latency = if cache_hit {
            r.lognormal(8.0, 0.5)
        } else if status == 0 {
            30_000.0
        } else {
            r.lognormal(model.latency_median_ms, 0.6)
        };
        let latency = (latency * 1000.0).round() / 1000.0;
        let ttft = (!embedding && status == 200 && !cache_hit)
            .then(|| ((r.lognormal(model.ttft_median_ms, 0.5).min(latency)) * 1000.0).round() / 1000.0);
        let cost = (model.billed && !cache_hit)
            .then(|| ((prompt as f64 * 2.5e-6 + completion as f64 * 1e-5) * 1e8).round() / 1e8);
        let feature = FEATURES[r.below(FEATURES.len() as u64) as usize];
        let env = ENVIRONMENTS[r.below(ENVIRONMENTS.len() as u64) as usize];
        let tier = TIERS[(user % 3) as usize];
        let path = PATHS[r.below(PATHS.len() as u64) as usize];
        let retry = if status != 200 && r.chance(0.5) { 1 + r.below(3) } else { 0 };
        let feedback = r.chance(0.05).then(|| r.chance(0.8));

        let mut ev = Event {
            request_id: Some(Cow::Owned(format!("req-{:016x}-{:08x}", r.next_u64(), self.seq))),
            created_at: self.t,
            provider: Some(Cow::Borrowed(model.provider)),
            provider_raw: None,
            model: Some(model.name.clone()),
            status,
            latency_ms: Some(latency),
            ttft_ms: ttft,
            prompt_tokens: prompt,
            completion_tokens: completion,
            cache_read_tokens: cache_read,
            cache_write_tokens: 0,
            reasoning_tokens: reasoning,
            cost_usd: cost,
            cache_hit,
            user_id: Some(Cow::Owned(format!("user-{user:05}"))),
            session_id: Some(Cow::Owned(format!("sess-{session:06}"))),
            session_name: Some(Cow::Borrowed(feature)),
            session_path: Some(Cow::Borrowed(path)),
            properties: vec![
                (Cow::Borrowed("Feature"), Cow::Borrowed(feature)),
                (Cow::Borrowed("Environment"), Cow::Borrowed(env)),
                (Cow::Borrowed("Tier"), Cow::Borrowed(tier)),
                (Cow::Borrowed("Customer"), Cow::Owned(format!("cust-{:04}", user % 1500))),
            ],
            retry,
            feedback,
            error: error.map(Cow::Borrowed),
            seq: None,
        };
        if self.incidents {
            self.incident(&mut ev);
        }
        ev
    }

    fn incident(&mut self, ev: &mut Event<'static>) {
        let minute = (ev.created_at - self.start).div_euclid(60_000_000).rem_euclid(10);
        let r = &mut self.rng;
        match minute {
            2 if ev.provider() == "anthropic" && !ev.cache_hit && r.chance(0.7) => {
                ev.status = 429;
                ev.error = Some(Cow::Borrowed("rate limit exceeded"));
                ev.latency_ms = Some((r.lognormal(40.0, 0.4) * 1000.0).round() / 1000.0);
                ev.ttft_ms = None;
                ev.completion_tokens = 0;
                ev.cost_usd = None;
                ev.retry = 1 + r.below(3);
            }
            5 if ev.model() == "gpt-4o" => {
                ev.latency_ms = ev.latency_ms.map(|l| (l * 6.0 * 1000.0).round() / 1000.0);
                ev.ttft_ms = ev.ttft_ms.map(|t| (t * 4.0 * 1000.0).round() / 1000.0);
            }
            8 if r.chance(0.3) => {
                ev.user_id = Some(Cow::Borrowed("user-00042"));
                ev.session_id = Some(Cow::Borrowed("sess-000168"));
                ev.model = Some(Cow::Borrowed("claude-sonnet-4-5"));
                ev.provider = Some(Cow::Borrowed("anthropic"));
                ev.prompt_tokens = 40_000 + r.below(60_000);
                ev.completion_tokens = 2_000 + r.below(4_000);
                ev.cache_hit = false;
                ev.cost_usd = None;
            }
            _ => {}
        }
    }
}

const SYSTEM: &str = r#"You are Acme's assistant.\nRules:\n1. Quote sources as \"[n]\".\n2. Prices in EUR (€)."#;

const USER: [&str; 6] = [
    "Summarize the attached ticket thread and list open action items.",
    "Translate to German: \\\"The invoice is overdue; please pay within 14 days.\\\"",
    "Was kostet ein Upgrade auf den Enterprise-Tarif? Bitte mit Begründung.",
    "Write a SQL query that returns the top 10 customers by revenue in 2024, grouped by region.\\n\\nTables: orders(id, customer_id, total, created_at), customers(id, region)",
    "日本語で要約してください：契約の更新日と解約条件。",
    "Fix this function:\\n```python\\ndef add(a, b):\\n    return a - b\\n```\\nand explain the bug \\ud83d\\ude42",
];

const PARAGRAPH: &str = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor \
    incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco \
    laboris nisi ut aliquip ex ea commodo consequat.\\n";

/// Writes `ev` as a gateway logs a call (with its newline): tokentop's fields, then
/// the request's `messages` (a system prompt and a user turn, from a few words to a few
/// KB, with escapes and non-ASCII text), its parameters (a quarter with a nested tool
/// schema), the response body, and errors as OpenAI-style objects. tokentop reads none
/// of these but the error object; they are there because real logs make a parser skip
/// them. For benchmarks (`gen_events --realistic`).
pub fn write_logged_line(mut ev: Event, rng: &mut Rng, out: &mut Vec<u8>) {
    let error = ev.error.take();
    crate::parse::native::write_line(&ev, out);
    out.truncate(out.len() - 2); // the closing `}` and the newline
    bodies(rng, ev.status, error.as_deref(), out);
    out.extend_from_slice(b"}\n");
}

/// The request and response bodies and, for a failed call, an error object.
fn bodies(rng: &mut Rng, status: u16, error: Option<&str>, out: &mut Vec<u8>) {
    let user = USER[rng.below(USER.len() as u64) as usize];
    // Most prompts are short; a few carry a long document (up to ~3 KB).
    let paragraphs = if rng.chance(0.05) { 1 + rng.below(12) } else { 0 };
    write!(out, r#","messages":[{{"role":"system","content":"{SYSTEM}"}},{{"role":"user","content":"{user}"#).unwrap();
    for _ in 0..paragraphs {
        out.extend_from_slice(PARAGRAPH.as_bytes());
    }
    let (temperature, max_tokens) = (rng.below(11) as f64 / 10.0, 256 << rng.below(4));
    write!(
        out,
        r#""}}],"request":{{"temperature":{temperature:.1},"max_tokens":{max_tokens},"stream":{}"#,
        rng.chance(0.6)
    )
    .unwrap();
    if rng.chance(0.25) {
        out.extend_from_slice(TOOLS.as_bytes());
    }
    out.push(b'}');
    match error {
        None if status < 400 => write!(
            out,
            r#","response":{{"id":"chatcmpl-{:016x}","choices":[{{"index":0,"finish_reason":"stop","message":{{"role":"assistant","content":"Renewal: 2025-03-01.\nNotice: 30 days.","tool_calls":null}}}}],"system_fingerprint":"fp_{:08x}"}}"#,
            rng.next_u64(),
            rng.next_u64() as u32
        )
        .unwrap(),
        _ => {
            let (kind, code) = match status {
                429 => ("rate_limit_error", "rate_limit_exceeded"),
                401 | 403 => ("authentication_error", "invalid_api_key"),
                400..=499 => ("invalid_request_error", "bad_request"),
                _ => ("server_error", "overloaded"),
            };
            let message = error.unwrap_or("request failed");
            write!(out, r#","error":{{"message":"{message}","type":"{kind}","param":null,"code":"{code}"}}"#).unwrap();
        }
    }
}

const TOOLS: &str = r#","tools":[{"type":"function","function":{"name":"lookup_order","parameters":{"type":"object","properties":{"order_id":{"type":"string"},"include":{"type":"array","items":{"enum":["lines","refunds"]}}},"required":["order_id"]}}}]"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incidents_happen_on_schedule() {
        let mut s = Synth::new(9, 0, 20.0).with_incidents();
        let (mut storm, mut anthropic_in_storm, mut slow, mut spender) = (0, 0, 0.0f64, 0);
        while s.now() < 600_000_000 {
            let e = s.next_event();
            let minute = e.created_at / 60_000_000;
            if minute == 2 && e.provider() == "anthropic" {
                anthropic_in_storm += 1;
                storm += u32::from(e.status == 429);
            }
            if minute == 5 && e.model() == "gpt-4o" {
                slow = slow.max(e.latency_ms.unwrap_or(0.0));
            }
            if minute == 8 && e.user() == Some("user-00042") {
                spender += 1;
            }
        }
        assert!(f64::from(storm) > 0.5 * f64::from(anthropic_in_storm), "{storm} of {anthropic_in_storm}");
        assert!(slow > 5_000.0, "{slow}");
        assert!(spender > 200, "{spender}");
    }

    #[test]
    fn deterministic_and_plausible() {
        let mut a = Synth::new(7, 0, 100.0);
        let mut b = Synth::new(7, 0, 100.0);
        let mut errors = 0;
        let mut hits = 0;
        let n = 20_000;
        for _ in 0..n {
            let (x, y) = (a.next_event(), b.next_event());
            assert_eq!(x, y);
            errors += u32::from(x.is_error());
            hits += u32::from(x.cache_hit);
        }
        let (e, h) = (f64::from(errors) / n as f64, f64::from(hits) / n as f64);
        assert!((0.015..0.035).contains(&e), "error share {e}");
        assert!((0.18..0.22).contains(&h), "cache share {h}");
        let secs = a.now() as f64 / 1e6;
        assert!((180.0..220.0).contains(&secs), "20k events at 100/s take about 200 s, got {secs}");
    }
}
