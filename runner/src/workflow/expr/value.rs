//! Values of expressions and GitHub's rules for comparing them and for
//! deciding what is true.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A value: the literals of expressions, context fields and matrix values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Value>),
    Object(BTreeMap<String, Value>),
}

impl Value {
    /// GitHub's truthiness: `false`, `0`, `-0`, `NaN`, `''` and `null` are
    /// false; everything else (objects and arrays included) is true.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => *n != 0.0 && !n.is_nan(),
            Value::String(s) => !s.is_empty(),
            Value::Array(_) | Value::Object(_) => true,
        }
    }

    /// GitHub's conversion to a number, used when the two sides of `==`
    /// differ in type: null is 0, booleans 1 and 0, text is read as a number
    /// (empty text is 0, anything else that is not a number is NaN); arrays
    /// and objects are NaN.
    pub fn to_number(&self) -> f64 {
        match self {
            Value::Null => 0.0,
            Value::Bool(b) => f64::from(u8::from(*b)),
            Value::Number(n) => *n,
            Value::String(s) => parse_number(s),
            Value::Array(_) | Value::Object(_) => f64::NAN,
        }
    }

    /// GitHub's loose equality: same types compare directly (text without
    /// regard to case), different types compare as numbers; arrays and
    /// objects are never equal to anything (GitHub compares them by
    /// identity, which expressions here cannot share).
    pub fn loose_eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Number(a), Value::Number(b)) => a == b,
            (Value::String(a), Value::String(b)) => a.to_lowercase() == b.to_lowercase(),
            (Value::Array(_) | Value::Object(_), _) | (_, Value::Array(_) | Value::Object(_)) => {
                false
            }
            (a, b) => a.to_number() == b.to_number(),
        }
    }

    /// The text a value becomes inside a string: null is empty, numbers as
    /// GitHub prints them, arrays and objects as `Array` and `Object`.
    pub fn render(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => format_number(*n),
            Value::String(s) => s.clone(),
            Value::Array(_) => "Array".into(),
            Value::Object(_) => "Object".into(),
        }
    }

    /// A property of an object, matched without regard to case as GitHub
    /// does (an exact match wins).
    pub fn get(&self, key: &str) -> Value {
        match self {
            Value::Object(m) => m
                .get(key)
                .or_else(|| {
                    m.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(key))
                        .map(|(_, v)| v)
                })
                .cloned()
                .unwrap_or(Value::Null),
            Value::Array(a) => key
                .parse::<usize>()
                .ok()
                .and_then(|i| a.get(i))
                .cloned()
                .unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }
}

/// Reads text as a number the way GitHub's coercion does: surrounding white
/// space is ignored, empty text is 0, `0x`/`0o` prefixes are hexadecimal and
/// octal, otherwise a decimal number with optional fraction and exponent.
pub fn parse_number(s: &str) -> f64 {
    let t = s.trim();
    if t.is_empty() {
        return 0.0;
    }
    let (neg, digits) = match t.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let radix = |p: &str, r: u32| {
        digits
            .strip_prefix(p)
            .map(|d| i64::from_str_radix(d, r).map(|n| n as f64))
    };
    let v = match radix("0x", 16).or_else(|| radix("0o", 8)) {
        Some(r) => r.unwrap_or(f64::NAN),
        None if digits
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
            && digits.starts_with(|c: char| c.is_ascii_digit() || c == '.') =>
        {
            digits.parse::<f64>().unwrap_or(f64::NAN)
        }
        None => f64::NAN,
    };
    if neg { -v } else { v }
}

/// Whole numbers print without a fraction (`3`), others in their shortest
/// form (`3.1`); `NaN`, `Infinity`, `-Infinity` as GitHub prints them.
pub fn format_number(n: f64) -> String {
    if n.is_nan() {
        "NaN".into()
    } else if n.is_infinite() {
        if n > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: &str) -> Value {
        Value::String(t.into())
    }

    #[test]
    fn truthiness_follows_github() {
        for v in [
            Value::Null,
            Value::Bool(false),
            Value::Number(0.0),
            Value::Number(-0.0),
            Value::Number(f64::NAN),
            s(""),
        ] {
            assert!(!v.truthy(), "{v:?}");
        }
        for v in [
            Value::Bool(true),
            Value::Number(2.0),
            s("false"),
            s("0"),
            Value::Array(vec![]),
            Value::Object(BTreeMap::new()),
        ] {
            assert!(v.truthy(), "{v:?}");
        }
    }

    #[test]
    fn loose_equality_coerces_different_types_to_numbers() {
        assert!(Value::Null.loose_eq(&Value::Number(0.0)));
        assert!(Value::Null.loose_eq(&s("")));
        assert!(Value::Bool(true).loose_eq(&Value::Number(1.0)));
        assert!(Value::Bool(true).loose_eq(&s("1")));
        assert!(
            !Value::Bool(true).loose_eq(&s("true")),
            "'true' is NaN as a number"
        );
        assert!(s("3.10").loose_eq(&Value::Number(3.1)));
        assert!(s(" 0x10 ").loose_eq(&Value::Number(16.0)));
        assert!(
            !s("abc").loose_eq(&Value::Number(f64::NAN)),
            "NaN equals nothing"
        );
        assert!(!Value::Number(f64::NAN).loose_eq(&Value::Number(f64::NAN)));
        assert!(!Value::Array(vec![]).loose_eq(&Value::Array(vec![])));
    }

    #[test]
    fn text_compares_without_regard_to_case() {
        assert!(s("Refs/Heads/Main").loose_eq(&s("refs/heads/main")));
        assert!(!s("main").loose_eq(&s("mainline")));
    }

    #[test]
    fn rendering_matches_github() {
        assert_eq!(Value::Number(3.0).render(), "3");
        assert_eq!(Value::Number(3.1).render(), "3.1");
        assert_eq!(Value::Number(-0.5).render(), "-0.5");
        assert_eq!(Value::Null.render(), "");
        assert_eq!(Value::Bool(false).render(), "false");
        assert_eq!(Value::Array(vec![]).render(), "Array");
        assert_eq!(Value::Number(f64::INFINITY).render(), "Infinity");
    }

    #[test]
    fn object_properties_ignore_case() {
        let mut m = BTreeMap::new();
        m.insert("Name".to_string(), s("x"));
        let o = Value::Object(m);
        assert_eq!(o.get("name"), s("x"));
        assert_eq!(o.get("other"), Value::Null);
    }
}
