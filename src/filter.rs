//! The filter language, shared by `export`, the console and alert rules.
//!
//! A filter is a list of terms separated by spaces. Terms on different fields must all
//! match; terms repeating a field are alternatives (`status:429 status:5xx` keeps
//! either); a term starting with `-` must not match. Text values match whole and
//! case-insensitively, with `*` as a wildcard.
//!
//! | term | keeps requests … |
//! | --- | --- |
//! | `model:gpt-4o*` `provider:openai` `user:u-42` `session:s-1` | with that name |
//! | `prop.Environment=production` (or `prop.Environment:production`) | with that property value |
//! | `status:429` `status:5xx` `status:error` `status:ok` | with that status, class, any error (≥ 400 or 0), or 2xx |
//! | `cache:hit` `cache:miss` | served from cache, or not |
//! | `latency>5000` `ttft>=800` `cost>0.01` `tokens<100` | comparing ms, USD or tokens (`>`, `>=`, `<`, `<=`); `latency>5s` works too |
//! | `error:*timeout*` | whose error message matches |

use thiserror::Error;

use crate::event::Event;

#[derive(Debug, Clone, PartialEq, Error)]
#[error("filter term `{term}`: {why}")]
pub struct FilterError {
    pub term: String,
    pub why: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Field {
    Model,
    Provider,
    User,
    Session,
    Property,
    Status,
    Cache,
    Latency,
    Ttft,
    Cost,
    Tokens,
    Error,
}

#[derive(Debug, Clone, PartialEq)]
enum Test {
    Text(String),
    Property { key: String, value: String },
    Status(u16),
    StatusClass(u16),
    AnyError,
    Ok,
    CacheHit(bool),
    Compare { op: Op, value: f64 },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
struct Term {
    field: Field,
    test: Test,
    negated: bool,
}

/// A dimension whose groups the engine keeps per time slab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupDim {
    Model,
    Provider,
    User,
    Session,
    /// The values of one property key.
    Property(String),
}

/// A filter that keeps whole groups of one dimension: names matching any pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupFilter {
    pub dim: GroupDim,
    pub patterns: Vec<String>,
}

impl GroupFilter {
    pub fn matches(&self, name: &str) -> bool {
        self.patterns.iter().any(|p| glob(p, name))
    }
}

/// A parsed filter; the empty filter keeps everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    terms: Vec<Term>,
    text: String,
}

impl std::str::FromStr for Filter {
    type Err = FilterError;
    fn from_str(s: &str) -> Result<Filter, FilterError> {
        Filter::parse(s)
    }
}

impl std::fmt::Display for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Filter {
    pub fn parse(s: &str) -> Result<Filter, FilterError> {
        let mut terms: Vec<Term> = s.split_whitespace().map(parse_term).collect::<Result<_, _>>()?;
        terms.sort_by_key(|t| (t.negated, t.field));
        Ok(Filter { terms, text: s.split_whitespace().collect::<Vec<_>>().join(" ") })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The filter as one group of a dimension, when it is just that: positive terms
    /// on one of model, provider, user, session or one property key (alternatives
    /// allowed, `*` too). Such a filter is a union of whole groups, so the engine
    /// can answer it over a whole window from the groups it keeps.
    pub fn group(&self) -> Option<GroupFilter> {
        let first = self.terms.first()?;
        let dim = match (&first.field, &first.test) {
            (Field::Model, _) => GroupDim::Model,
            (Field::Provider, _) => GroupDim::Provider,
            (Field::User, _) => GroupDim::User,
            (Field::Session, _) => GroupDim::Session,
            (Field::Property, Test::Property { key, .. }) => GroupDim::Property(key.clone()),
            _ => return None,
        };
        let mut patterns = Vec::new();
        for t in &self.terms {
            let pattern = match (&t.test, &dim) {
                (Test::Text(p), _) if t.field == first.field => p,
                (Test::Property { key, value }, GroupDim::Property(k)) if key == k => value,
                _ => return None,
            };
            if t.negated {
                return None;
            }
            patterns.push(pattern.clone());
        }
        Some(GroupFilter { dim, patterns })
    }

    /// Which of model/provider and status the filter reads, when it reads nothing
    /// else (`None` otherwise): such a filter keeps whole (model, provider, status)
    /// groups, so a table's minute rollup answers it.
    pub fn on_groups(&self) -> Option<(bool, bool)> {
        let mut uses = (false, false);
        for t in &self.terms {
            match t.field {
                Field::Model | Field::Provider => uses.0 = true,
                Field::Status => uses.1 = true,
                _ => return None,
            }
        }
        Some(uses)
    }

    /// Whether `ev`, costing `cost_usd`, passes.
    pub fn matches(&self, ev: &Event, cost_usd: f64) -> bool {
        let mut i = 0;
        while i < self.terms.len() {
            let (field, negated) = (self.terms[i].field, self.terms[i].negated);
            let mut j = i;
            let mut any = false;
            while j < self.terms.len() && self.terms[j].field == field && self.terms[j].negated == negated {
                any |= term_matches(&self.terms[j], ev, cost_usd);
                j += 1;
            }
            // Positive alternatives: one must hold; negated terms: none may hold.
            if any == negated {
                return false;
            }
            i = j;
        }
        true
    }
}

/// Where a table keeps what filter terms compare: SQL expressions over its columns
/// (see `clickhouse::Layout`). Text columns hold `''` for "none".
#[derive(Debug, Clone, Copy)]
pub struct SqlFields<'a> {
    pub model: &'a str,
    pub provider: &'a str,
    pub user: &'a str,
    pub session: &'a str,
    pub status: &'a str,
    pub cache_hit: &'a str,
    pub latency_ms: &'a str,
    pub ttft_ms: &'a str,
    /// What the request cost, as [`Filter::matches`] is given it (0 for cache hits).
    pub cost_usd: &'a str,
    pub tokens: &'a str,
    pub error: &'a str,
    pub property_keys: &'a str,
    pub property_values: &'a str,
}

impl Filter {
    /// The filter as a SQL condition (ClickHouse's dialect) keeping exactly the rows
    /// [`matches`](Self::matches) keeps: drill-downs and filters of a console reading
    /// ClickHouse cover the whole window there. `1` for the empty filter.
    pub fn to_sql(&self, f: &SqlFields) -> String {
        let mut parts = Vec::new();
        let mut i = 0;
        while i < self.terms.len() {
            let (field, negated) = (self.terms[i].field, self.terms[i].negated);
            let mut alternatives = Vec::new();
            while i < self.terms.len() && self.terms[i].field == field && self.terms[i].negated == negated {
                alternatives.push(term_sql(&self.terms[i], f));
                i += 1;
            }
            let any = format!("({})", alternatives.join(" OR "));
            parts.push(if negated { format!("NOT {any}") } else { any });
        }
        if parts.is_empty() { "1".to_string() } else { parts.join(" AND ") }
    }
}

/// One term as a condition that is never NULL (so that `NOT` of it is what
/// [`term_matches`] says for a missing value).
fn term_sql(t: &Term, f: &SqlFields) -> String {
    let cond = match &t.test {
        Test::Text(pattern) => {
            let (col, none_is_empty) = match t.field {
                Field::Model => (f.model, false),
                Field::Provider => (f.provider, false),
                Field::User => (f.user, true),
                Field::Session => (f.session, true),
                _ => (f.error, true),
            };
            let like = format!("lower({col}) LIKE {}", like_pattern(pattern));
            if none_is_empty { format!("{col} != '' AND {like}") } else { like }
        }
        Test::Property { key, value } => format!(
            "arrayExists((k, v) -> k = {} AND lower(v) LIKE {}, {}, {})",
            sql_string(key),
            like_pattern(value),
            f.property_keys,
            f.property_values
        ),
        Test::Status(s) => format!("{} = {s}", f.status),
        Test::StatusClass(c) => format!("{0} >= {c} AND {0} < {1}", f.status, c + 100),
        Test::AnyError => format!("{0} >= 400 OR {0} = 0", f.status),
        Test::Ok => format!("{0} >= 200 AND {0} < 300", f.status),
        Test::CacheHit(hit) => format!("{} = {}", f.cache_hit, u8::from(*hit)),
        Test::Compare { op, value } => {
            let x = match t.field {
                Field::Latency => f.latency_ms,
                Field::Ttft => f.ttft_ms,
                Field::Cost => f.cost_usd,
                _ => f.tokens,
            };
            let op = match op {
                Op::Gt => ">",
                Op::Ge => ">=",
                Op::Lt => "<",
                Op::Le => "<=",
            };
            format!("{x} {op} {value:?}")
        }
    };
    format!("ifNull({cond}, 0)")
}

/// A ClickHouse string literal.
pub fn sql_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\0' => out.push_str("\\0"),
            _ => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A glob as a `LIKE` pattern on the lowercased column: `*` is `%`; `%`, `_` and `\`
/// are taken literally.
fn like_pattern(glob: &str) -> String {
    let mut p = String::with_capacity(glob.len());
    for c in glob.chars() {
        match c {
            '*' => p.push('%'),
            '%' | '_' | '\\' => {
                p.push('\\');
                p.push(c);
            }
            _ => p.push(c.to_ascii_lowercase()),
        }
    }
    sql_string(&p)
}

fn bad(term: &str, why: impl Into<String>) -> FilterError {
    FilterError { term: term.to_string(), why: why.into() }
}

const FIELDS_HELP: &str = "use model:, provider:, user:, session:, prop.KEY=, status:, cache:, error:, \
     or latency / ttft / cost / tokens with > >= < <=";

fn parse_term(raw: &str) -> Result<Term, FilterError> {
    let (negated, t) = match raw.strip_prefix('-').or_else(|| raw.strip_prefix('!')) {
        Some(rest) => (true, rest),
        None => (false, raw),
    };
    for (name, field) in
        [("latency", Field::Latency), ("ttft", Field::Ttft), ("cost", Field::Cost), ("tokens", Field::Tokens)]
    {
        if let Some(rest) = t.strip_prefix(name) {
            let (op, value) = if let Some(v) = rest.strip_prefix(">=") {
                (Op::Ge, v)
            } else if let Some(v) = rest.strip_prefix("<=") {
                (Op::Le, v)
            } else if let Some(v) = rest.strip_prefix('>') {
                (Op::Gt, v)
            } else if let Some(v) = rest.strip_prefix('<') {
                (Op::Lt, v)
            } else {
                return Err(bad(raw, format!("compare {name} with >, >=, < or <=, e.g. {name}>100")));
            };
            let value = number(value, matches!(field, Field::Latency | Field::Ttft))
                .ok_or_else(|| bad(raw, format!("`{value}` is not a number")))?;
            return Ok(Term { field, test: Test::Compare { op, value }, negated });
        }
    }
    if let Some(rest) = t.strip_prefix("prop.") {
        let Some((key, value)) = rest.split_once(['=', ':']).filter(|(k, _)| !k.is_empty()) else {
            return Err(bad(raw, "write a property as prop.KEY=VALUE"));
        };
        return Ok(Term {
            field: Field::Property,
            test: Test::Property { key: key.into(), value: value.into() },
            negated,
        });
    }
    let Some((name, value)) = t.split_once(':') else { return Err(bad(raw, FIELDS_HELP)) };
    if value.is_empty() {
        return Err(bad(raw, "the value is empty"));
    }
    let (field, test) = match name {
        "model" => (Field::Model, Test::Text(value.into())),
        "provider" => (Field::Provider, Test::Text(value.into())),
        "user" => (Field::User, Test::Text(value.into())),
        "session" => (Field::Session, Test::Text(value.into())),
        "error" => (Field::Error, Test::Text(value.into())),
        "status" => {
            (Field::Status, status(value).ok_or_else(|| bad(raw, "use a code (429), a class (4xx, 5xx), error or ok"))?)
        }
        "cache" => match value {
            "hit" => (Field::Cache, Test::CacheHit(true)),
            "miss" => (Field::Cache, Test::CacheHit(false)),
            _ => return Err(bad(raw, "use cache:hit or cache:miss")),
        },
        _ => return Err(bad(raw, FIELDS_HELP)),
    };
    Ok(Term { field, test, negated })
}

fn status(v: &str) -> Option<Test> {
    match v {
        "error" | "errors" => Some(Test::AnyError),
        "ok" | "2xx" => Some(Test::Ok),
        _ if v.len() == 3 && v.ends_with("xx") => v[..1].parse().ok().map(|c: u16| Test::StatusClass(c * 100)),
        _ => v.parse().ok().filter(|s| *s <= 999).map(Test::Status),
    }
}

/// A number, or for durations also `500ms`, `5s`, `2m`.
fn number(v: &str, duration: bool) -> Option<f64> {
    if let Ok(n) = v.parse::<f64>() {
        return n.is_finite().then_some(n);
    }
    if duration {
        return crate::time::parse_duration(v).ok().map(|us| us as f64 / 1000.0);
    }
    None
}

fn term_matches(t: &Term, ev: &Event, cost: f64) -> bool {
    match &t.test {
        Test::Text(pattern) => {
            let value = match t.field {
                Field::Model => Some(ev.model()),
                Field::Provider => Some(ev.provider()),
                Field::User => ev.user(),
                Field::Session => ev.session(),
                _ => ev.error.as_deref(),
            };
            value.is_some_and(|v| glob(pattern, v))
        }
        Test::Property { key, value } => ev.properties.iter().any(|(k, v)| k == key && glob(value, v)),
        Test::Status(s) => ev.status == *s,
        Test::StatusClass(c) => (*c..*c + 100).contains(&ev.status),
        Test::AnyError => ev.is_error(),
        Test::Ok => (200..300).contains(&ev.status),
        Test::CacheHit(hit) => ev.cache_hit == *hit,
        Test::Compare { op, value } => {
            let x = match t.field {
                Field::Latency => ev.latency_ms,
                Field::Ttft => ev.ttft_ms,
                Field::Cost => Some(cost),
                _ => Some((ev.prompt_tokens + ev.completion_tokens) as f64),
            };
            x.is_some_and(|x| match op {
                Op::Gt => x > *value,
                Op::Ge => x >= *value,
                Op::Lt => x < *value,
                Op::Le => x <= *value,
            })
        }
    }
}

/// Whole-string, ASCII-case-insensitive match with `*` for any run of characters.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi].eq_ignore_ascii_case(&t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    fn ev() -> Event<'static> {
        Event {
            model: Some(Cow::Borrowed("gpt-4o-mini")),
            provider: Some(Cow::Borrowed("openai")),
            user_id: Some(Cow::Borrowed("u-42")),
            status: 429,
            latency_ms: Some(6_200.0),
            ttft_ms: None,
            prompt_tokens: 80,
            completion_tokens: 10,
            properties: vec![(Cow::Borrowed("Environment"), Cow::Borrowed("production"))],
            error: Some(Cow::Borrowed("upstream timeout")),
            ..Default::default()
        }
    }

    fn keeps(f: &str) -> bool {
        Filter::parse(f).unwrap().matches(&ev(), 0.02)
    }

    #[test]
    fn terms() {
        for f in [
            "",
            "model:gpt-4o*",
            "model:GPT-4O-MINI",
            "provider:openai status:429",
            "status:4xx",
            "status:error",
            "status:200 status:429",
            "user:u-42 prop.Environment=production",
            "prop.Environment:prod*",
            "latency>5000",
            "latency>5s",
            "cost>=0.02 tokens<100",
            "cache:miss",
            "-cache:hit",
            "error:*timeout*",
            "-model:claude* -provider:anthropic",
        ] {
            assert!(keeps(f), "{f} should keep the event");
        }
        for f in [
            "model:gpt-4o",
            "status:5xx",
            "status:ok",
            "latency>7000",
            "ttft>0",
            "cost>0.02",
            "prop.Environment=staging",
            "prop.Team=x",
            "cache:hit",
            "-status:429",
            "user:u-4",
            "model:gpt-4o-mini provider:anthropic",
        ] {
            assert!(!keeps(f), "{f} should drop the event");
        }
    }

    #[test]
    fn bad_filters_say_why() {
        for (f, why) in [
            ("latency=5", "compare latency"),
            ("latency>fast", "not a number"),
            ("colour:red", "use model:"),
            ("status:teapot", "class"),
            ("prop.=x", "prop.KEY=VALUE"),
            ("cache:maybe", "cache:hit"),
            ("model:", "empty"),
        ] {
            let e = Filter::parse(f).unwrap_err();
            assert!(e.to_string().contains(why), "{f}: {e}");
        }
    }

    #[test]
    fn globs() {
        assert!(glob("*", ""));
        assert!(glob("a*c", "abbbc"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*c", "abcd"));
        assert!(glob("GPT-4o", "gpt-4O"));
    }

    #[test]
    fn group_filters_are_recognised() {
        let g = |s: &str| s.parse::<Filter>().unwrap().group();
        assert_eq!(g("model:gpt-4o"), Some(GroupFilter { dim: GroupDim::Model, patterns: vec!["gpt-4o".into()] }));
        assert_eq!(g("user:a user:b*").map(|g| g.patterns.len()), Some(2));
        assert_eq!(g("prop.env=prod").map(|g| g.dim), Some(GroupDim::Property("env".into())));
        assert!(g("prop.env=prod prop.team=x").is_none(), "two keys");
        assert!(g("model:a provider:b").is_none());
        assert!(g("-model:a").is_none());
        assert!(g("status:5xx").is_none());
        assert!(g("model:a status:5xx").is_none());
        assert!(g("model:GPT*").unwrap().matches("gpt-4o"));
    }
}
