//! Text from events is untrusted: it must not drive the terminal.

use std::borrow::Cow;

/// Removes control characters (C0, DEL, C1: so ESC and CSI can start no escape
/// sequence) and bidirectional overrides; borrows when there is nothing to remove.
pub fn sanitize(s: &str) -> Cow<'_, str> {
    let bad = |c: char| c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    if s.chars().any(bad) { Cow::Owned(s.chars().filter(|&c| !bad(c)).collect()) } else { Cow::Borrowed(s) }
}

/// Cuts `s` to at most `max` characters, marking a cut with an ellipsis.
pub fn truncate(s: &str, max: usize) -> Cow<'_, str> {
    if s.chars().count() <= max {
        return Cow::Borrowed(s);
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    Cow::Owned(out)
}

/// A URL without credentials or token-like query parameters, for display.
pub fn redact_url(url: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let base = match (base.find("://"), base.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***@{}", &base[..s + 3], &base[at + 1..]),
        _ => base.to_string(),
    };
    if query.is_empty() {
        return base;
    }
    let q: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _))
                if ["token", "key", "secret", "auth", "password"]
                    .iter()
                    .any(|s| k.to_ascii_lowercase().contains(s)) =>
            {
                format!("{k}=***")
            }
            _ => kv.to_string(),
        })
        .collect();
    format!("{base}?{}", q.join("&"))
}

/// An error's text without its URL (which could hold a key in a query): what kind of
/// failure, then its causes.
pub fn http_error(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "reading the response"
    } else {
        "sending the request"
    }
    .to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_escape_sequences() {
        assert_eq!(sanitize("u-1\x1b[2J\x1b]52;c;aGk=\x07\u{9b}31m"), "u-1[2J]52;c;aGk=31m");
        assert!(matches!(sanitize("plain é"), Cow::Borrowed(_)));
        assert_eq!(sanitize("a\u{202E}b"), "ab");
    }

    #[test]
    fn truncates_with_ellipsis() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }
}
