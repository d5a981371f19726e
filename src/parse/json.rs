//! JSON building blocks shared by the format parsers: a value as one field sees it,
//! keys that borrow from the line, a depth-limited skip, and field rules whose errors
//! name the field.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Latency and TTFT above this many milliseconds are rejected as nonsense.
pub(crate) const MAX_DURATION_MS: f64 = 1e12;

/// A JSON value as one field sees it, before the field's own rules are applied.
pub(crate) enum Scalar<'de> {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(Cow<'de, str>),
}

impl Scalar<'_> {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Bool(_) => "a boolean",
            Scalar::U64(_) | Scalar::I64(_) | Scalar::F64(_) => "a number",
            Scalar::Str(_) => "a string",
        }
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, number, boolean or null")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::U64(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::I64(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::F64(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
}

impl<'de> de::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

/// An object key, borrowed unless it holds escapes.
pub(crate) struct Key<'de>(pub(crate) Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

/// [`Key`]'s visitor: the string itself, without going through a [`Scalar`] (a tenth
/// of a native line's instructions went there). Its messages are those of a `Scalar`
/// that is not a string: `otel` reads values as keys too.
struct KeyVisitor;

impl KeyVisitor {
    fn not_a_string<E: de::Error>(v: Scalar) -> E {
        E::custom(format!("expected a string key, found {}", v.kind()))
    }
}

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        ScalarVisitor.expecting(f)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(Self::not_a_string(Scalar::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(Self::not_a_string(Scalar::Null))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Err(Self::not_a_string(Scalar::Bool(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Err(Self::not_a_string(Scalar::U64(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Err(Self::not_a_string(Scalar::I64(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Err(Self::not_a_string(Scalar::F64(v)))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Key(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Key(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Key(Cow::Owned(v)))
    }
}

/// A value for a message: numbers as they are, other values by kind.
pub(crate) fn show(v: &Scalar) -> String {
    match v {
        Scalar::U64(n) => n.to_string(),
        Scalar::I64(n) => n.to_string(),
        Scalar::F64(f) => f.to_string(),
        Scalar::Str(s) => format!("\"{}\"", crate::text::truncate(s, 40)),
        other => other.kind().to_string(),
    }
}

/// Integral numbers (`12` or `12.0`); fractions, negatives and booleans are errors.
pub(crate) fn integer(v: &Scalar) -> Result<Option<u64>, ()> {
    match *v {
        Scalar::Null => Ok(None),
        Scalar::U64(n) => Ok(Some(n)),
        Scalar::F64(f) if f >= 0.0 && f.fract() == 0.0 && f < 1.8e19 => Ok(Some(f as u64)),
        _ => Err(()),
    }
}

pub(crate) fn duration(v: &Scalar) -> Result<Option<f64>, ()> {
    let f = match *v {
        Scalar::Null => return Ok(None),
        Scalar::U64(n) => n as f64,
        Scalar::F64(f) => f,
        _ => return Err(()),
    };
    if f.is_finite() && (0.0..=MAX_DURATION_MS).contains(&f) { Ok(Some(f)) } else { Err(()) }
}

/// Skips a value of an unknown field: checked, not built, with the nesting limit
/// applied (see [`super::scan`]), so a line nested thousands deep is rejected.
pub(crate) struct Skip;

impl<'de> de::Deserialize<'de> for Skip {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_ignored_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_entry::<IgnoredAny, Skip>()?.is_some() {}
        Ok(Skip)
    }
}

/// tokentop's `properties`: an object of strings (`null` values are absent).
pub(crate) struct PropertiesSeed<'p, 'de> {
    pub(crate) ev: &'p mut crate::event::Event<'de>,
}

impl<'de> DeserializeSeed<'de> for PropertiesSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PropertiesSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("field `properties`: an object of string values")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            match map.next_value::<Scalar<'de>>()? {
                Scalar::Null => {}
                Scalar::Str(v) => self.ev.set_property(k, v),
                other => {
                    return Err(de::Error::custom(format!(
                        "property `{k}`: expected a string value, found {}",
                        other.kind()
                    )));
                }
            }
        }
        Ok(())
    }
}

/// A string field; `null` means absent.
pub(crate) fn want_str<'de>(key: &str, v: Scalar<'de>) -> Result<Option<Cow<'de, str>>, String> {
    match v {
        Scalar::Null => Ok(None),
        Scalar::Str(s) => Ok(Some(s)),
        other => Err(format!("field `{key}`: expected a string, found {}", show(&other))),
    }
}

/// A non-negative integer field (`12` or `12.0`).
pub(crate) fn want_count(key: &str, v: &Scalar) -> Result<Option<u64>, String> {
    integer(v).map_err(|()| format!("field `{key}`: expected a non-negative integer, found {}", show(v)))
}

/// Any finite number.
pub(crate) fn want_number(key: &str, v: &Scalar) -> Result<Option<f64>, String> {
    match *v {
        Scalar::Null => Ok(None),
        Scalar::U64(n) => Ok(Some(n as f64)),
        Scalar::I64(n) => Ok(Some(n as f64)),
        Scalar::F64(f) if f.is_finite() => Ok(Some(f)),
        _ => Err(format!("field `{key}`: expected a number, found {}", show(v))),
    }
}

/// A finite number ≥ 0 (a cost).
pub(crate) fn want_nonneg(key: &str, v: &Scalar) -> Result<Option<f64>, String> {
    match want_number(key, v)? {
        Some(f) if f < 0.0 => Err(format!("field `{key}`: expected a number ≥ 0, found {f}")),
        other => Ok(other),
    }
}

/// A duration in milliseconds, 0 to 1e12.
pub(crate) fn want_duration(key: &str, v: &Scalar) -> Result<Option<f64>, String> {
    duration(v).map_err(|()| format!("field `{key}`: expected milliseconds between 0 and 1e12, found {}", show(v)))
}

pub(crate) fn want_bool(key: &str, v: &Scalar) -> Result<Option<bool>, String> {
    match *v {
        Scalar::Null => Ok(None),
        Scalar::Bool(b) => Ok(Some(b)),
        _ => Err(format!("field `{key}`: expected true or false, found {}", show(v))),
    }
}

/// Calls `each` with every string-valued entry of an object; other values (and
/// `null` for the whole object) are passed over. For free-form objects such as
/// Helicone's request properties or LiteLLM's metadata.
pub(crate) struct StrPairs<F>(pub(crate) F);

impl<'de, F: FnMut(Cow<'de, str>, Cow<'de, str>)> DeserializeSeed<'de> for StrPairs<F> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, F: FnMut(Cow<'de, str>, Cow<'de, str>)> Visitor<'de> for StrPairs<F> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            match map.next_value::<Skippable<'de>>()? {
                Skippable::Str(v) => (self.0)(k, v),
                Skippable::Other => {}
            }
        }
        Ok(())
    }
}

/// A value that is either a string or passed over (with the nesting limit applied).
pub(crate) enum Skippable<'de> {
    Str(Cow<'de, str>),
    Other,
}

impl<'de> de::Deserialize<'de> for Skippable<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Skippable<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Skippable::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Skippable::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Skippable::Str(Cow::Owned(v)))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Skippable::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Skippable::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Skippable::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Skippable::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Skippable::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<Skip>()?.is_some() {}
                Ok(Skippable::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, Skip>()?.is_some() {}
                Ok(Skippable::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// Timestamps from other tools: RFC 3339, also with a `+HH` or `+HHMM` offset (as
/// PostgreSQL prints them) or none at all (`2025-01-24 09:20:46.847371`, as Python and
/// ClickHouse print them; `naive` in the answer), or epoch `unit`s as a number or a
/// numeric string.
pub(crate) fn want_time(key: &str, v: &Scalar, unit_micros: f64) -> Result<Option<Stamp>, String> {
    match v {
        Scalar::Null => Ok(None),
        Scalar::Str(s) if is_absent(s) => Ok(None),
        Scalar::Str(s) => match lenient_rfc3339(s) {
            Ok((t, naive)) => Ok(Some(Stamp { micros: t, naive })),
            Err(e) => match s.trim().parse::<f64>() {
                Ok(n) if n.is_finite() => Ok(Some(Stamp { micros: (n * unit_micros).round() as i64, naive: false })),
                _ => Err(format!("field `{key}`: {e}")),
            },
        },
        _ => match want_number(key, v)? {
            Some(n) => Ok(Some(Stamp { micros: (n * unit_micros).round() as i64, naive: false })),
            None => Ok(None),
        },
    }
}

/// A time read from a record; `naive` when it carried no offset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Stamp {
    pub(crate) micros: crate::time::Micros,
    pub(crate) naive: bool,
}

pub(crate) fn lenient_rfc3339(s: &str) -> Result<(crate::time::Micros, bool), &'static str> {
    use crate::time::parse_timestamp;
    let s = s.trim();
    let err = match parse_timestamp(s) {
        Ok(t) => return Ok(t),
        Err(e) => e,
    };
    let b = s.as_bytes();
    let n = b.len();
    let sign_at = |i: usize| n > i && matches!(b[n - i], b'+' | b'-') && b[n - i + 1..].iter().all(u8::is_ascii_digit);
    if sign_at(3) {
        return parse_timestamp(&format!("{s}:00"));
    }
    if sign_at(5) {
        return parse_timestamp(&format!("{}:{}", &s[..n - 2], &s[n - 2..]));
    }
    // ` UTC` / ` +0000 UTC` suffixes (Go's time.String) are not worth more than this.
    if let Some(rest) = s.strip_suffix(" UTC") {
        return parse_timestamp(rest).map(|(t, _)| (t, false));
    }
    Err(err)
}

/// How other tools write "no value" in a string: Python's `None`, `null`, or nothing.
#[inline]
pub(crate) fn is_absent(s: &str) -> bool {
    // Most values start with none of these bytes: one comparison decides.
    match s.as_bytes().first() {
        None => true,
        Some(b'N' | b'n' | b' ' | b'\t' | b'\r' | b'\n') => {
            matches!(s.trim(), "" | "None" | "null" | "NULL" | "none" | "nil")
        }
        Some(_) => false,
    }
}

/// A value from another tool's record, as the field rules want it: `"None"`, `"null"`
/// and `""` are absent, and a string that holds a number (ClickHouse quotes 64-bit
/// integers, spend logs quote counts) is that number. For numeric and boolean fields.
pub(crate) fn loosen<'de>(v: Scalar<'de>) -> Scalar<'de> {
    let Scalar::Str(s) = &v else { return v };
    // Only strings that start like a number, a boolean or nothing can change.
    if !matches!(
        s.as_bytes().first(),
        None | Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'N' | b'n' | b't' | b'T' | b'f' | b'F' | b' ' | b'\t')
    ) {
        return v;
    }
    let t = s.trim();
    if is_absent(t) {
        return Scalar::Null;
    }
    match t {
        "true" | "True" | "TRUE" => return Scalar::Bool(true),
        "false" | "False" | "FALSE" => return Scalar::Bool(false),
        _ => {}
    }
    if let Ok(n) = t.parse::<u64>() {
        return Scalar::U64(n);
    }
    if let Ok(n) = t.parse::<i64>() {
        return Scalar::I64(n);
    }
    match t.parse::<f64>() {
        Ok(f) if f.is_finite() && t.bytes().any(|b| b.is_ascii_digit()) => Scalar::F64(f),
        _ => v,
    }
}

/// A string field of another tool's record; `"None"`, `"null"` and `""` are absent.
pub(crate) fn loose_str<'de>(key: &str, v: Scalar<'de>) -> Result<Option<Cow<'de, str>>, String> {
    match v {
        Scalar::Str(s) if is_absent(&s) => Ok(None),
        Scalar::U64(_) | Scalar::I64(_) | Scalar::F64(_) => Ok(Some(Cow::Owned(show(&v)))),
        other => want_str(key, other),
    }
}

/// What reading one foreign record noted besides its fields: the fields that could
/// not be read (each lost, the record kept) and whether its time carried no offset.
#[derive(Debug, Default)]
pub(crate) struct Notes {
    pub(crate) field_errors: u32,
    /// The first unreadable field's reason (naming the field).
    pub(crate) first: Option<String>,
    pub(crate) naive_time: bool,
}

impl Notes {
    pub(crate) fn clear(&mut self) {
        self.field_errors = 0;
        self.first = None;
        self.naive_time = false;
    }

    /// Counts a field that could not be read (its value is dropped).
    pub(crate) fn field(&mut self, reason: String) {
        self.field_errors += 1;
        if self.first.is_none() {
            self.first = Some(reason);
        }
    }

    /// Keeps the value of a field rule, or counts its error and keeps nothing.
    pub(crate) fn keep<T>(&mut self, r: Result<Option<T>, String>) -> Option<T> {
        r.unwrap_or_else(|e| {
            self.field(e);
            None
        })
    }
}
