//! Problems met while reading an image that do not stop the SBOM: each is
//! reported on stderr and recorded in the SBOM, and the result is partial.

use std::fmt;

/// At most this many warnings are kept; a hostile image could otherwise grow
/// the list without bound. The rest are counted.
pub const MAX_WARNINGS: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Warning {
    /// The path inside the image (or archive) the warning is about.
    pub path: Option<String>,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "/{p}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// A bounded list of warnings.
#[derive(Debug, Default, Clone)]
pub struct Warnings {
    list: Vec<Warning>,
    dropped: u64,
}

impl Warnings {
    pub fn push(&mut self, path: Option<&str>, message: impl Into<String>) {
        if self.list.len() < MAX_WARNINGS {
            self.list.push(Warning {
                path: path.map(str::to_owned),
                message: message.into(),
            });
        } else {
            self.dropped += 1;
        }
    }

    pub fn extend(&mut self, path: &str, messages: &[String]) {
        for m in messages {
            self.push(Some(path), m.clone());
        }
    }

    /// The warnings, sorted (so the SBOM does not depend on reading order),
    /// plus one line for those over the limit.
    pub fn into_sorted(mut self) -> Vec<Warning> {
        self.list.sort();
        self.list.dedup();
        if self.dropped > 0 {
            self.list.push(Warning {
                path: None,
                message: format!(
                    "{} more warnings were not recorded (limit {MAX_WARNINGS})",
                    self.dropped
                ),
            });
        }
        self.list
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_bounded_and_sorted() {
        let mut w = Warnings::default();
        for i in (0..MAX_WARNINGS + 5).rev() {
            w.push(Some(&format!("f{i:05}")), "bad");
        }
        let v = w.into_sorted();
        assert_eq!(v.len(), MAX_WARNINGS + 1);
        assert!(v[0].path.as_deref() < v[1].path.as_deref());
        assert!(v.last().unwrap().message.contains("5 more warnings"));
        assert_eq!(v[0].to_string(), "/f00005: bad");
    }
}
