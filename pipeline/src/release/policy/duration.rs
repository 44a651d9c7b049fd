//! Durations as the policy writes them: `90s`, `30m`, `1h30m`, `2d`, `0s`.

use std::time::Duration;

/// A duration that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a duration: {reason} (write e.g. \"90s\", \"30m\", \"1h30m\", \"2d\")")]
pub struct BadDuration {
    pub value: String,
    pub reason: &'static str,
}

/// Parses `<n><unit>` groups, units `s`, `m`, `h`, `d`, largest first.
pub fn parse(value: &str) -> Result<Duration, BadDuration> {
    let fail = |reason| BadDuration {
        value: value.to_owned(),
        reason,
    };
    if value.is_empty() {
        return Err(fail("it is empty"));
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut last_unit = u64::MAX;
    for c in value.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return Err(fail("units are s, m, h and d")),
        };
        if digits.is_empty() {
            return Err(fail("a unit needs a number before it"));
        }
        if unit >= last_unit {
            return Err(fail("units go from the largest to the smallest, once each"));
        }
        let n: u64 = digits
            .parse()
            .map_err(|_| fail("the number is too large"))?;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| fail("the number is too large"))?;
        digits.clear();
        last_unit = unit;
    }
    if !digits.is_empty() {
        return Err(fail("a number needs a unit after it"));
    }
    Ok(Duration::from_secs(total))
}

/// `1h30m`, `45s`, `0s`: the shortest form [`parse`] reads back.
pub fn format(d: Duration) -> String {
    let mut s = d.as_secs();
    if s == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, name) in [(86_400, 'd'), (3_600, 'h'), (60, 'm'), (1, 's')] {
        if s >= unit {
            out.push_str(&format!("{}{name}", s / unit));
            s %= unit;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_and_print() {
        assert_eq!(parse("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse("0s").unwrap(), Duration::ZERO);
        for bad in [
            "",
            "5",
            "m",
            "5x",
            "1m1h",
            "1m1m",
            "-1s",
            "99999999999999999999d",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        for d in [0, 45, 5400, 90_061] {
            assert_eq!(parse(&format(Duration::from_secs(d))).unwrap().as_secs(), d);
        }
    }
}
