//! Notifications: webhooks (JSON, or Slack's incoming-webhook shape) and command hooks,
//! on firing and on resolve.
//!
//! Deliveries run on a few worker tasks behind a bounded queue: a slow or dead endpoint
//! never slows the console or ingest, and holds at most that many connections (when
//! the queue is full, notifications are dropped and counted). Redirects are not
//! followed: a 3xx is a failure with its reason. Each webhook has a timeout and retries
//! with exponential backoff; with `secret_env`, the body is signed:
//! `X-Tokentop-Signature: sha256=<hex HMAC-SHA256>`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::time::parse_duration;

/// A `[[webhooks]]` table of the config file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST (or `url_env`: the name of a variable holding it, for secret URLs).
    pub url: Option<String>,
    pub url_env: Option<String>,
    /// `json` (default) or `slack`.
    pub format: Option<String>,
    /// The name of a variable holding the HMAC key.
    pub secret_env: Option<String>,
    /// Per attempt (default 5s).
    pub timeout: Option<String>,
    /// Attempts after the first (default 5).
    pub retries: Option<u32>,
}

/// A `[[hooks]]` table: a command given the alert as JSON on its standard input.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    pub command: Vec<String>,
}

/// What is sent: an alert firing or resolving.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Notification {
    pub rule: String,
    pub severity: String,
    /// `firing` or `resolved`.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub metric: String,
    pub value: f64,
    pub threshold: f64,
    pub window: String,
    pub time: String,
    pub text: String,
    /// A reminder that it is still firing (the rule's `renotify`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reminder: bool,
}

impl Notification {
    pub fn new(f: &super::Firing, state: &str, window: crate::time::Micros, time: &str) -> Notification {
        let group = f.group.as_deref().map(|g| format!(" [{g}]")).unwrap_or_default();
        let text = format!(
            "{} {}{group}: {} is {} (threshold {}) over {}",
            f.severity.to_uppercase(),
            f.rule,
            f.metric,
            num(f.value),
            num(f.threshold),
            crate::time::format_duration(window)
        );
        let text = if state == "resolved" { format!("RESOLVED {}{group}", f.rule) } else { text };
        Notification {
            rule: f.rule.clone(),
            severity: f.severity.clone(),
            state: state.into(),
            group: f.group.clone(),
            metric: f.metric.clone(),
            value: f.value,
            threshold: f.threshold,
            window: crate::time::format_duration(window),
            time: time.into(),
            text,
            reminder: false,
        }
    }

    /// The notification for an alert changing state (see [`super::Evaluator::take_changes`]).
    pub fn of_change(c: &super::Change, window: crate::time::Micros) -> Notification {
        let time = crate::time::format_rfc3339(c.at);
        match c.transition {
            super::Transition::Fired => Notification::new(&c.firing, "firing", window, &time),
            super::Transition::Resolved => Notification::new(&c.firing, "resolved", window, &time),
            super::Transition::Reminder => {
                let mut n = Notification::new(&c.firing, "firing", window, &time);
                n.text = format!("STILL FIRING: {}", n.text);
                n.reminder = true;
                n
            }
        }
    }
}

fn num(v: f64) -> String {
    if v.abs() >= 100.0 { format!("{v:.0}") } else { format!("{v:.2}") }
}

/// How the last delivery to one webhook went (for the Alerts view).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delivery {
    /// The webhook, without any secret (its host, or the variable name).
    pub target: String,
    pub sent: u64,
    pub failed: u64,
    pub last_error: Option<String>,
}

struct Webhook {
    url: String,
    slack: bool,
    secret: Option<Vec<u8>>,
    timeout: Duration,
    retries: u32,
    status: usize,
}

/// Notifications waiting to be delivered; past it they are dropped and counted.
const QUEUE: usize = 1024;
/// Deliveries under way at once.
const WORKERS: usize = 4;
/// A hook command is given this long.
const HOOK_TIMEOUT: Duration = Duration::from_secs(30);
/// `check --notify` waits at most this long in all.
const MAX_DEADLINE: Duration = Duration::from_secs(120);
/// The first pause between attempts; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Webhook {
    /// How long every attempt with its pauses may take.
    fn worst_case(&self) -> Duration {
        let mut total = self.timeout * (self.retries + 1);
        let mut backoff = FIRST_BACKOFF;
        for _ in 0..self.retries {
            total += backoff;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        total
    }
}

/// Sends notifications in the background. Cloning shares the queue.
#[derive(Clone)]
pub struct Notifier {
    tx: mpsc::Sender<Notification>,
    inner: Arc<Inner>,
    pub deliveries: Arc<Mutex<Vec<Delivery>>>,
    pub dropped: Arc<std::sync::atomic::AtomicU64>,
}

struct Inner {
    client: reqwest::Client,
    targets: Vec<Webhook>,
    hooks: Vec<HookConfig>,
    status: Arc<Mutex<Vec<Delivery>>>,
}

impl Inner {
    /// Delivers one notification everywhere, concurrently, and waits for all.
    async fn deliver_all(self: &Arc<Self>, n: &Notification) {
        let mut tasks = Vec::new();
        for i in 0..self.targets.len() {
            let (me, n) = (self.clone(), n.clone());
            tasks.push(tokio::spawn(async move { deliver(&me.client, &me.targets[i], &n, &me.status).await }));
        }
        for h in &self.hooks {
            let (h, n) = (h.clone(), n.clone());
            tasks.push(tokio::spawn(async move { run_hook(&h, &n).await }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// HMAC-SHA256 of `body`, hex.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// The body a webhook gets.
pub fn body(n: &Notification, slack: bool) -> Vec<u8> {
    if slack {
        let json = serde_json::json!({
            "text": n.text,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": format!("*{}*", n.text)}}],
        });
        serde_json::to_vec(&json).expect("JSON")
    } else {
        serde_json::to_vec(n).expect("JSON")
    }
}

impl Notifier {
    /// Checks the configuration and starts the sender (within a tokio runtime).
    pub fn start(webhooks: &[WebhookConfig], hooks: &[HookConfig]) -> Result<Notifier, String> {
        // reqwest is built on rustls without a bundled provider: use ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut targets = Vec::new();
        let mut deliveries = Vec::new();
        for (i, w) in webhooks.iter().enumerate() {
            let (url, shown) = match (&w.url, &w.url_env) {
                // Scheme and host only: the path of a Slack webhook is its secret, and
                // credentials in the URL are never shown.
                (Some(u), None) => {
                    (u.clone(), crate::text::redact_url(u).split('/').take(3).collect::<Vec<_>>().join("/"))
                }
                (None, Some(v)) => (
                    std::env::var(v)
                        .map_err(|_| format!("webhook #{}: the variable {v} (url_env) is not set", i + 1))?,
                    format!("${v}"),
                ),
                _ => return Err(format!("webhook #{}: give `url` or `url_env`", i + 1)),
            };
            let secret = match &w.secret_env {
                Some(v) => Some(
                    std::env::var(v)
                        .map_err(|_| format!("webhook #{}: the variable {v} (secret_env) is not set", i + 1))?
                        .into_bytes(),
                ),
                None => None,
            };
            let slack = match w.format.as_deref().unwrap_or("json") {
                "json" => false,
                "slack" => true,
                f => return Err(format!("webhook #{}: format `{f}`: use json or slack", i + 1)),
            };
            let timeout = parse_duration(w.timeout.as_deref().unwrap_or("5s"))
                .map_err(|e| format!("webhook #{}: timeout: {e}", i + 1))?;
            deliveries.push(Delivery { target: shown, ..Default::default() });
            targets.push(Webhook {
                url,
                slack,
                secret,
                timeout: Duration::from_micros(timeout as u64),
                retries: w.retries.unwrap_or(5),
                status: i,
            });
        }
        // A redirect would turn the POST into a GET without its body: it is a failure
        // to report, not a delivery.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot set up HTTPS: {e}"))?;
        let (tx, rx) = mpsc::channel::<Notification>(QUEUE);
        let deliveries = Arc::new(Mutex::new(deliveries));
        let inner = Arc::new(Inner { client, targets, hooks: hooks.to_vec(), status: deliveries.clone() });
        // A fixed number of workers take from the queue: a dead endpoint holds at most
        // that many deliveries (and their connections) at once; the rest wait in the
        // queue, and past it are dropped and counted.
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..WORKERS {
            let (worker, rx) = (inner.clone(), rx.clone());
            tokio::spawn(async move {
                loop {
                    let Some(n) = rx.lock().await.recv().await else { return };
                    worker.deliver_all(&n).await;
                }
            });
        }
        Ok(Notifier { tx, inner, deliveries, dropped: Arc::default() })
    }

    /// Delivers every notification now, all at once, and waits for them under one
    /// deadline (for `check --notify`). Returns how many were not done by then.
    pub async fn deliver_now(&self, all: &[Notification]) -> usize {
        let deadline = self.inner.targets.iter().map(Webhook::worst_case).max().unwrap_or_default();
        let deadline = deadline.max(HOOK_TIMEOUT).min(MAX_DEADLINE);
        let done = std::sync::atomic::AtomicUsize::new(0);
        let each = all.iter().map(|n| async {
            self.inner.deliver_all(n).await;
            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
        let _ = tokio::time::timeout(deadline, futures_util::future::join_all(each)).await;
        all.len() - done.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Queues a notification; never waits (a full queue drops it and counts).
    pub fn send(&self, n: Notification) {
        if self.tx.try_send(n).is_err() {
            self.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

async fn deliver(client: &reqwest::Client, w: &Webhook, n: &Notification, status: &Mutex<Vec<Delivery>>) {
    let body = body(n, w.slack);
    let mut backoff = FIRST_BACKOFF;
    let mut last_error = String::new();
    for attempt in 0..=w.retries {
        let mut req =
            client.post(&w.url).timeout(w.timeout).header("content-type", "application/json").body(body.clone());
        if let Some(key) = &w.secret {
            req = req.header("x-tokentop-signature", format!("sha256={}", sign(key, &body)));
        }
        match req.send().await {
            Ok(resp) if resp.status().is_success() => {
                let mut s = status.lock().expect("status lock");
                s[w.status].sent += 1;
                s[w.status].last_error = None;
                return;
            }
            Ok(resp) if resp.status().is_redirection() => {
                let to = resp.headers().get("location").and_then(|l| l.to_str().ok()).map(crate::text::redact_url);
                last_error = format!(
                    "HTTP {}: redirects are not followed (set the webhook to the final URL{})",
                    resp.status(),
                    to.map(|t| format!(", {}", crate::text::sanitize(&t))).unwrap_or_default()
                );
            }
            Ok(resp) => last_error = format!("HTTP {}", resp.status()),
            Err(e) if e.is_timeout() => last_error = format!("no answer within {:.0?}", w.timeout),
            Err(e) => last_error = format!("cannot reach it ({})", e.without_url()),
        }
        if attempt < w.retries {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
    let mut s = status.lock().expect("status lock");
    s[w.status].failed += 1;
    s[w.status].last_error = Some(last_error);
}

async fn run_hook(h: &HookConfig, n: &Notification) {
    use tokio::io::AsyncWriteExt;
    let Some((prog, args)) = h.command.split_first() else { return };
    let child = tokio::process::Command::new(prog)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let Ok(mut child) = child else { return };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&serde_json::to_vec(n).expect("JSON")).await;
    }
    let _ = tokio::time::timeout(HOOK_TIMEOUT, child.wait()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_rfc_4231_vectors() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
