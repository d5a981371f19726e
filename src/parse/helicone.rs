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
    Key, Notes, Scalar, Skip, Stamp, StrPairs, loose_str, loosen, want_bool, want_count, want_duration, want_nonneg,
    want_time,
};
use super::scan;
use crate::event::Event;
use crate::time::MICROS_PER_MS;

/// The header of Helicone's CSV export (the columns we read; others are ignored).
pub const CSV_COLUMNS: [&str; 13] = [
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
    "cost_usd",
];

const ZERO_UUID: &str = "00000000-0000-0000-0000-000000000000";

/// Whether a CSV header row is Helicone's export.
pub fn is_csv_header(line: &str) -> bool {
    let cols: Vec<&str> = line.trim_end_matches(['\r', '\n']).split(',').map(|c| c.trim().trim_matches('"')).collect();
    ["request_created_at", "response_status", "model", "latency"].iter().all(|c| cols.contains(c))
}

/// Parses a JSON record into `ev`. A field that cannot be read is noted in `notes`
/// and lost; the record is rejected only without a readable `request_created_at`.
pub(crate) fn parse_into<'de>(text: &'de str, ev: &mut Event<'de>, notes: &mut Notes) -> Result<(), scan::Error> {
    let mut de = scan::Scanner::new(text);
    de.deserialize_map(RecordVisitor { ev, notes })?;
    de.end()
}

/// Fields whose final value depends on others, settled after the whole record.
#[derive(Default)]
struct Pending {
    created: Option<Stamp>,
    created_error: Option<String>,
    responded: Option<Stamp>,
    status: Option<i64>,
    request_model_seen: bool,
    cache_read: u64,
    cache_write: u64,
}

struct RecordVisitor<'e, 'de> {
    ev: &'e mut Event<'de>,
    notes: &'e mut Notes,
}

impl<'de> Visitor<'de> for RecordVisitor<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Helicone request record (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (ev, notes) = (self.ev, self.notes);
        let mut p = Pending::default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match key.as_ref() {
                "request_properties" => {
                    ev.properties.clear();
                    map.next_value_seed(StrPairs(|k: Cow<'de, str>, v| property(ev, k, v)))?;
                }
                k if is_field(k) => {
                    let v: Scalar<'de> = map.next_value()?;
                    if let Err(e) = set(ev, &mut p, k, v) {
                        if k == "request_created_at" {
                            p.created_error = Some(e);
                        } else {
                            notes.field(e);
                        }
                    }
                }
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        let created = match (p.created, p.created_error.take()) {
            (Some(c), _) => c,
            (None, Some(e)) => return Err(de::Error::custom(e)),
            (None, None) => return Err(de::Error::custom("missing required field `request_created_at`")),
        };
        notes.naive_time = created.naive;
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
    let want_str = loose_str;
    match key {
        "request_id" => ev.request_id = want_str(key, v)?,
        "request_created_at" => p.created = want_time(key, &v, MICROS_PER_MS as f64)?,
        "response_created_at" => p.responded = want_time(key, &v, MICROS_PER_MS as f64)?,
        "response_status" => {
            p.status = match loosen(v) {
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
        "delay_ms" => ev.latency_ms = want_duration(key, &loosen(v))?,
        "time_to_first_token" => ev.ttft_ms = want_duration(key, &loosen(v))?,
        "request_model" => {
            ev.model = want_str(key, v)?;
            p.request_model_seen = ev.model.is_some();
        }
        "model" if !p.request_model_seen => ev.model = want_str(key, v)?,
        "model" => {}
        "provider" => ev.provider = want_str(key, v)?,
        "request_user_id" => ev.user_id = want_str(key, v)?,
        "prompt_tokens" => ev.prompt_tokens = want_count(key, &loosen(v))?.unwrap_or(0),
        "completion_tokens" => ev.completion_tokens = want_count(key, &loosen(v))?.unwrap_or(0),
        "prompt_cache_read_tokens" => p.cache_read = want_count(key, &loosen(v))?.unwrap_or(0),
        "prompt_cache_write_tokens" => p.cache_write = want_count(key, &loosen(v))?.unwrap_or(0),
        "cost" | "cost_usd" => ev.cost_usd = want_nonneg(key, &loosen(v))?,
        "cache_reference_id" => {
            ev.cache_hit = want_str(key, v)?.is_some_and(|id| !id.is_empty() && id != ZERO_UUID);
        }
        "cache_enabled" => {
            want_bool(key, &loosen(v))?;
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

fn finish(ev: &mut Event, p: &Pending, created: Stamp) {
    // A response time is comparable only when both times carry an offset, or neither does.
    let responded = p.responded.filter(|r| r.naive == created.naive).map(|r| r.micros);
    let created = created.micros;
    ev.created_at = created;
    ev.status = match p.status {
        Some(s) if (0..=999).contains(&s) => s as u16,
        _ => 0,
    };
    if ev.latency_ms.is_none()
        && let Some(r) = responded.filter(|&r| r >= created)
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

/// Parses one row of Helicone's CSV export into `ev`. A cell that cannot be read is
/// noted in `notes` and lost; the row is rejected only without a readable
/// `request_created_at`.
pub(crate) fn parse_csv_row<'r>(
    cols: &CsvColumns,
    rec: &'r csv::ByteRecord,
    ev: &mut Event<'r>,
    notes: &mut Notes,
) -> Result<(), String> {
    let created = cols.get(rec, "request_created_at")?.ok_or("missing `request_created_at`")?;
    let (created, naive) =
        super::json::lenient_rfc3339(created).map_err(|e| format!("column `request_created_at`: {e}"))?;
    ev.created_at = created;
    notes.naive_time = naive;
    let mut cell = |col: &str| notes.keep(cols.get(rec, col).map(|c| c.filter(|c| !super::json::is_absent(c))));
    let text = |c: Option<&'r str>| c.map(Cow::Borrowed);
    ev.request_id = text(cell("response_id"));
    ev.model = text(cell("model"));
    ev.user_id = text(cell("request_user_id"));
    let (status, prompt, completion) = (cell("response_status"), cell("prompt_tokens"), cell("completion_tokens"));
    let (latency, cost, cost_usd) = (cell("latency"), cell("cost"), cell("cost_usd"));
    let (responded, props) = (cell("response_created_at"), cell("request_properties"));
    let status: Option<i64> = notes.keep(num("response_status", status));
    ev.status = status.filter(|s| (0..=999).contains(s)).map_or(0, |s| s as u16);
    ev.prompt_tokens = notes.keep(num("prompt_tokens", prompt)).unwrap_or(0);
    ev.completion_tokens = notes.keep(num("completion_tokens", completion)).unwrap_or(0);
    ev.latency_ms = notes.keep(num::<f64>("latency", latency).and_then(|l| match l {
        Some(l) if !(l.is_finite() && (0.0..=1e12).contains(&l)) => {
            Err(format!("column `latency`: {l} is not a duration in ms"))
        }
        l => Ok(l),
    }));
    let usd = |col: &str, c: Option<&str>| {
        num::<f64>(col, c).and_then(|c| match c {
            Some(c) if !(c.is_finite() && c >= 0.0) => Err(format!("column `{col}`: {c} is not a cost in USD")),
            c => Ok(c),
        })
    };
    ev.cost_usd = notes.keep(usd("cost_usd", cost_usd)).or(notes.keep(usd("cost", cost)));
    if ev.latency_ms.is_none()
        && let Some(r) = responded
        && let Ok((r, r_naive)) = super::json::lenient_rfc3339(r)
        && r_naive == naive
        && r >= ev.created_at
    {
        ev.latency_ms = Some((r - ev.created_at) as f64 / 1000.0);
    }
    if let Some(props) = props
        && let Err(e) = csv_properties(props, ev)
    {
        notes.field(e);
    }
    Ok(())
}

fn num<T: std::str::FromStr>(col: &str, s: Option<&str>) -> Result<Option<T>, String> {
    s.map(|s| s.parse::<T>().map_err(|_| format!("column `{col}`: `{s}` is not a valid number"))).transpose()
}

/// The `request_properties` cell: a JSON object, or one whose quotes were doubled a
/// second time (Helicone's export tool escapes objects twice: `{""Team"":""x""}`).
fn csv_properties<'r>(cell: &'r str, ev: &mut Event<'r>) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_str(cell);
    let first = de::DeserializeSeed::deserialize(StrPairs(|k: Cow<'r, str>, v| property(ev, k, v)), &mut de)
        .and_then(|()| de.end());
    let Err(e) = first else { return Ok(()) };
    if !cell.contains("\"\"") {
        return Err(format!("column `request_properties`: not a JSON object ({e})"));
    }
    ev.properties.clear();
    let undoubled = cell.replace("\"\"", "\"");
    let value: serde_json::Value = serde_json::from_str(&undoubled)
        .map_err(|e| format!("column `request_properties`: not a JSON object, even with its quotes undoubled ({e})"))?;
    let serde_json::Value::Object(map) = value else {
        return Err("column `request_properties`: not a JSON object".into());
    };
    for (k, v) in map {
        if let serde_json::Value::String(v) = v {
            property(ev, Cow::Owned(k), Cow::Owned(v));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Event<'_>, scan::Error> {
        parse_noted(line).map(|(ev, _)| ev)
    }

    fn parse_noted(line: &str) -> Result<(Event<'_>, Notes), scan::Error> {
        let mut ev = Event::with_properties(Vec::new());
        let mut notes = Notes::default();
        parse_into(line, &mut ev, &mut notes).map(|()| (ev, notes))
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
    fn a_field_that_cannot_be_read_loses_the_field_not_the_record() {
        let (e, notes) = parse_noted(
            r#"{"request_created_at":"2025-03-01T10:00:00Z","delay_ms":"slow","response_status":429,"prompt_tokens":"12"}"#,
        )
        .unwrap();
        assert_eq!((e.status, e.latency_ms, e.prompt_tokens), (429, None, 12), "quoted integers are integers");
        assert_eq!(notes.field_errors, 1);
        assert!(notes.first.as_deref().unwrap().contains("`delay_ms`"), "{:?}", notes.first);
        let e = parse(r#"{"request_model":"x"}"#).unwrap_err();
        assert!(e.to_string().contains("request_created_at"), "{e}");
        let e = parse(r#"{"request_created_at":"yesterday"}"#).unwrap_err();
        assert!(e.to_string().contains("request_created_at"), "no usable time rejects the record: {e}");
    }

    #[test]
    fn clickhouse_json_quotes_integers_and_writes_naive_times() {
        let (e, notes) = parse_noted(
            r#"{"request_created_at":"2025-05-15 17:30:42.830","response_created_at":"2025-05-15 17:30:43.330","response_status":"200","prompt_tokens":"1200","completion_tokens":"80","cost_usd":0.0021,"cache_reference_id":"None","country_code":""}"#,
        )
        .unwrap();
        assert!(notes.naive_time && notes.field_errors == 0, "{notes:?}");
        assert_eq!(e.created_at, crate::time::parse_rfc3339("2025-05-15T17:30:42.830Z").unwrap());
        assert_eq!((e.status, e.prompt_tokens, e.completion_tokens, e.latency_ms), (200, 1200, 80, Some(500.0)));
        assert_eq!((e.cost_usd, e.cache_hit, e.properties.len()), (Some(0.0021), false, 0));
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
        parse_csv_row(&cols, &rec, &mut ev, &mut Notes::default()).unwrap();
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
        parse_csv_row(&cols, &rec, &mut ev, &mut Notes::default()).unwrap();
        assert_eq!((ev.status, ev.latency_ms, ev.cost_usd), (500, None, None));
    }
}
