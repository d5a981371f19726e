//! Helicone request records: JSON lines (as its export tool writes them and its
//! request API returns them) and its CSV export.
//!
//! Mapping: `request_created_at` → `created_at`; `delay_ms` → `latency_ms` (else
//! `response_created_at − request_created_at`); `time_to_first_token` → `ttft_ms`;
//! `request_model` (else `model`); `response_status` (negative or missing → 0);
//! `request_user_id` → `user_id`; `request_properties` → properties, except
//! `Helicone-Session-Id/Name/Path`, which are the session; `country_code` → property
//! `country_code`. Helicone's `prompt_tokens` excludes cache tokens, so tokentop's
//! prompt = `prompt_tokens` + `prompt_cache_read_tokens` + `prompt_cache_write_tokens`.
//! `cost` is USD as billed. A non-zero `cache_reference_id` means a cache hit.
//! `scores`, `cache_enabled`, `request_body` and other fields are not used.

use std::borrow::Cow;
use std::fmt;

use serde::Deserializer as _;
use serde::de::{self, MapAccess, Visitor};

use super::json::{
    Key, Scalar, Skip, StrPairs, want_bool, want_count, want_duration, want_nonneg, want_str, want_time,
};
use crate::event::Event;
use crate::time::{MICROS_PER_MS, Micros};

/// The header of Helicone's CSV export (the columns we read; others are ignored).
pub const CSV_COLUMNS: [&str; 12] = [
    "response_id",
    "response_created_at",
    "response_status",
    "request_created_at",
    "request_body",
    "request_properties",
    "request_user_id",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "latency",
    "cost",
];

const ZERO_UUID: &str = "00000000-0000-0000-0000-000000000000";

/// Whether a CSV header row is Helicone's export.
pub fn is_csv_header(line: &str) -> bool {
    let cols: Vec<&str> = line.trim_end_matches(['\r', '\n']).split(',').map(|c| c.trim().trim_matches('"')).collect();
    ["request_created_at", "response_status", "model", "latency"].iter().all(|c| cols.contains(c))
}

/// Parses a JSON record into `ev`.
pub(crate) fn parse_into<'de>(text: &'de str, ev: &mut Event<'de>) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    de.deserialize_map(RecordVisitor { ev })?;
    de.end()
}

/// Fields whose final value depends on others, settled after the whole record.
#[derive(Default)]
struct Pending {
    created: Option<Micros>,
    responded: Option<Micros>,
    status: Option<i64>,
    request_model_seen: bool,
    cache_read: u64,
    cache_write: u64,
}

struct RecordVisitor<'e, 'de> {
    ev: &'e mut Event<'de>,
}

impl<'de> Visitor<'de> for RecordVisitor<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Helicone request record (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ev = self.ev;
        let mut p = Pending::default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match key.as_ref() {
                "request_properties" => {
                    ev.properties.clear();
                    map.next_value_seed(StrPairs(|k: Cow<'de, str>, v| property(ev, k, v)))?;
                }
                k if is_field(k) => {
                    let v: Scalar<'de> = map.next_value()?;
                    set(ev, &mut p, k, v).map_err(de::Error::custom)?;
                }
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        let created = p.created.ok_or_else(|| de::Error::custom("missing required field `request_created_at`"))?;
        finish(ev, &p, created);
        Ok(())
    }
}

fn is_field(k: &str) -> bool {
    matches!(
        k,
        "request_id"
            | "request_created_at"
            | "response_created_at"
            | "response_status"
            | "delay_ms"
            | "time_to_first_token"
            | "request_model"
            | "model"
            | "provider"
            | "request_user_id"
            | "prompt_tokens"
            | "completion_tokens"
            | "prompt_cache_read_tokens"
            | "prompt_cache_write_tokens"
            | "cost"
            | "cost_usd"
            | "cache_reference_id"
            | "cache_enabled"
            | "country_code"
    )
}

fn set<'de>(ev: &mut Event<'de>, p: &mut Pending, key: &str, v: Scalar<'de>) -> Result<(), String> {
    match key {
        "request_id" => ev.request_id = want_str(key, v)?,
        "request_created_at" => p.created = want_time(key, &v, MICROS_PER_MS as f64)?,
        "response_created_at" => p.responded = want_time(key, &v, MICROS_PER_MS as f64)?,
        "response_status" => {
            p.status = match v {
                Scalar::Null => None,
                Scalar::U64(n) => Some(n.min(i64::MAX as u64) as i64),
                Scalar::I64(n) => Some(n),
                Scalar::F64(f) if f.fract() == 0.0 => Some(f as i64),
                other => {
                    return Err(format!(
                        "field `response_status`: expected an integer, found {}",
                        super::json::show(&other)
                    ));
                }
            }
        }
        "delay_ms" => ev.latency_ms = want_duration(key, &v)?,
        "time_to_first_token" => ev.ttft_ms = want_duration(key, &v)?,
        "request_model" => {
            ev.model = want_str(key, v)?;
            p.request_model_seen = ev.model.is_some();
        }
        "model" if !p.request_model_seen => ev.model = want_str(key, v)?,
        "model" => {}
        "provider" => ev.provider = want_str(key, v)?,
        "request_user_id" => ev.user_id = want_str(key, v)?,
        "prompt_tokens" => ev.prompt_tokens = want_count(key, &v)?.unwrap_or(0),
        "completion_tokens" => ev.completion_tokens = want_count(key, &v)?.unwrap_or(0),
        "prompt_cache_read_tokens" => p.cache_read = want_count(key, &v)?.unwrap_or(0),
        "prompt_cache_write_tokens" => p.cache_write = want_count(key, &v)?.unwrap_or(0),
        "cost" | "cost_usd" => ev.cost_usd = want_nonneg(key, &v)?,
        "cache_reference_id" => {
            ev.cache_hit = want_str(key, v)?.is_some_and(|id| !id.is_empty() && id != ZERO_UUID);
        }
        "cache_enabled" => {
            want_bool(key, &v)?;
        }
        "country_code" => {
            if let Some(c) = want_str(key, v)?.filter(|c| !c.is_empty()) {
                ev.properties.push((Cow::Borrowed("country_code"), c));
            }
        }
        _ => unreachable!("is_field lists every key handled here"),
    }
    Ok(())
}

/// Helicone's session headers become the session; other properties stay properties.
fn property<'de>(ev: &mut Event<'de>, k: Cow<'de, str>, v: Cow<'de, str>) {
    if k.eq_ignore_ascii_case("Helicone-Session-Id") {
        ev.session_id = Some(v);
    } else if k.eq_ignore_ascii_case("Helicone-Session-Name") {
        ev.session_name = Some(v);
    } else if k.eq_ignore_ascii_case("Helicone-Session-Path") {
        ev.session_path = Some(v);
    } else {
        ev.set_property(k, v);
    }
}

fn finish(ev: &mut Event, p: &Pending, created: Micros) {
    ev.created_at = created;
    ev.status = match p.status {
        Some(s) if (0..=999).contains(&s) => s as u16,
        _ => 0,
    };
    if ev.latency_ms.is_none()
        && let Some(r) = p.responded.filter(|&r| r >= created)
    {
        ev.latency_ms = Some((r - created) as f64 / 1000.0);
    }
    ev.prompt_tokens += p.cache_read + p.cache_write;
    ev.cache_read_tokens = p.cache_read;
    ev.cache_write_tokens = p.cache_write;
}

/// Column positions of a Helicone CSV header.
#[derive(Debug, Clone, Default)]
pub struct CsvColumns {
    idx: [Option<usize>; CSV_COLUMNS.len()],
}

impl CsvColumns {
    pub fn from_header(header: &csv::ByteRecord) -> CsvColumns {
        let mut idx = [None; CSV_COLUMNS.len()];
        for (i, name) in header.iter().enumerate() {
            let name = String::from_utf8_lossy(name);
            if let Some(c) = CSV_COLUMNS.iter().position(|c| *c == name.trim()) {
                idx[c] = Some(i);
            }
        }
        CsvColumns { idx }
    }

    fn get<'r>(&self, rec: &'r csv::ByteRecord, col: &str) -> Result<Option<&'r str>, String> {
        let c = CSV_COLUMNS.iter().position(|x| *x == col).expect("known column");
        match self.idx[c].and_then(|i| rec.get(i)) {
            None => Ok(None),
            Some(b) => match std::str::from_utf8(b) {
                Ok(s) if s.trim().is_empty() => Ok(None),
                Ok(s) => Ok(Some(s.trim())),
                Err(_) => Err(format!("column `{col}` is not valid UTF-8")),
            },
        }
    }
}

fn num<T: std::str::FromStr>(col: &str, s: Option<&str>) -> Result<Option<T>, String> {
    s.map(|s| s.parse::<T>().map_err(|_| format!("column `{col}`: `{s}` is not a valid number"))).transpose()
}

/// Parses one row of Helicone's CSV export into `ev`.
pub fn parse_csv_row<'r>(cols: &CsvColumns, rec: &'r csv::ByteRecord, ev: &mut Event<'r>) -> Result<(), String> {
    let created = cols.get(rec, "request_created_at")?.ok_or("missing `request_created_at`")?;
    ev.created_at = super::json::lenient_rfc3339(created).map_err(|e| format!("column `request_created_at`: {e}"))?;
    ev.request_id = cols.get(rec, "response_id")?.map(Cow::Borrowed);
    let status: Option<i64> = num("response_status", cols.get(rec, "response_status")?)?;
    ev.status = status.filter(|s| (0..=999).contains(s)).map_or(0, |s| s as u16);
    ev.model = cols.get(rec, "model")?.map(Cow::Borrowed);
    ev.user_id = cols.get(rec, "request_user_id")?.map(Cow::Borrowed);
    ev.prompt_tokens = num("prompt_tokens", cols.get(rec, "prompt_tokens")?)?.unwrap_or(0);
    ev.completion_tokens = num("completion_tokens", cols.get(rec, "completion_tokens")?)?.unwrap_or(0);
    let latency: Option<f64> = num("latency", cols.get(rec, "latency")?)?;
    if let Some(l) = latency.filter(|l| !(l.is_finite() && (0.0..=1e12).contains(l))) {
        return Err(format!("column `latency`: {l} is not a duration in ms"));
    }
    ev.latency_ms = latency;
    let cost: Option<f64> = num("cost", cols.get(rec, "cost")?)?;
    if let Some(c) = cost.filter(|c| !(c.is_finite() && *c >= 0.0)) {
        return Err(format!("column `cost`: {c} is not a cost in USD"));
    }
    ev.cost_usd = cost;
    if ev.latency_ms.is_none()
        && let Some(r) = cols.get(rec, "response_created_at")?
        && let Ok(r) = super::json::lenient_rfc3339(r)
        && r >= ev.created_at
    {
        ev.latency_ms = Some((r - ev.created_at) as f64 / 1000.0);
    }
    if let Some(props) = cols.get(rec, "request_properties")? {
        let mut de = serde_json::Deserializer::from_str(props);
        de::DeserializeSeed::deserialize(StrPairs(|k: Cow<'r, str>, v| property(ev, k, v)), &mut de)
            .map_err(|e| format!("column `request_properties`: not a JSON object ({e})"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Event<'_>, serde_json::Error> {
        let mut ev = Event::with_properties(Vec::new());
        parse_into(line, &mut ev).map(|()| ev)
    }

    #[test]
    fn maps_a_record() {
        let e = parse(
            r#"{"request_id":"r-1","request_created_at":"2025-03-01T10:00:00.000Z","response_created_at":"2025-03-01T10:00:01.500Z",
            "response_status":200,"delay_ms":1500,"time_to_first_token":320,"request_model":"gpt-4o","model":"gpt-4o-2024-08-06",
            "provider":"OPENAI","request_user_id":"alice","request_properties":{"Helicone-Session-Id":"s1","Helicone-Session-Name":"Trip",
            "Helicone-Session-Path":"/plan","App":"web","Count":3},"prompt_tokens":800,"completion_tokens":120,
            "prompt_cache_read_tokens":200,"prompt_cache_write_tokens":50,"cost":0.0042,
            "cache_reference_id":"00000000-0000-0000-0000-000000000000","cache_enabled":false,"scores":{"quality":5},
            "country_code":"DE","request_body":{"messages":[{"role":"user","content":"hi"}]}}"#,
        )
        .unwrap();
        assert_eq!(e.created_at, crate::time::parse_rfc3339("2025-03-01T10:00:00Z").unwrap());
        assert_eq!((e.status, e.latency_ms, e.ttft_ms), (200, Some(1500.0), Some(320.0)));
        assert_eq!((e.model(), e.provider(), e.user()), ("gpt-4o", "OPENAI", Some("alice")));
        assert_eq!((e.prompt_tokens, e.cache_read_tokens, e.cache_write_tokens), (1050, 200, 50));
        assert_eq!((e.cost_usd, e.cache_hit), (Some(0.0042), false));
        assert_eq!(
            (e.session(), e.session_name.as_deref(), e.session_path.as_deref()),
            (Some("s1"), Some("Trip"), Some("/plan"))
        );
        let props: Vec<_> = e.properties.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
        assert_eq!(props, vec![("App", "web"), ("country_code", "DE")]);
    }

    #[test]
    fn statuses_latency_and_cache() {
        let e = parse(r#"{"request_created_at":"2025-03-01 10:00:00+00","response_created_at":"2025-03-01 10:00:02.25+00","response_status":-1,"cache_reference_id":"5b1e0c1e-8b9a-4a43-9f0a-1d2c3b4a5e6f"}"#).unwrap();
        assert_eq!((e.status, e.latency_ms, e.cache_hit), (0, Some(2250.0), true));
        let e = parse(r#"{"request_created_at":1740823200000,"model":"claude"}"#).unwrap();
        assert_eq!((e.status, e.model(), e.created_at), (0, "claude", 1_740_823_200_000_000));
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse(r#"{"request_created_at":"2025-03-01T10:00:00Z","delay_ms":"slow"}"#).unwrap_err();
        assert!(e.to_string().contains("`delay_ms`"), "{e}");
        let e = parse(r#"{"request_model":"x"}"#).unwrap_err();
        assert!(e.to_string().contains("request_created_at"), "{e}");
    }

    #[test]
    fn csv_rows() {
        let data = "response_id,response_created_at,response_status,request_created_at,request_body,request_properties,request_user_id,model,prompt_tokens,completion_tokens,latency,cost\n\
            r1,2025-03-01T10:00:01Z,200,2025-03-01T10:00:00Z,\"{\"\"messages\"\":[\"\"a,\nb\"\"]}\",\"{\"\"Helicone-Session-Id\"\":\"\"s9\"\",\"\"Team\"\":\"\"x\"\"}\",bob,gpt-4o-mini,100,20,812,0.00012\n\
            r2,,500,2025-03-01T10:00:05Z,,,,gpt-4o,,,,\n";
        assert!(is_csv_header(data.lines().next().unwrap()));
        let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(data.as_bytes());
        let cols = CsvColumns::from_header(&rdr.byte_headers().unwrap().clone());
        let mut rec = csv::ByteRecord::new();
        assert!(rdr.read_byte_record(&mut rec).unwrap());
        let mut ev = Event::with_properties(Vec::new());
        parse_csv_row(&cols, &rec, &mut ev).unwrap();
        assert_eq!(
            (ev.request_id.as_deref(), ev.status, ev.model(), ev.user()),
            (Some("r1"), 200, "gpt-4o-mini", Some("bob"))
        );
        assert_eq!(
            (ev.prompt_tokens, ev.completion_tokens, ev.latency_ms, ev.cost_usd),
            (100, 20, Some(812.0), Some(0.00012))
        );
        assert_eq!(ev.session(), Some("s9"));
        assert_eq!(ev.properties.len(), 1);
        assert!(rdr.read_byte_record(&mut rec).unwrap());
        let mut ev = Event::with_properties(Vec::new());
        parse_csv_row(&cols, &rec, &mut ev).unwrap();
        assert_eq!((ev.status, ev.latency_ms, ev.cost_usd), (500, None, None));
    }
}
