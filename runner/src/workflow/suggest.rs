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

/// Edits between two words (insert, delete, replace, swap two neighbours:
/// the optimal string alignment distance), over characters.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    d[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
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
        assert_eq!(closest("setps", keys), Some("steps"), "a swap is one edit");
        assert_eq!(closest("services", keys), None);
        assert_eq!(did_you_mean("xyz", keys), "");
    }
}
