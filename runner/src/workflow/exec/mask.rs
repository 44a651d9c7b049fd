//! Masking secrets in job output: every value a step received (and each
//! line of a multi-line value) is replaced by `***` in every log line and
//! event — also when the program prints it in pieces that arrive in
//! different chunks, since the masker holds back a tail long enough to
//! complete any secret before releasing text.

/// What replaces a secret.
pub const MASK: &str = "***";

/// Masks a stream of text. Feed chunks as they arrive, then [`finish`].
///
/// [`finish`]: Masker::finish
#[derive(Debug, Clone)]
pub struct Masker {
    /// Longest first, so that a secret containing another is masked whole.
    needles: Vec<String>,
    /// Text not yet released: it may be the start of a secret.
    pending: String,
    longest: usize,
}

impl Masker {
    /// A masker for `values`: each value, and each non-empty line of a
    /// multi-line value (programs print secrets line by line too).
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Masker {
        let mut needles: Vec<String> = Vec::new();
        for v in values {
            let v = v.trim_end_matches(['\n', '\r']);
            if v.is_empty() {
                continue;
            }
            needles.push(v.to_owned());
            if v.contains('\n') {
                needles.extend(
                    v.lines()
                        .map(|l| l.trim_end_matches('\r'))
                        .filter(|l| !l.trim().is_empty())
                        .map(str::to_owned),
                );
            }
        }
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        let longest = needles.first().map_or(0, String::len);
        Masker {
            needles,
            pending: String::new(),
            longest,
        }
    }

    /// Whether there is anything to mask.
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// Masks a whole text at once (a stored result, an error message).
    pub fn mask(&self, text: &str) -> String {
        let (out, _) = self.replace(text, true);
        out
    }

    /// Takes a chunk; returns the text that can be released now, masked.
    pub fn feed(&mut self, chunk: &str) -> String {
        if self.needles.is_empty() {
            return chunk.to_owned();
        }
        self.pending.push_str(chunk);
        let text = std::mem::take(&mut self.pending);
        let (out, kept) = self.replace(&text, false);
        self.pending = kept;
        out
    }

    /// Releases what was held back, masked.
    pub fn finish(&mut self) -> String {
        let text = std::mem::take(&mut self.pending);
        self.mask(&text)
    }

    /// Replaces every secret in `text`. Unless `all`, keeps back the
    /// shortest tail that could still grow into a secret.
    fn replace(&self, text: &str, all: bool) -> (String, String) {
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        let bytes = text.as_bytes();
        while i < text.len() {
            if let Some(n) = self
                .needles
                .iter()
                .find(|n| text[i..].starts_with(n.as_str()))
            {
                out.push_str(MASK);
                i += n.len();
                continue;
            }
            if !all && self.could_start_here(&text[i..]) {
                return (out, text[i..].to_owned());
            }
            let ch = text[i..].chars().next().expect("i is on a char boundary");
            out.push(ch);
            i += ch.len_utf8();
            debug_assert!(i <= bytes.len());
        }
        (out, String::new())
    }

    /// Whether `rest`, shorter than some secret, is a prefix of it (so more
    /// text could complete it).
    fn could_start_here(&self, rest: &str) -> bool {
        rest.len() < self.longest
            && self
                .needles
                .iter()
                .any(|n| n.len() > rest.len() && n.starts_with(rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(m: &mut Masker, chunks: &[&str]) -> String {
        let mut out: String = chunks.iter().map(|c| m.feed(c)).collect();
        out.push_str(&m.finish());
        out
    }

    #[test]
    fn a_secret_is_masked_in_one_chunk() {
        let mut m = Masker::new(["hunter2"]);
        assert_eq!(
            stream(&mut m, &["the password is hunter2!\n"]),
            "the password is ***!\n"
        );
    }

    #[test]
    fn a_secret_split_across_chunks_is_masked() {
        let secret = "s3cr3t-value";
        let line = format!("token={secret} done\n");
        for cut in 0..line.len() {
            for cut2 in cut..line.len() {
                let mut m = Masker::new([secret]);
                let out = stream(&mut m, &[&line[..cut], &line[cut..cut2], &line[cut2..]]);
                assert_eq!(out, "token=*** done\n", "cuts at {cut}, {cut2}");
            }
        }
    }

    #[test]
    fn a_secret_printed_one_byte_at_a_time_is_masked() {
        let mut m = Masker::new(["abcdef"]);
        let text = "xxabcdefyy";
        let chunks: Vec<String> = text.chars().map(|c| c.to_string()).collect();
        let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
        assert_eq!(stream(&mut m, &refs), "xx***yy");
    }

    #[test]
    fn each_line_of_a_multi_line_secret_is_masked() {
        let key = "-----BEGIN KEY-----\nAAAABBBBCCCC\n-----END KEY-----\n";
        let m = Masker::new([key]);
        assert_eq!(m.mask(key), "***\n");
        assert_eq!(m.mask("line: AAAABBBBCCCC\n"), "line: ***\n");
        assert_eq!(m.mask("-----END KEY-----"), "***");
    }

    #[test]
    fn overlapping_secrets_mask_the_longer_one_whole() {
        let m = Masker::new(["abc", "abcdef"]);
        assert_eq!(m.mask("abcdef abc"), "*** ***");
    }

    #[test]
    fn text_that_only_looks_like_a_start_is_released_at_the_end() {
        let mut m = Masker::new(["secret"]);
        assert_eq!(m.feed("a sec"), "a ");
        assert_eq!(m.feed("ond"), "second");
        assert_eq!(m.feed("sec"), "");
        assert_eq!(m.finish(), "sec");
    }

    #[test]
    fn no_secrets_pass_text_through() {
        let mut m = Masker::new(["", "\n"]);
        assert!(m.is_empty());
        assert_eq!(m.feed("anything"), "anything");
    }

    #[test]
    fn multibyte_text_is_kept_intact() {
        let mut m = Masker::new(["pässwörd"]);
        assert_eq!(stream(&mut m, &["é pä", "ssw", "örd ü"]), "é *** ü");
    }
}
