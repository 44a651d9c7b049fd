//! A YAML reader that keeps the position of every node, so errors about the
//! meaning of a workflow (not only its syntax) can name a line and column.
//!
//! Built on `saphyr-parser`'s event stream rather than a YAML-to-serde
//! bridge: the events carry spans, we see aliases before they are expanded
//! (so their expansion is counted against a budget: no billion laughs), and
//! we see duplicate keys (which loaders silently overwrite).

use std::collections::{HashMap, HashSet};

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use super::error::{ErrorClass, Pos};

/// Bounds on what one workflow file may hold, so an untrusted file cannot
/// exhaust memory or time.
#[derive(Debug, Clone, Copy)]
pub struct YamlLimits {
    /// Size of the file in bytes.
    pub max_bytes: usize,
    /// Nesting of mappings and lists.
    pub max_depth: usize,
    /// Nodes in the document, counting every alias expansion in full.
    pub max_nodes: usize,
}

/// The bounds the reader applies (documented in `runner/docs/workflows.md`).
pub const YAML_LIMITS: YamlLimits = YamlLimits {
    max_bytes: 512 * 1024,
    max_depth: 32,
    max_nodes: 100_000,
};

/// How a scalar was written; only plain scalars are typed (numbers, booleans,
/// null), quoted and block scalars are always text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
    Folded,
}

/// A scalar with where its text starts, to place errors inside it.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    pub text: String,
    pub style: Style,
    pub pos: Pos,
    /// For a literal block (`|`): the file line of its first content line
    /// and its indentation, so an offset in the text maps to a column.
    block: Option<(u32, u32)>,
}

/// What a plain scalar means under the YAML 1.2 core schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    Null,
    Bool(bool),
    Number(f64),
    Str,
}

impl Scalar {
    /// The file position of the character at `offset` (in characters) in
    /// the text; the scalar's start when the mapping is not exact (folded or
    /// multi-line quoted scalars).
    pub fn pos_at(&self, offset: usize) -> Pos {
        match (self.style, self.block) {
            (Style::Literal, Some((first_line, indent))) => {
                let before: String = self.text.chars().take(offset).collect();
                let line = before.matches('\n').count();
                let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count());
                Pos::new(
                    first_line.saturating_add(u32::try_from(line).unwrap_or(u32::MAX)),
                    indent + 1 + u32::try_from(col).unwrap_or(u32::MAX - indent - 1),
                )
            }
            (Style::Plain, _) if !self.text.contains('\n') => self.pos.right(offset),
            (Style::SingleQuoted | Style::DoubleQuoted, _) if !self.text.contains('\n') => {
                self.pos.right(offset + 1)
            }
            _ => self.pos,
        }
    }

    pub fn resolve(&self) -> Resolved {
        if self.style != Style::Plain {
            return Resolved::Str;
        }
        resolve_plain(&self.text)
    }

    pub fn is_null(&self) -> bool {
        self.resolve() == Resolved::Null
    }
}

/// The YAML 1.2 core schema: what a plain scalar denotes.
pub fn resolve_plain(t: &str) -> Resolved {
    match t {
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        "true" | "True" | "TRUE" => return Resolved::Bool(true),
        "false" | "False" | "FALSE" => return Resolved::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Resolved::Number(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Resolved::Number(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Resolved::Number(f64::NAN),
        _ => {}
    }
    let radix = |prefix: &str, radix: u32| {
        t.strip_prefix(prefix)
            .filter(|d| !d.is_empty())
            .and_then(|d| i64::from_str_radix(d, radix).ok())
    };
    if let Some(n) = radix("0x", 16).or_else(|| radix("0o", 8)) {
        return Resolved::Number(n as f64);
    }
    if is_core_number(t)
        && let Ok(n) = t.parse::<f64>()
    {
        return Resolved::Number(n);
    }
    Resolved::Str
}

/// `[-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?`
fn is_core_number(t: &str) -> bool {
    let b = t.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'-' | b'+')));
    let digits = |i: &mut usize| {
        let s = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - s
    };
    let int = digits(&mut i);
    let mut frac = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        frac = digits(&mut i);
    }
    if int == 0 && frac == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<(Scalar, Node)>),
}

/// A YAML node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub pos: Pos,
    /// Nodes in this subtree, itself included (the alias budget).
    size: usize,
}

impl Node {
    pub fn as_scalar(&self) -> Option<&Scalar> {
        match &self.kind {
            NodeKind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Scalar, Node)]> {
        match &self.kind {
            NodeKind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        self.as_scalar().is_some_and(Scalar::is_null)
    }

    /// "a mapping", "a list", "text": for "expected X, found Y" messages.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Map(_) => "a mapping",
            NodeKind::Seq(_) => "a list",
            NodeKind::Scalar(s) => match s.resolve() {
                Resolved::Null => "an empty value",
                Resolved::Bool(_) => "a boolean",
                Resolved::Number(_) => "a number",
                Resolved::Str => "text",
            },
        }
    }
}

/// A problem reading the YAML itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub pos: Pos,
    pub class: ErrorClass,
    pub message: String,
}

fn pos_of(span: &Span) -> Pos {
    let m = span.start;
    Pos::new(
        u32::try_from(m.line()).unwrap_or(u32::MAX),
        u32::try_from(m.col() + 1).unwrap_or(u32::MAX),
    )
}

#[derive(Debug)]
enum Frame {
    Seq {
        items: Vec<Node>,
        pos: Pos,
        anchor: usize,
        size: usize,
    },
    Map {
        entries: Vec<(Scalar, Node)>,
        keys: HashSet<String>,
        first_at: HashMap<String, Pos>,
        key: Option<Scalar>,
        pos: Pos,
        anchor: usize,
        size: usize,
    },
}

struct Builder {
    limits: YamlLimits,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
    root: Option<Node>,
}

/// Reads one YAML document into positioned nodes. `Ok(None)` for an empty
/// document.
pub fn parse(source: &str, limits: YamlLimits) -> Result<Option<Node>, YamlError> {
    if source.len() > limits.max_bytes {
        return Err(YamlError {
            pos: Pos::new(1, 1),
            class: ErrorClass::Limit,
            message: format!(
                "the file is {} bytes; workflow files may hold at most {} bytes: split it into several workflows",
                source.len(),
                limits.max_bytes
            ),
        });
    }
    let mut b = Builder {
        limits,
        stack: Vec::new(),
        anchors: HashMap::new(),
        nodes: 0,
        root: None,
    };
    let mut documents = 0;
    for event in Parser::new_from_str(source) {
        let (event, span) = event.map_err(|e| YamlError {
            pos: Pos::new(
                u32::try_from(e.marker().line()).unwrap_or(u32::MAX),
                u32::try_from(e.marker().col() + 1).unwrap_or(u32::MAX),
            ),
            class: ErrorClass::Syntax,
            message: format!("this is not valid YAML: {}", e.info()),
        })?;
        let pos = pos_of(&span);
        match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(b.error(
                        pos,
                        ErrorClass::Syntax,
                        "a workflow file holds one YAML document: remove this `---` and what follows, or move it into its own file",
                    ));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                if let Some(tag) = tag {
                    return Err(b.tag_error(pos, &tag.handle, &tag.suffix));
                }
                let scalar = b.scalar(text.into_owned(), style, pos, &span);
                b.add(
                    Node {
                        kind: NodeKind::Scalar(scalar),
                        pos,
                        size: 1,
                    },
                    anchor,
                )?;
            }
            Event::SequenceStart(anchor, ref tag) | Event::MappingStart(anchor, ref tag) => {
                if let Some(tag) = tag {
                    return Err(b.tag_error(pos, &tag.handle, &tag.suffix));
                }
                b.open(matches!(event, Event::MappingStart(..)), pos, anchor)?;
            }
            Event::SequenceEnd | Event::MappingEnd => b.close()?,
            Event::Alias(id) => b.alias(id, pos)?,
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
    }
    Ok(b.root)
}

impl Builder {
    fn error(&self, pos: Pos, class: ErrorClass, message: impl Into<String>) -> YamlError {
        YamlError {
            pos,
            class,
            message: message.into(),
        }
    }

    fn tag_error(&self, pos: Pos, handle: &str, suffix: &str) -> YamlError {
        // The parser resolves `!!x` to the core schema's long form.
        let shown = match handle.strip_prefix("tag:yaml.org,2002:") {
            Some(_) => format!("!!{suffix}"),
            None => format!("{handle}{suffix}"),
        };
        self.error(
            pos,
            ErrorClass::Syntax,
            format!(
                "`{shown}` is read as a YAML tag, which workflows do not use: remove it, or quote the value if the `!` belongs to it ('{shown}')"
            ),
        )
    }

    fn count(&mut self, n: usize, pos: Pos) -> Result<(), YamlError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > self.limits.max_nodes {
            return Err(self.error(
                pos,
                ErrorClass::Limit,
                format!(
                    "the document holds more than {} values (aliases count in full): make it smaller",
                    self.limits.max_nodes
                ),
            ));
        }
        Ok(())
    }

    fn scalar(&self, text: String, style: ScalarStyle, pos: Pos, span: &Span) -> Scalar {
        let style = match style {
            ScalarStyle::Plain => Style::Plain,
            ScalarStyle::SingleQuoted => Style::SingleQuoted,
            ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
            ScalarStyle::Literal => Style::Literal,
            ScalarStyle::Folded => Style::Folded,
        };
        let block = (style == Style::Literal)
            .then(|| block_origin(&text, span))
            .flatten();
        Scalar {
            text,
            style,
            pos,
            block,
        }
    }

    fn open(&mut self, map: bool, pos: Pos, anchor: usize) -> Result<(), YamlError> {
        if self.stack.len() >= self.limits.max_depth {
            return Err(self.error(
                pos,
                ErrorClass::Limit,
                format!(
                    "values are nested more than {} levels deep: flatten this part",
                    self.limits.max_depth
                ),
            ));
        }
        self.count(1, pos)?;
        self.stack.push(if map {
            Frame::Map {
                entries: Vec::new(),
                keys: HashSet::new(),
                first_at: HashMap::new(),
                key: None,
                pos,
                anchor,
                size: 1,
            }
        } else {
            Frame::Seq {
                items: Vec::new(),
                pos,
                anchor,
                size: 1,
            }
        });
        Ok(())
    }

    fn close(&mut self) -> Result<(), YamlError> {
        let (node, anchor) = match self.stack.pop() {
            Some(Frame::Seq {
                items,
                pos,
                anchor,
                size,
            }) => (
                Node {
                    kind: NodeKind::Seq(items),
                    pos,
                    size,
                },
                anchor,
            ),
            Some(Frame::Map {
                entries,
                pos,
                anchor,
                size,
                ..
            }) => (
                Node {
                    kind: NodeKind::Map(entries),
                    pos,
                    size,
                },
                anchor,
            ),
            // The parser balances start and end events.
            None => return Ok(()),
        };
        // The node was counted as it was built; only insert it.
        self.nodes -= node.size;
        self.add(node, anchor)
    }

    fn alias(&mut self, id: usize, pos: Pos) -> Result<(), YamlError> {
        let Some(node) = self.anchors.get(&id) else {
            return Err(self.error(
                pos,
                ErrorClass::Syntax,
                "this alias names no anchor defined before it",
            ));
        };
        let node = node.clone();
        self.add(node, 0)
    }

    /// Places a finished node into its parent (or as the root), counting it.
    fn add(&mut self, node: Node, anchor: usize) -> Result<(), YamlError> {
        self.count(node.size, node.pos)?;
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        let Some(frame) = self.stack.last_mut() else {
            self.root = Some(node);
            return Ok(());
        };
        match frame {
            Frame::Seq { items, size, .. } => {
                *size += node.size;
                items.push(node);
            }
            Frame::Map {
                entries,
                keys,
                first_at,
                key,
                size,
                ..
            } => {
                *size += node.size;
                match key.take() {
                    Some(k) => entries.push((k, node)),
                    None => {
                        let NodeKind::Scalar(k) = node.kind else {
                            return Err(YamlError {
                                pos: node.pos,
                                class: ErrorClass::Syntax,
                                message: "mapping keys must be plain text, not lists or mappings"
                                    .into(),
                            });
                        };
                        if !keys.insert(k.text.clone()) {
                            let first = first_at.get(&k.text).copied().unwrap_or_default();
                            return Err(YamlError {
                                pos: k.pos,
                                class: ErrorClass::Syntax,
                                message: format!(
                                    "key `{}` appears twice in this mapping (first on line {}): keep one",
                                    k.text, first.line
                                ),
                            });
                        }
                        first_at.insert(k.text.clone(), k.pos);
                        *key = Some(k);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Where the content of a literal block scalar starts: the parser's span
/// begins at the first line with text (after any blank lines, which are part
/// of the text) at the block's indentation.
fn block_origin(text: &str, span: &Span) -> Option<(u32, u32)> {
    let blank = text.chars().take_while(|c| *c == '\n').count();
    Some((
        u32::try_from(span.start.line().checked_sub(blank)?).ok()?,
        u32::try_from(span.start.col()).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(s: &str) -> Node {
        parse(s, YAML_LIMITS).unwrap().unwrap()
    }

    fn err(s: &str) -> YamlError {
        parse(s, YAML_LIMITS).unwrap_err()
    }

    #[test]
    fn positions_are_one_based_lines_and_columns() {
        let n = doc("a: 1\nbb:\n  cc: [x, 'y']\n");
        let m = n.as_map().unwrap();
        assert_eq!(m[0].0.pos, Pos::new(1, 1));
        assert_eq!(m[1].0.pos, Pos::new(2, 1));
        let inner = m[1].1.as_map().unwrap();
        assert_eq!(inner[0].0.pos, Pos::new(3, 3));
        let seq = inner[0].1.as_seq().unwrap();
        assert_eq!(seq[0].pos, Pos::new(3, 8));
        assert_eq!(seq[1].pos, Pos::new(3, 11));
        assert_eq!(seq[1].as_scalar().unwrap().pos_at(0), Pos::new(3, 12));
    }

    #[test]
    fn literal_blocks_map_offsets_to_their_lines() {
        let src = "run: |\n  echo one\n  echo ${{ x }}\n";
        let n = doc(src);
        let s = n.as_map().unwrap()[0].1.as_scalar().unwrap().clone();
        assert_eq!(s.text, "echo one\necho ${{ x }}\n");
        let off = s.text.find("${{").unwrap();
        assert_eq!(s.pos_at(off), Pos::new(3, 8));
        assert_eq!(s.pos_at(0), Pos::new(2, 3));

        let n = doc("run: |\n\n  echo ${{ x }}\n");
        let s = n.as_map().unwrap()[0].1.as_scalar().unwrap().clone();
        assert_eq!(s.pos_at(s.text.find("${{").unwrap()), Pos::new(3, 8));
    }

    #[test]
    fn plain_scalars_follow_the_core_schema() {
        let r = |t: &str| resolve_plain(t);
        assert_eq!(r("on"), Resolved::Str, "YAML 1.2: `on` is text, not true");
        assert_eq!(r("yes"), Resolved::Str);
        assert_eq!(r("true"), Resolved::Bool(true));
        assert_eq!(r("~"), Resolved::Null);
        assert_eq!(r(""), Resolved::Null);
        assert_eq!(r("3.10"), Resolved::Number(3.1));
        assert_eq!(r("0x1F"), Resolved::Number(31.0));
        assert_eq!(r("1e3"), Resolved::Number(1000.0));
        assert_eq!(r("1.2.3"), Resolved::Str);
        assert_eq!(r("-"), Resolved::Str);
        assert_eq!(r("."), Resolved::Str);
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let e = err("a: 1\nb: 2\na: 3\n");
        assert_eq!(e.pos, Pos::new(3, 1));
        assert!(
            e.message.contains("`a` appears twice") && e.message.contains("line 1"),
            "{}",
            e.message
        );
    }

    #[test]
    fn syntax_errors_carry_positions() {
        let e = err("a: [1, 2\nb: 3\n");
        assert_eq!(e.class, ErrorClass::Syntax);
        assert!(e.pos.line >= 1, "{e:?}");
        assert!(
            e.message.starts_with("this is not valid YAML"),
            "{}",
            e.message
        );
    }

    #[test]
    fn several_documents_are_refused() {
        let e = err("a: 1\n---\nb: 2\n");
        assert_eq!(e.pos.line, 2);
    }

    #[test]
    fn tags_are_refused() {
        let e = err("a: !!str 1\n");
        assert!(
            e.message.starts_with("`!!str` is read as a YAML tag"),
            "{}",
            e.message
        );
    }

    #[test]
    fn aliases_expand_within_the_budget() {
        let n = doc("a: &x [1, 2]\nb: *x\n");
        let m = n.as_map().unwrap();
        assert_eq!(m[1].1.as_seq().unwrap().len(), 2);
    }

    #[test]
    fn billion_laughs_is_stopped_by_the_node_budget() {
        let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            s.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = err(&s);
        assert_eq!(e.class, ErrorClass::Limit);
        assert!(e.message.contains("aliases count in full"), "{}", e.message);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let s = format!("{}{}", "[".repeat(40), "]".repeat(40));
        let e = err(&s);
        assert_eq!(e.class, ErrorClass::Limit);
    }

    #[test]
    fn oversized_files_are_refused_before_parsing() {
        let s = "#".repeat(YAML_LIMITS.max_bytes + 1);
        assert_eq!(err(&s).class, ErrorClass::Limit);
    }

    #[test]
    fn empty_documents_are_none() {
        assert!(parse("# only a comment\n", YAML_LIMITS).unwrap().is_none());
    }
}
