//! How numbers are written on screen: one place, so every view agrees.
//!
//! A number is never cut to fit a column. Compact forms keep three significant
//! digits (`16.6M`, `$1.23k`, `4.82s`) and stay within seven characters, so a
//! column can be sized for them; counts below 100,000 are written in full.

/// A count with thousands separators, in full.
pub fn int(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Three significant digits of `v` (≥ 0), without trailing zeros after the point
/// beyond what the magnitude needs: 1.23, 12.3, 123.
fn sig3(v: f64) -> String {
    if v >= 99.95 {
        format!("{v:.0}")
    } else if v >= 9.995 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// `v` scaled to k, M, B, T with three significant digits (`v` ≥ 1,000).
fn scaled(v: f64) -> String {
    let units = ["k", "M", "B", "T"];
    let mut v = v / 1_000.0;
    for (i, unit) in units.iter().enumerate() {
        // 999.96k rounds to 1000k: that is 1.00M.
        if v < 999.5 || i == units.len() - 1 {
            return format!("{}{unit}", sig3(v));
        }
        v /= 1_000.0;
    }
    unreachable!("the loop returns at its last unit")
}

/// A count: in full up to 99,999, then compact (`123k`, `16.6M`).
pub fn count(n: u64) -> String {
    if n < 100_000 { int(n) } else { scaled(n as f64) }
}

/// US dollars with three significant digits: `$0.00123`, `$1.23`, `$123`, `$1.23k`.
/// Zero is `$0`; amounts below a millionth of a dollar are `<$0.000001`.
pub fn usd(v: f64) -> String {
    let a = v.abs();
    let sign = if v < 0.0 { "-" } else { "" };
    if a == 0.0 {
        return "$0".into();
    }
    if a < 0.000_001 {
        return format!("{sign}<$0.000001");
    }
    let body = if a >= 999.5 {
        scaled(a)
    } else if a >= 1.0 {
        sig3(a)
    } else {
        // Three significant digits below a dollar: as many decimals as that takes.
        let decimals = (-a.log10().floor()) as usize + 2;
        let s = format!("{a:.decimals$}");
        // 0.000999 rounds up to 0.00100: keep three significant digits.
        if s.trim_start_matches(['0', '.']).len() > 3 { format!("{a:.0$}", decimals - 1) } else { s }
    };
    format!("{sign}${body}")
}

/// A cost that may be unknown: `unpriced` when no price was found.
pub fn cost(v: f64, unpriced: bool) -> String {
    if unpriced { "unpriced".into() } else { usd(v) }
}

/// Milliseconds: `0.42ms`, `812ms`, `4.82s`, `123s`, `16.7m`; `-` when unknown.
pub fn ms(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v < 0.0 || !v.is_finite() => "-".into(),
        Some(v) if v < 1.0 => format!("{v:.2}ms"),
        Some(v) if v < 999.5 => format!("{v:.0}ms"),
        Some(v) if v < 999_500.0 => format!("{}s", sig3(v / 1_000.0)),
        Some(v) if v < 3_597_000.0 => format!("{}m", sig3(v / 60_000.0)),
        Some(v) => format!("{}h", sig3(v / 3_600_000.0)),
    }
}

/// A percentage: `0%`, `0.41%`, `4.1%`, `100%`.
pub fn pct(v: f64) -> String {
    if v == 0.0 {
        "0%".into()
    } else if v < 0.995 {
        format!("{v:.2}%")
    } else if v < 99.95 {
        format!("{v:.1}%")
    } else {
        format!("{v:.0}%")
    }
}

/// A rate per second with three significant digits: `0.372`, `57.0`, `1.23k`.
pub fn rate(v: f64) -> String {
    if !v.is_finite() || v <= 0.0 {
        "0".into()
    } else if v >= 1_000.0 {
        scaled(v)
    } else if v < 0.001 {
        format!("{v:.4}")
    } else if v < 1.0 {
        format!("{v:.3}")
    } else {
        sig3(v)
    }
}

/// A plain number for chart axes and alert values: compact, three significant digits.
pub fn num(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "+∞".into() } else { "-∞".into() };
    }
    let (sign, a) = if v < 0.0 { ("-", -v) } else { ("", v) };
    let body = if a >= 1_000.0 {
        scaled(a)
    } else if a == 0.0 {
        "0".into()
    } else if a < 0.01 {
        format!("{a:.4}")
    } else {
        sig3(a)
    };
    format!("{sign}{body}")
}

/// Display width of `s` in terminal cells.
pub fn width(s: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(s)
}

/// `s` cut to `max` cells, marking a cut with `…`.
pub fn fit(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    use unicode_width::UnicodeWidthChar;
    if width(s) <= max {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::new();
    let mut w = 0;
    for c in s.chars() {
        let cw = c.width().unwrap_or(0);
        if w + cw + 1 > max {
            break;
        }
        out.push(c);
        w += cw;
    }
    if max > 0 {
        out.push('…');
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_full_then_compact_never_cut() {
        assert_eq!(count(0), "0");
        assert_eq!(count(7_380), "7,380");
        assert_eq!(count(99_999), "99,999");
        assert_eq!(count(112_069), "112k");
        assert_eq!(count(11_206_900), "11.2M");
        assert_eq!(count(16_633_671), "16.6M");
        assert_eq!(count(999_999), "1.00M");
        assert_eq!(count(999_499), "999k");
        assert_eq!(count(1_234_567_890), "1.23B");
        assert_eq!(count(u64::MAX), "18446744T");
        assert_eq!(int(1_663_367), "1,663,367");
    }

    #[test]
    fn dollars_keep_three_significant_digits() {
        assert_eq!(usd(0.0), "$0");
        assert_eq!(usd(64.87), "$64.9");
        assert_eq!(usd(3.13), "$3.13");
        assert_eq!(usd(0.4321), "$0.432");
        assert_eq!(usd(0.000_123_4), "$0.000123");
        assert_eq!(usd(0.000_999_9), "$0.00100");
        assert_eq!(usd(0.009_996), "$0.0100");
        assert_eq!(usd(1_234.0), "$1.23k");
        assert_eq!(usd(999.7), "$1.00k");
        assert_eq!(usd(2_500_000.0), "$2.50M");
        assert_eq!(usd(0.000_000_5), "<$0.000001");
        assert_eq!(usd(-1.5), "-$1.50");
        assert_eq!(cost(0.0, true), "unpriced");
    }

    #[test]
    fn durations_switch_units_before_they_grow_wide() {
        assert_eq!(ms(None), "-");
        assert_eq!(ms(Some(0.42)), "0.42ms");
        assert_eq!(ms(Some(799.0)), "799ms");
        assert_eq!(ms(Some(999.6)), "1.00s");
        assert_eq!(ms(Some(4_817.0)), "4.82s");
        assert_eq!(ms(Some(14_900.0)), "14.9s");
        assert_eq!(ms(Some(45_000.0)), "45.0s");
        assert_eq!(ms(Some(123_400.0)), "123s");
        assert_eq!(ms(Some(1_000_000.0)), "16.7m");
        assert_eq!(ms(Some(7_200_000.0)), "2.00h");
    }

    #[test]
    fn percentages_rates_and_plain_numbers() {
        assert_eq!(pct(0.0), "0%");
        assert_eq!(pct(0.412), "0.41%");
        assert_eq!(pct(11.24), "11.2%");
        assert_eq!(pct(100.0), "100%");
        assert_eq!(rate(0.372), "0.372");
        assert_eq!(rate(57.0), "57.0");
        assert_eq!(rate(1_234.0), "1.23k");
        assert_eq!(num(8.391), "8.39");
        assert_eq!(num(10.0), "10.0");
        assert_eq!(num(2_500.0), "2.50k");
        assert_eq!(num(f64::INFINITY), "+∞");
    }

    #[test]
    fn every_compact_form_fits_seven_cells() {
        let mut v = 1.0f64;
        while v < 1e15 {
            for x in [v, v * 1.5, v * 9.99, v * 9.9999] {
                assert!(width(&count(x as u64)) <= 7, "{x} {}", count(x as u64));
                assert!(width(&usd(x / 1e6)) <= 11, "{x} {}", usd(x / 1e6));
                assert!(width(&ms(Some(x / 1e3))) <= 7, "{x} {}", ms(Some(x / 1e3)));
            }
            v *= 10.0;
        }
    }

    #[test]
    fn names_are_cut_with_an_ellipsis() {
        assert_eq!(fit("claude-sonnet-4", 14), "claude-sonnet…");
        assert_eq!(fit("gpt-4o", 14), "gpt-4o");
        assert_eq!(fit("日本語モデル", 5), "日本…");
    }
}
