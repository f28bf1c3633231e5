//! Instants and spans typed on the command line.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::cli::UsageError;

/// RFC 3339 with an offset; a local date-time or date in `tz`; or, when `ago` is allowed, a
/// span before `now` (`24h`, `7d`).
pub fn parse_instant(
    flag: &str,
    text: &str,
    tz: Tz,
    now: DateTime<Utc>,
    ago: bool,
) -> Result<DateTime<Utc>, UsageError> {
    if let Some(t) = stopd_rules::parse_time(text, tz) {
        return Ok(t);
    }
    if ago && humantime::parse_duration(text.trim()).is_ok() {
        // A span ago: bounded like every span, so `--since 99999999999h` is a usage error,
        // not an overflow.
        let span = parse_span(flag, text)?;
        return now
            .checked_sub_signed(span.delta())
            .ok_or_else(|| UsageError(format!("{flag} {text:?} reaches before the calendar")));
    }
    let forms = if ago {
        "RFC 3339 (2026-12-19T00:00:00Z), a local date-time or date, or a span ago (24h, 7d)"
    } else {
        "RFC 3339 (2026-12-19T00:00:00Z), or a local date-time or date"
    };
    Err(UsageError(format!(
        "{flag} {text:?} is not a time: use {forms}"
    )))
}

/// A span (`90s`, `2h`, `3d`): positive and at most 100 years, as every span of stopd.
pub fn parse_span(flag: &str, text: &str) -> Result<stopd_rules::Span, UsageError> {
    stopd_rules::Span::parse(text).map_err(|e| match e {
        stopd_rules::SpanError::Zero => UsageError(format!("{flag} {text:?} {e}")),
        e => UsageError(format!("{flag} {e}")),
    })
}

/// A span as people say it: `2 d 14 h`, `1 h 30 min`, `45 s`; the one style of every
/// command ([`stopd_rules::human_span`], which reasons and explanations use too).
pub fn human(d: chrono::Duration) -> String {
    stopd_rules::human_span(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_spans_read_naturally() {
        let h = |s: i64| human(chrono::Duration::seconds(s));
        assert_eq!(h(62 * 3600), "2 d 14 h");
        assert_eq!(h(86_400), "1 d");
        assert_eq!(h(392 * 3600), "16 d 8 h");
        assert_eq!(h(9000), "2 h 30 min");
        assert_eq!(h(5400), "1 h 30 min");
        assert_eq!(h(45), "45 s");
        assert_eq!(h(0), "0 s");
    }

    #[test]
    fn instants_in_every_form() {
        let now = "2026-11-26T12:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let utc = chrono_tz::UTC;
        let p = |s: &str| {
            parse_instant("--since", s, utc, now, true)
                .unwrap()
                .to_rfc3339()
        };
        assert_eq!(p("2026-12-19T00:00:00+01:00"), "2026-12-18T23:00:00+00:00");
        assert_eq!(p("2026-12-19T00:00:00"), "2026-12-19T00:00:00+00:00");
        assert_eq!(p("7d"), "2026-11-19T12:00:00+00:00");
        let e = parse_instant("--at", "7d", utc, now, false).unwrap_err();
        assert!(e.0.contains("--at \"7d\" is not a time"), "{e}");
    }

    #[test]
    fn spans_must_be_positive() {
        assert_eq!(parse_span("--for", "2h").unwrap().get().as_secs(), 7200);
        // These overflowed (a panic) before spans were bounded.
        let e = parse_span("--for", "99999999999h").unwrap_err();
        assert!(e.0.contains("--for 99999999999h is longer than"), "{e}");
        let now = "2026-11-26T12:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let e = parse_instant("--since", "99999999999h", chrono_tz::UTC, now, true).unwrap_err();
        assert!(e.0.contains("longer than the longest span"), "{e}");
        assert!(
            parse_span("--for", "0s")
                .unwrap_err()
                .0
                .contains("longer than zero")
        );
        assert!(parse_span("--for", "soon").is_err());
    }
}
