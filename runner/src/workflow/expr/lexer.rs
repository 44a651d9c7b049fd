//! Tokens of `${{ }}` expressions.

use super::ExprError;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Dot,
    Comma,
    Not,
    Eq,
    Ne,
    And,
    Or,
    Str(String),
    Num(f64),
    Ident(String),
}

/// A token and the offset (in characters, from the start of the scalar the
/// expression sits in) of its first character.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub offset: usize,
}

/// The operator or punctuation at `c` (followed by `next`), and its length.
fn operator(c: char, next: Option<char>) -> Option<(Tok, usize)> {
    Some(match (c, next) {
        ('(', _) => (Tok::LParen, 1),
        (')', _) => (Tok::RParen, 1),
        ('[', _) => (Tok::LBracket, 1),
        (']', _) => (Tok::RBracket, 1),
        ('.', _) => (Tok::Dot, 1),
        (',', _) => (Tok::Comma, 1),
        ('=', Some('=')) => (Tok::Eq, 2),
        ('!', Some('=')) => (Tok::Ne, 2),
        ('!', _) => (Tok::Not, 1),
        ('&', Some('&')) => (Tok::And, 2),
        ('|', Some('|')) => (Tok::Or, 2),
        _ => return None,
    })
}

/// Whether a number starts at `c`: a digit, or `-`/`.` before a digit.
fn starts_number(c: char, next: Option<char>) -> bool {
    c.is_ascii_digit()
        || (c == '-' && next.is_some_and(|n| n.is_ascii_digit() || n == '.'))
        || (c == '.' && next.is_some_and(|n| n.is_ascii_digit()))
}

/// Splits `src` into tokens; `base` is the offset of `src` in its scalar.
pub fn tokenize(src: &str, base: usize) -> Result<Vec<Token>, ExprError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (c, next) = (chars[i], chars.get(i + 1).copied());
        let offset = base + i;
        let (tok, end) = if c.is_whitespace() {
            i += 1;
            continue;
        } else if starts_number(c, next) {
            let (n, end) = number(&chars, i, base)?;
            (Tok::Num(n), end)
        } else if let Some((tok, len)) = operator(c, next) {
            (tok, i + len)
        } else if c == '\'' {
            let (s, end) = string(&chars, i, base)?;
            (Tok::Str(s), end)
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut end = i;
            while end < chars.len()
                && (chars[end].is_ascii_alphanumeric() || matches!(chars[end], '_' | '-'))
            {
                end += 1;
            }
            (Tok::Ident(chars[i..end].iter().collect()), end)
        } else {
            return Err(unexpected(c, next, offset));
        };
        out.push(Token { tok, offset });
        i = end;
    }
    Ok(out)
}

fn unexpected(c: char, next: Option<char>, offset: usize) -> ExprError {
    match c {
        '<' | '>' => {
            let op = if next == Some('=') {
                format!("{c}=")
            } else {
                c.to_string()
            };
            ExprError::new(
                offset,
                format!("the operator `{op}` is not supported: use `==`, `!=`, `&&`, `||` or `!`"),
            )
        }
        '"' => ExprError::new(
            offset,
            "strings in expressions take single quotes: write 'text' (double a quote inside: 'it''s')",
        ),
        c => ExprError::new(
            offset,
            format!("unexpected character `{c}` in the expression"),
        ),
    }
}

/// A single-quoted string starting at `start`; `''` is a quote.
fn string(chars: &[char], start: usize, base: usize) -> Result<(String, usize), ExprError> {
    let mut s = String::new();
    let mut i = start + 1;
    loop {
        match chars.get(i) {
            None => {
                return Err(ExprError::new(
                    base + start,
                    "this string has no closing quote: end it with '",
                ));
            }
            Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                s.push('\'');
                i += 2;
            }
            Some('\'') => return Ok((s, i + 1)),
            Some(c) => {
                s.push(*c);
                i += 1;
            }
        }
    }
}

/// A number: decimal with optional fraction and exponent, or `0x` hex, `0o`
/// octal; a leading `-` belongs to the literal (there is no minus operator).
fn number(chars: &[char], start: usize, base: usize) -> Result<(f64, usize), ExprError> {
    let mut end = start;
    while end < chars.len()
        && (chars[end].is_ascii_alphanumeric() || matches!(chars[end], '.' | '-' | '+' | '_'))
    {
        // A sign only belongs to the number at its start or after an exponent.
        if matches!(chars[end], '-' | '+') && end != start && !matches!(chars[end - 1], 'e' | 'E') {
            break;
        }
        end += 1;
    }
    let text: String = chars[start..end].iter().collect();
    let (neg, digits) = match text.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, text.as_str()),
    };
    let radix = |p: &str, r: u32| {
        digits
            .strip_prefix(p)
            .map(|d| i64::from_str_radix(d, r).map(|n| n as f64))
    };
    let value = match radix("0x", 16).or_else(|| radix("0o", 8)) {
        Some(r) => r.ok(),
        None => digits
            .parse::<f64>()
            .ok()
            .filter(|_| !digits.contains(['_', 'i', 'n', 'I', 'N'])),
    };
    match value {
        Some(v) => Ok((if neg { -v } else { v }, end)),
        None => Err(ExprError::new(
            base + start,
            format!("`{text}` is not a number"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        tokenize(s, 0).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn operators_literals_and_identifiers() {
        assert_eq!(
            toks("!(a.b-c == 'x''y') && -1.5 != 0x10 || null"),
            vec![
                Tok::Not,
                Tok::LParen,
                Tok::Ident("a".into()),
                Tok::Dot,
                Tok::Ident("b-c".into()),
                Tok::Eq,
                Tok::Str("x'y".into()),
                Tok::RParen,
                Tok::And,
                Tok::Num(-1.5),
                Tok::Ne,
                Tok::Num(16.0),
                Tok::Or,
                Tok::Ident("null".into()),
            ]
        );
        assert_eq!(toks("2.5e3"), vec![Tok::Num(2500.0)]);
        assert_eq!(toks("1e-2"), vec![Tok::Num(0.01)]);
    }

    #[test]
    fn offsets_count_from_the_base() {
        let t = tokenize("a == 'b'", 10).unwrap();
        assert_eq!(
            t.iter().map(|t| t.offset).collect::<Vec<_>>(),
            vec![10, 12, 15]
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let e = tokenize("a < b", 0).unwrap_err();
        assert_eq!(e.offset, 2);
        assert!(e.message.contains("`<` is not supported"), "{}", e.message);
        assert!(
            tokenize("\"x\"", 0)
                .unwrap_err()
                .message
                .contains("single quotes")
        );
        assert!(
            tokenize("'open", 0)
                .unwrap_err()
                .message
                .contains("closing quote")
        );
        assert!(
            tokenize("1.2.3", 0)
                .unwrap_err()
                .message
                .contains("not a number")
        );
        assert!(tokenize("a # b", 0).unwrap_err().message.contains("`#`"));
    }
}
