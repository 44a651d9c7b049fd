//! "Did you mean ...?" for misspelt keys and names.

/// The closest of `candidates` to `word`, if close enough to be a likely
/// typo: at most a third of the word's length in edits (one edit at least),
/// or the same word written with `_` where `-` belongs or in other case.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let normal = |s: &str| s.to_ascii_lowercase().replace('_', "-");
    let budget = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| {
            let d = if normal(c) == normal(word) {
                0
            } else {
                distance(word, c)
            };
            (d, c)
        })
        .filter(|(d, _)| *d <= budget)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `; did you mean `x`?` or nothing.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(word, candidates)
        .map(|c| format!("; did you mean `{c}`?"))
        .unwrap_or_default()
}

/// Levenshtein distance over characters.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let sub = prev[j - 1] + usize::from(a[i - 1] != b[j - 1]);
            cur[j] = sub.min(prev[j] + 1).min(cur[j - 1] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_their_key() {
        let keys = ["runs-on", "needs", "steps", "timeout-minutes"];
        assert_eq!(closest("runs_on", keys), Some("runs-on"));
        assert_eq!(closest("step", keys), Some("steps"));
        assert_eq!(closest("timeout-minute", keys), Some("timeout-minutes"));
        assert_eq!(closest("Needs", keys), Some("needs"));
        assert_eq!(closest("services", keys), None);
        assert_eq!(did_you_mean("xyz", keys), "");
    }
}
