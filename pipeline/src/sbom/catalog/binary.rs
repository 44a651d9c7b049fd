//! Build information embedded in executables, read in one streaming pass
//! with bounded memory:
//!
//! - Go (1.18 and later): the `.go.buildinfo` blob, found by its magic
//!   anywhere in the file, lists the module, its dependencies and the Go
//!   version (reported as the `stdlib` package, as Syft does);
//! - Rust built with `cargo auditable`: the `.dep-v0` section, zlib-compressed
//!   JSON. It is not loaded at run time, so it sits after the last loaded
//!   segment; only that tail of the file is kept (up to [`TAIL_CAP`]), and
//!   the section headers, also there, locate it.
//!
//! ELF only; Mach-O and PE files are not inspected.

use std::io::{self, Read};

use serde::Deserialize;

use super::{Captured, Ecosystem, Found, Record};

/// Smaller files cannot be interesting executables.
pub const MIN_SIZE: u64 = 64;
/// The most bytes after the last loaded segment kept to find `.dep-v0`.
/// Unstripped binaries with more debug information than this are not read
/// for cargo-auditable data.
pub const TAIL_CAP: usize = 32 << 20;
/// The most bytes of Go build information kept (module lists are a few KiB).
const GO_INFO_CAP: usize = 1 << 20;
/// The most bytes the `.dep-v0` JSON may inflate to.
const DEP_JSON_CAP: u64 = 16 << 20;
const GO_MAGIC: &[u8] = b"\xff Go buildinf:";
const CHUNK: usize = 64 << 10;

#[derive(Debug, Clone, Copy)]
struct Elf {
    is64: bool,
    le: bool,
    phoff: u64,
    phentsize: u64,
    phnum: u64,
    shoff: u64,
    shentsize: u64,
    shnum: u64,
    shstrndx: u64,
}

impl Elf {
    fn parse(h: &[u8]) -> Option<Elf> {
        if h.len() < 52 || &h[..4] != b"\x7fELF" {
            return None;
        }
        let is64 = match h[4] {
            1 => false,
            2 => true,
            _ => return None,
        };
        let le = match h[5] {
            1 => true,
            2 => false,
            _ => return None,
        };
        let r = Reader { le };
        Some(if is64 {
            if h.len() < 64 {
                return None;
            }
            Elf {
                is64,
                le,
                phoff: r.u64(h, 0x20)?,
                shoff: r.u64(h, 0x28)?,
                phentsize: r.u16(h, 0x36)?,
                phnum: r.u16(h, 0x38)?,
                shentsize: r.u16(h, 0x3a)?,
                shnum: r.u16(h, 0x3c)?,
                shstrndx: r.u16(h, 0x3e)?,
            }
        } else {
            Elf {
                is64,
                le,
                phoff: r.u32(h, 0x1c)?,
                shoff: r.u32(h, 0x20)?,
                phentsize: r.u16(h, 0x2a)?,
                phnum: r.u16(h, 0x2c)?,
                shentsize: r.u16(h, 0x2e)?,
                shnum: r.u16(h, 0x30)?,
                shstrndx: r.u16(h, 0x32)?,
            }
        })
    }

    fn reader(&self) -> Reader {
        Reader { le: self.le }
    }

    /// Where loaded segments end: what follows holds non-loaded sections.
    fn loaded_end(&self, head: &[u8]) -> Option<u64> {
        let r = self.reader();
        let mut end = 0;
        for i in 0..self.phnum {
            // Offsets come from the file: checked, an overflow is a bad file
            // (found by the `elf_scan` fuzz target's smoke run).
            let at =
                usize::try_from(self.phoff.checked_add(i.checked_mul(self.phentsize)?)?).ok()?;
            let ph = head.get(at..at.checked_add(usize::try_from(self.phentsize).ok()?)?)?;
            if r.u32(ph, 0)? != 1 {
                continue; // not PT_LOAD
            }
            let (offset, filesz) = if self.is64 {
                (r.u64(ph, 8)?, r.u64(ph, 32)?)
            } else {
                (r.u32(ph, 4)?, r.u32(ph, 16)?)
            };
            end = end.max(offset.saturating_add(filesz));
        }
        Some(end)
    }

    /// The named section's bytes, if it and the section table lie in `tail`
    /// (which starts at file offset `tail_start`).
    fn section<'a>(&self, tail: &'a [u8], tail_start: u64, name: &[u8]) -> Option<&'a [u8]> {
        let r = self.reader();
        let in_tail = |offset: u64, len: u64| -> Option<&'a [u8]> {
            let start = usize::try_from(offset.checked_sub(tail_start)?).ok()?;
            let end = start.checked_add(usize::try_from(len).ok()?)?;
            tail.get(start..end)
        };
        let table = in_tail(self.shoff, self.shnum.checked_mul(self.shentsize)?)?;
        let header = |i: u64| -> Option<(u64, u64, u64)> {
            let at = usize::try_from(i * self.shentsize).ok()?;
            let sh = table.get(at..at + usize::try_from(self.shentsize).ok()?)?;
            let name = r.u32(sh, 0)?;
            Some(if self.is64 {
                (name, r.u64(sh, 24)?, r.u64(sh, 32)?)
            } else {
                (name, r.u32(sh, 16)?, r.u32(sh, 20)?)
            })
        };
        let (_, str_off, str_len) = header(self.shstrndx)?;
        let names = in_tail(str_off, str_len)?;
        for i in 0..self.shnum {
            let (n, off, len) = header(i)?;
            let rest = names.get(usize::try_from(n).ok()?..)?;
            let end = rest.iter().position(|&b| b == 0)?;
            if &rest[..end] == name {
                return in_tail(off, len);
            }
        }
        None
    }
}

#[derive(Debug, Clone, Copy)]
struct Reader {
    le: bool,
}

impl Reader {
    fn u16(self, b: &[u8], at: usize) -> Option<u64> {
        let s: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
        Some(u64::from(if self.le {
            u16::from_le_bytes(s)
        } else {
            u16::from_be_bytes(s)
        }))
    }
    fn u32(self, b: &[u8], at: usize) -> Option<u64> {
        let s: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(u64::from(if self.le {
            u32::from_le_bytes(s)
        } else {
            u32::from_be_bytes(s)
        }))
    }
    fn u64(self, b: &[u8], at: usize) -> Option<u64> {
        let s: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
        Some(if self.le {
            u64::from_le_bytes(s)
        } else {
            u64::from_be_bytes(s)
        })
    }
}

/// Scans an executable. `Ok(None)` when it is not ELF or holds nothing.
pub fn scan(content: &mut dyn Read, size: u64) -> io::Result<Option<Captured>> {
    let mut head = vec![0u8; 64];
    let n = read_full(content, &mut head)?;
    head.truncate(n);
    let Some(elf) = Elf::parse(&head) else {
        return Ok(None);
    };
    // Program headers normally follow the ELF header directly.
    let ph_end = elf.phoff.saturating_add(elf.phnum * elf.phentsize);
    if ph_end <= 64 << 10 && ph_end > head.len() as u64 {
        let mut more = vec![0u8; usize::try_from(ph_end).unwrap_or(0) - head.len()];
        let n = read_full(content, &mut more)?;
        more.truncate(n);
        head.extend_from_slice(&more);
    }
    let tail_start = elf.loaded_end(&head).unwrap_or(0);
    let mut scan = Scan {
        pos: 0,
        carry: Vec::new(),
        go: None,
        tail: Vec::new(),
        tail_start,
        tail_overflow: tail_start < size && size - tail_start > TAIL_CAP as u64,
    };
    scan.feed(&head);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = content.read(&mut buf)?;
        if n == 0 {
            break;
        }
        scan.feed(&buf[..n]);
    }
    let mut warnings = Vec::new();
    let mut records = Vec::new();
    if let Some(go) = &scan.go {
        records.extend(go_buildinfo(go, &mut warnings));
    }
    if !scan.tail_overflow
        && let Some(section) = elf.section(&scan.tail, scan.tail_start, b".dep-v0")
    {
        records.extend(cargo_auditable(section, &mut warnings));
    }
    if records.is_empty() && warnings.is_empty() {
        return Ok(None);
    }
    Ok(Some(Captured {
        found: Found::Packages(records),
        warnings,
    }))
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

struct Scan {
    /// File offset of the next byte fed.
    pos: u64,
    /// The last bytes of the previous chunk, so a magic split across chunks
    /// is found.
    carry: Vec<u8>,
    go: Option<Vec<u8>>,
    tail: Vec<u8>,
    tail_start: u64,
    tail_overflow: bool,
}

impl Scan {
    fn feed(&mut self, chunk: &[u8]) {
        let start = self.pos;
        self.pos += chunk.len() as u64;
        if !self.tail_overflow && self.pos > self.tail_start {
            let skip = usize::try_from(self.tail_start.saturating_sub(start)).unwrap_or(usize::MAX);
            self.tail
                .extend_from_slice(chunk.get(skip..).unwrap_or_default());
        }
        match &mut self.go {
            Some(go) if go.len() < GO_INFO_CAP => {
                let room = GO_INFO_CAP - go.len();
                go.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Some(_) => {}
            None => {
                // A magic split between chunks is found in the joint.
                let keep = GO_MAGIC.len() - 1;
                let head_len = chunk.len().min(keep);
                let mut joint = std::mem::take(&mut self.carry);
                joint.extend_from_slice(&chunk[..head_len]);
                if let Some(at) = memchr::memmem::find(&joint, GO_MAGIC) {
                    let mut go = joint[at..].to_vec();
                    let room = GO_INFO_CAP.saturating_sub(go.len());
                    let rest = &chunk[head_len..];
                    go.extend_from_slice(&rest[..rest.len().min(room)]);
                    self.go = Some(go);
                } else if let Some(at) = memchr::memmem::find(chunk, GO_MAGIC) {
                    let end = chunk.len().min(at + GO_INFO_CAP);
                    self.go = Some(chunk[at..end].to_vec());
                } else if chunk.len() >= keep {
                    self.carry = chunk[chunk.len() - keep..].to_vec();
                } else {
                    self.carry = joint[joint.len().saturating_sub(keep)..].to_vec();
                }
            }
        }
    }
}

/// Unsigned LEB128, as Go's `binary.Uvarint`.
fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut x = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        x |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some((x, i + 1));
        }
    }
    None
}

fn varint_string(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, n) = uvarint(b)?;
    let len = usize::try_from(len).ok()?;
    let s = b.get(n..n.checked_add(len)?)?;
    Some((s, &b[n + len..]))
}

/// Modules of a Go binary's build information (the blob at its magic).
pub fn go_buildinfo(blob: &[u8], warnings: &mut Vec<String>) -> Vec<Record> {
    let Some(&flags) = blob.get(15) else {
        warnings.push("Go build information cut short".into());
        return Vec::new();
    };
    if flags & 2 == 0 {
        warnings.push(
            "built with Go before 1.18 (pointer-based build information); modules not read".into(),
        );
        return Vec::new();
    }
    let parsed = blob.get(32..).and_then(|rest| {
        let (version, rest) = varint_string(rest)?;
        let (modinfo, _) = varint_string(rest)?;
        Some((version, modinfo))
    });
    let Some((version, modinfo)) = parsed else {
        warnings.push("Go build information is malformed; modules not read".into());
        return Vec::new();
    };
    let version = String::from_utf8_lossy(version);
    // The module text sits between two 16-byte sentinels.
    let modinfo = if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        &modinfo[16..modinfo.len() - 16]
    } else {
        &[][..]
    };
    let modinfo = String::from_utf8_lossy(modinfo);
    let mut out: Vec<Record> = Vec::new();
    if let Some(v) = version.strip_prefix("go")
        && !v.is_empty()
        && !v.contains(char::is_whitespace)
    {
        out.push(Record::new(Ecosystem::Go, "stdlib", v));
    }
    for line in modinfo.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["mod" | "dep", path, version, ..] if !version.is_empty() && *version != "(devel)" => {
                out.push(Record::new(Ecosystem::Go, path, version));
            }
            // A replacement applies to the module listed just before.
            ["=>", path, version, ..] => {
                if let Some(last) = out.last_mut().filter(|r| r.name != "stdlib") {
                    last.name = (*path).to_owned();
                    last.version = (*version).to_owned();
                    if version.is_empty() {
                        out.pop(); // replaced by a local directory: no version
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[derive(Debug, Deserialize)]
struct DepInfo {
    packages: Vec<DepPackage>,
}

#[derive(Debug, Deserialize)]
struct DepPackage {
    name: String,
    version: String,
}

/// Crates listed by cargo-auditable (the section's compressed JSON).
pub fn cargo_auditable(section: &[u8], warnings: &mut Vec<String>) -> Vec<Record> {
    let mut json = Vec::new();
    let decoder = flate2::read::ZlibDecoder::new(section);
    if let Err(e) = decoder.take(DEP_JSON_CAP + 1).read_to_end(&mut json) {
        warnings.push(format!(
            ".dep-v0 section is not zlib data ({e}); crates not read"
        ));
        return Vec::new();
    }
    if json.len() as u64 > DEP_JSON_CAP {
        warnings.push(format!(
            ".dep-v0 inflates to more than {DEP_JSON_CAP} bytes; crates not read"
        ));
        return Vec::new();
    }
    match serde_json::from_slice::<DepInfo>(&json) {
        Ok(info) => info
            .packages
            .into_iter()
            .filter(|p| !p.name.is_empty() && !p.version.is_empty())
            .map(|p| Record::new(Ecosystem::Cargo, &p.name, &p.version))
            .collect(),
        Err(e) => {
            warnings.push(format!(".dep-v0 JSON is malformed ({e}); crates not read"));
            Vec::new()
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// Go build information as Go 1.18+ writes it.
    pub(crate) fn go_blob(version: &str, modinfo: &str) -> Vec<u8> {
        let mut b = GO_MAGIC.to_vec();
        b.push(8); // pointer size
        b.push(2); // flags: inline strings
        b.resize(32, 0);
        let framed = format!("{}{modinfo}{}", "0".repeat(16), "1".repeat(16));
        for s in [version, framed.as_str()] {
            let mut len = s.len();
            loop {
                let byte = (len & 0x7f) as u8;
                len >>= 7;
                if len == 0 {
                    b.push(byte);
                    break;
                }
                b.push(byte | 0x80);
            }
            b.extend_from_slice(s.as_bytes());
        }
        b
    }

    /// A minimal little-endian ELF64 executable: one PT_LOAD segment holding
    /// `loaded`, then a `.dep-v0` section with `dep` and the section table.
    pub(crate) fn elf_with(loaded: &[u8], dep: &[u8]) -> Vec<u8> {
        let shstr = b"\0.shstrtab\0.dep-v0\0";
        let load_off = 64 + 56;
        let dep_off = load_off + loaded.len();
        let str_off = dep_off + dep.len();
        let sh_off = str_off + shstr.len();
        let mut f = Vec::new();
        f.extend_from_slice(b"\x7fELF\x02\x01\x01");
        f.resize(16, 0);
        f.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        f.extend_from_slice(&62u16.to_le_bytes()); // x86-64
        f.extend_from_slice(&1u32.to_le_bytes());
        f.extend_from_slice(&0u64.to_le_bytes()); // entry
        f.extend_from_slice(&64u64.to_le_bytes()); // phoff
        f.extend_from_slice(&(sh_off as u64).to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&64u16.to_le_bytes());
        f.extend_from_slice(&56u16.to_le_bytes());
        f.extend_from_slice(&1u16.to_le_bytes());
        f.extend_from_slice(&64u16.to_le_bytes());
        f.extend_from_slice(&3u16.to_le_bytes());
        f.extend_from_slice(&1u16.to_le_bytes()); // shstrndx
        assert_eq!(f.len(), 64);
        // PT_LOAD covering the header and `loaded`.
        f.extend_from_slice(&1u32.to_le_bytes());
        f.extend_from_slice(&5u32.to_le_bytes());
        f.extend_from_slice(&0u64.to_le_bytes());
        f.extend_from_slice(&0x400000u64.to_le_bytes());
        f.extend_from_slice(&0x400000u64.to_le_bytes());
        f.extend_from_slice(&(dep_off as u64).to_le_bytes());
        f.extend_from_slice(&(dep_off as u64).to_le_bytes());
        f.extend_from_slice(&0x1000u64.to_le_bytes());
        f.extend_from_slice(loaded);
        f.extend_from_slice(dep);
        f.extend_from_slice(shstr);
        let section = |name: u32, off: usize, size: usize| {
            let mut s = Vec::new();
            s.extend_from_slice(&name.to_le_bytes());
            s.extend_from_slice(&1u32.to_le_bytes());
            s.resize(24, 0);
            s.extend_from_slice(&(off as u64).to_le_bytes());
            s.extend_from_slice(&(size as u64).to_le_bytes());
            s.resize(64, 0);
            s
        };
        f.extend_from_slice(&[0u8; 64]);
        f.extend_from_slice(&section(1, str_off, shstr.len()));
        f.extend_from_slice(&section(11, dep_off, dep.len()));
        f
    }

    pub(crate) fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// Feeds a file in small pieces, as a tar stream may.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.0.len()).min(7);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn packages(c: Option<Captured>) -> Vec<(String, String)> {
        match c.map(|c| c.found) {
            Some(Found::Packages(p)) => p.into_iter().map(|r| (r.name, r.version)).collect(),
            None => Vec::new(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cargo_auditable_crates_from_the_tail() {
        let json = br#"{"packages":[{"name":"argh","version":"0.1.12","source":"crates.io"},{"name":"app","version":"1.0.0","source":"local","root":true}]}"#;
        let elf = elf_with(&[0x90; 5000], &zlib(json));
        let found = packages(scan(&mut Trickle(&elf), elf.len() as u64).unwrap());
        assert_eq!(
            found,
            [
                ("argh".to_owned(), "0.1.12".to_owned()),
                ("app".to_owned(), "1.0.0".to_owned())
            ]
        );
    }

    #[test]
    fn go_modules_across_chunk_boundaries() {
        let modinfo = "path\texample.com/app\nmod\texample.com/app\t(devel)\t\ndep\tgithub.com/pkg/errors\tv0.9.1\th1:x\ndep\tgolang.org/x/sys\tv0.1.0\th1:y\n=>\tgolang.org/x/sys\tv0.2.0\th1:z\nbuild\t-compiler=gc\n";
        let mut loaded = vec![0u8; CHUNK - 5];
        loaded.extend_from_slice(&go_blob("go1.21.5", modinfo));
        let elf = elf_with(&loaded, b"");
        let found = packages(scan(&mut &elf[..], elf.len() as u64).unwrap());
        assert_eq!(
            found,
            [
                ("stdlib".to_owned(), "1.21.5".to_owned()),
                ("github.com/pkg/errors".to_owned(), "v0.9.1".to_owned()),
                ("golang.org/x/sys".to_owned(), "v0.2.0".to_owned()),
            ]
        );
    }

    #[test]
    fn malformed_sections_are_warnings_and_non_elf_is_nothing() {
        let elf = elf_with(&[0; 100], b"not zlib");
        let c = scan(&mut &elf[..], elf.len() as u64).unwrap().unwrap();
        assert!(c.warnings[0].contains("zlib"));
        let elf = elf_with(&[0; 100], &zlib(b"{\"packages\": 5}"));
        let c = scan(&mut &elf[..], elf.len() as u64).unwrap().unwrap();
        assert!(c.warnings[0].contains("malformed"));
        let script = b"#!/bin/sh\necho hello, this is a long enough script to be scanned\n";
        assert!(
            scan(&mut &script[..], script.len() as u64)
                .unwrap()
                .is_none()
        );
        // A header that claims absurd tables does not panic.
        let mut bad = elf_with(&[0; 10], b"");
        bad[0x38] = 0xff;
        bad[0x3c] = 0xff;
        let _ = scan(&mut &bad[..], bad.len() as u64).unwrap();
        // A program header table at the end of the address space: its
        // offset overflowed (found by the `elf_scan` fuzz smoke).
        let mut far = elf_with(&[0; 10], b"");
        far[0x20..0x28].fill(0xff);
        far[0x38] = 1;
        let _ = scan(&mut &far[..], far.len() as u64).unwrap();
        let mut w = Vec::new();
        let mut old = go_blob("go1.17", "");
        old[15] = 0;
        assert!(go_buildinfo(&old, &mut w).is_empty());
        assert!(w[0].contains("before 1.18"));
    }
}
