//! Helpers shared by the fuzz targets: building tar streams from
//! structured entries (with names no well-behaved archiver would write),
//! splitting bytes into the chunks a pipe delivers, and the invariants
//! several targets assert.

use arbitrary::Arbitrary;

/// A tar entry as an attacker could write it: any name and link bytes
/// (`..`, absolute, empty, `.wh.` whiteouts), any type, any size claim.
#[derive(Debug, Clone, Arbitrary)]
pub struct TarEntry {
    pub path: PathSpec,
    pub kind: EntryType,
    pub mode: u16,
    pub link: Option<PathSpec>,
    pub content: Content,
}

/// Names are built from components so the interesting shapes (`..`,
/// whiteouts, the files catalogers read) come up often.
#[derive(Debug, Clone, Arbitrary)]
pub struct PathSpec {
    pub absolute: bool,
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, Arbitrary)]
pub enum Part {
    Dot,
    DotDot,
    Empty,
    Whiteout(Box<Part>),
    Opaque,
    Known(KnownPath),
    Name(String),
    Raw(Vec<u8>),
}

/// Paths catalogers want, so layers carry package databases.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum KnownPath {
    DpkgStatus,
    DpkgStatusD,
    ApkInstalled,
    OsRelease,
    DistInfoMetadata,
    EggInfo,
    NodePackage,
    Copyright,
    Bin,
}

impl KnownPath {
    fn text(self) -> &'static str {
        match self {
            KnownPath::DpkgStatus => "var/lib/dpkg/status",
            KnownPath::DpkgStatusD => "var/lib/dpkg/status.d/base",
            KnownPath::ApkInstalled => "lib/apk/db/installed",
            KnownPath::OsRelease => "etc/os-release",
            KnownPath::DistInfoMetadata => "usr/lib/python3/site-packages/x-1.0.dist-info/METADATA",
            KnownPath::EggInfo => "usr/lib/python3/site-packages/y-2.0.egg-info",
            KnownPath::NodePackage => "usr/lib/node_modules/z/package.json",
            KnownPath::Copyright => "usr/share/doc/z/copyright",
            KnownPath::Bin => "usr/bin",
        }
    }
}

impl PathSpec {
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.absolute {
            out.push(b'/');
        }
        for (i, p) in self.parts.iter().take(16).enumerate() {
            if i > 0 {
                out.push(b'/');
            }
            part_bytes(p, &mut out, 0);
        }
        out
    }
}

fn part_bytes(p: &Part, out: &mut Vec<u8>, depth: u8) {
    match p {
        Part::Dot => out.push(b'.'),
        Part::DotDot => out.extend_from_slice(b".."),
        Part::Empty => {}
        Part::Whiteout(inner) => {
            out.extend_from_slice(b".wh.");
            if depth < 2 {
                part_bytes(inner, out, depth + 1);
            }
        }
        Part::Opaque => out.extend_from_slice(b".wh..wh..opq"),
        Part::Known(k) => out.extend_from_slice(k.text().as_bytes()),
        Part::Name(s) => out.extend_from_slice(s.as_bytes()),
        Part::Raw(b) => out.extend_from_slice(b),
    }
}

#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum EntryType {
    File,
    Dir,
    Symlink,
    Hardlink,
    Fifo,
    Other(u8),
}

impl EntryType {
    pub fn byte(self) -> u8 {
        match self {
            EntryType::File => b'0',
            EntryType::Dir => b'5',
            EntryType::Symlink => b'2',
            EntryType::Hardlink => b'1',
            EntryType::Fifo => b'6',
            EntryType::Other(b) => b,
        }
    }
}

/// A file's bytes, and whether its header claims more than follows (the
/// archive cut short inside it).
#[derive(Debug, Clone, Arbitrary)]
pub struct Content {
    pub bytes: Vec<u8>,
    pub claim_extra: Option<u16>,
}

fn header(name: &[u8], kind: u8, mode: u32, size: u64, link: &[u8]) -> [u8; 512] {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    {
        let gnu = h.as_gnu_mut().expect("a GNU header");
        let n = name.len().min(gnu.name.len());
        gnu.name[..n].copy_from_slice(&name[..n]);
        let l = link.len().min(gnu.linkname.len());
        gnu.linkname[..l].copy_from_slice(&link[..l]);
    }
    h.set_cksum();
    *h.as_bytes()
}

fn pad(out: &mut Vec<u8>) {
    let rem = out.len() % 512;
    if rem != 0 {
        out.resize(out.len() + 512 - rem, 0);
    }
}

/// GNU long-name and long-link records, so names of any length and any
/// bytes reach the reader unchanged.
fn long(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    let mut data = value.to_vec();
    data.push(0);
    out.extend_from_slice(&header(
        b"././@LongLink",
        kind,
        0o644,
        data.len() as u64,
        b"",
    ));
    out.extend_from_slice(&data);
    pad(out);
}

/// Appends one entry; returns whether the archive was cut short inside it
/// (its header claims more bytes than follow), which ends the stream.
pub fn append_entry(out: &mut Vec<u8>, e: &TarEntry) -> bool {
    let path = e.path.bytes();
    let link = e.link.as_ref().map(PathSpec::bytes).unwrap_or_default();
    if path.len() > 100 {
        long(out, b'L', &path);
    }
    if link.len() > 100 {
        long(out, b'K', &link);
    }
    let kind = e.kind.byte();
    let content: &[u8] = if matches!(e.kind, EntryType::File) {
        &e.content.bytes
    } else {
        &[]
    };
    let claimed = content.len() as u64 + e.content.claim_extra.map_or(0, u64::from);
    out.extend_from_slice(&header(&path, kind, u32::from(e.mode), claimed, &link));
    out.extend_from_slice(content);
    if claimed > content.len() as u64 {
        return true;
    }
    pad(out);
    false
}

/// A whole tar stream, ended by the two zero blocks unless cut short.
pub fn tar_stream(entries: &[TarEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        if append_entry(&mut out, e) {
            return out;
        }
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// Splits `data` at the given cut points (sizes of successive chunks,
/// each at least 1), the rest in one last chunk: how a pipe or Docker's
/// attach stream hands bytes over.
pub fn chunks<'a>(data: &'a [u8], sizes: &[u16]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    for &s in sizes {
        if rest.is_empty() {
            break;
        }
        let n = usize::from(s).clamp(1, rest.len());
        let (a, b) = rest.split_at(n);
        out.push(a);
        rest = b;
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// A path as the file system view keys it: relative, without empty, `.`
/// or `..` components. Anything else could name a place outside the root.
pub fn assert_contained(path: &str, what: &str) {
    assert!(!path.starts_with('/'), "{what}: absolute path {path:?}");
    for part in path.split('/') {
        assert!(
            !part.is_empty() && part != "." && part != "..",
            "{what}: path {path:?} has the component {part:?}"
        );
    }
}

/// Warnings one file may add: a hostile file must not make the list (kept
/// in memory and written into the SBOM) grow with its size.
pub const MAX_WARNINGS_PER_FILE: usize = 64;
