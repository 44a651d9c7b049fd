//! What a learner submits: files, stdin and arguments, checked against the
//! policy, and packed into the tar archive streamed into the sandbox.
//!
//! The host never writes a submission to its own filesystem: files travel as
//! an in-memory archive that `sandbox-init` extracts inside the container.

use crate::policy::InputPolicy;

/// One submitted file. The first file of a submission is its entry point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmissionFile {
    pub name: String,
    pub content: Vec<u8>,
}

/// Longest file name accepted, in bytes (`NAME_MAX` of tmpfs). sandbox-init
/// places files under the same limit (`NAME_MAX_BYTES` in
/// `sandbox-images/base/sandbox-init.c`; a test keeps the two equal).
pub const MAX_NAME_BYTES: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("file name is empty; give every file a name such as main.py")]
    Empty,
    #[error(
        "file name {0:?} contains '/'; names are plain file names, directories are not supported"
    )]
    Slash(String),
    #[error("file name {0:?} contains '..'; use a plain file name")]
    DotDot(String),
    #[error("file name contains a NUL byte; use a plain file name")]
    Nul,
    #[error("file name {0:?} is not a file name")]
    Dot(String),
    #[error(
        "file name {0:?} starts with '-', which commands would read as an option; rename the file"
    )]
    Dash(String),
    #[error(
        "file name {0:?} starts with '@', which compilers and launchers (gcc, javac, java, rustc) read as a file of options; rename the file"
    )]
    At(String),
    #[error("file name {0:?} contains a control character; use printable characters")]
    Control(String),
    #[error("file name is {len} bytes long; the limit is {MAX_NAME_BYTES}")]
    TooLong { len: usize },
}

/// Checks one file name. The host never resolves it as a path; the check keeps
/// names meaningful inside the sandbox and commands unambiguous.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.contains('\0') {
        return Err(NameError::Nul);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong { len: name.len() });
    }
    if name.contains('/') {
        return Err(NameError::Slash(name.to_owned()));
    }
    if name.contains("..") {
        return Err(NameError::DotDot(name.to_owned()));
    }
    if name == "." {
        return Err(NameError::Dot(name.to_owned()));
    }
    if name.starts_with('-') {
        return Err(NameError::Dash(name.to_owned()));
    }
    // `@file` is a response file to gcc, g++, javac, java and rustc. The
    // commands pass names as `./name` where the tool allows it; java's main
    // class cannot be written so, which is why this stays refused here.
    if name.starts_with('@') {
        return Err(NameError::At(name.to_owned()));
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::Control(name.to_owned()));
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmissionError {
    #[error("a submission needs at least one file (the first one is the entry point)")]
    NoFiles,
    #[error("{count} files submitted; the limit is {max}")]
    TooManyFiles { count: usize, max: usize },
    #[error("file #{index}: {source}")]
    BadName {
        index: usize,
        #[source]
        source: NameError,
    },
    #[error("file name {0:?} appears twice; names must be unique")]
    Duplicate(String),
    #[error("file {name:?} is {size} bytes; the limit per file is {max}")]
    FileTooLarge { name: String, size: u64, max: u64 },
    #[error("files total {size} bytes; the limit is {max}")]
    TotalTooLarge { size: u64, max: u64 },
    #[error("stdin is {size} bytes; the limit is {max}")]
    StdinTooLarge { size: u64, max: u64 },
    #[error("{count} arguments given; the limit is {max}")]
    TooManyArgs { count: usize, max: usize },
    #[error("argument #{index} is {len} bytes; the limit is {max}")]
    ArgTooLong {
        index: usize,
        len: usize,
        max: usize,
    },
    #[error("argument #{index} contains a NUL byte")]
    ArgNul { index: usize },
}

/// Checks a whole submission against the input policy.
pub fn validate(
    files: &[SubmissionFile],
    stdin: &[u8],
    args: &[String],
    policy: &InputPolicy,
) -> Result<(), SubmissionError> {
    if files.is_empty() {
        return Err(SubmissionError::NoFiles);
    }
    if files.len() > policy.max_files {
        return Err(SubmissionError::TooManyFiles {
            count: files.len(),
            max: policy.max_files,
        });
    }
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    for (i, f) in files.iter().enumerate() {
        validate_name(&f.name).map_err(|source| SubmissionError::BadName {
            index: i + 1,
            source,
        })?;
        if !seen.insert(f.name.as_str()) {
            return Err(SubmissionError::Duplicate(f.name.clone()));
        }
        let size = f.content.len() as u64;
        if size > policy.max_file_bytes {
            return Err(SubmissionError::FileTooLarge {
                name: f.name.clone(),
                size,
                max: policy.max_file_bytes,
            });
        }
        total += size;
    }
    if total > policy.max_total_file_bytes {
        return Err(SubmissionError::TotalTooLarge {
            size: total,
            max: policy.max_total_file_bytes,
        });
    }
    if stdin.len() as u64 > policy.max_stdin_bytes {
        return Err(SubmissionError::StdinTooLarge {
            size: stdin.len() as u64,
            max: policy.max_stdin_bytes,
        });
    }
    if args.len() > policy.max_args {
        return Err(SubmissionError::TooManyArgs {
            count: args.len(),
            max: policy.max_args,
        });
    }
    for (i, a) in args.iter().enumerate() {
        if a.len() > policy.max_arg_bytes {
            return Err(SubmissionError::ArgTooLong {
                index: i + 1,
                len: a.len(),
                max: policy.max_arg_bytes,
            });
        }
        if a.contains('\0') {
            return Err(SubmissionError::ArgNul { index: i + 1 });
        }
    }
    Ok(())
}

/// Packs validated files into a tar archive (regular files, mode 0644, owned
/// by the sandbox user, fixed mtime so archives are reproducible).
pub fn archive(files: &[SubmissionFile], uid: u32, gid: u32) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for f in files {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(f.content.len() as u64);
        header.set_mode(0o644);
        header.set_uid(uid.into());
        header.set_gid(gid.into());
        header.set_mtime(0);
        // Names were validated: plain, short, no separators. Writing into a
        // Vec cannot fail.
        builder
            .append_data(&mut header, &f.name, f.content.as_slice())
            .expect("appending a validated file to an in-memory archive");
    }
    builder
        .into_inner()
        .expect("finishing an in-memory archive")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::SandboxPolicy;

    fn file(name: &str, content: &str) -> SubmissionFile {
        SubmissionFile {
            name: name.into(),
            content: content.as_bytes().to_vec(),
        }
    }

    #[test]
    fn good_names_pass() {
        for n in [
            "main.py",
            "Main.java",
            "a",
            ".hidden",
            "with space.c",
            "ünïcode.rb",
            "a.b.c",
        ] {
            validate_name(n).unwrap_or_else(|e| panic!("{n}: {e}"));
        }
    }

    #[test]
    fn bad_names_are_rejected_with_a_reason() {
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert!(matches!(validate_name("a/b"), Err(NameError::Slash(_))));
        assert!(matches!(
            validate_name("/etc/passwd"),
            Err(NameError::Slash(_))
        ));
        assert!(matches!(validate_name(".."), Err(NameError::DotDot(_))));
        assert!(matches!(validate_name("..."), Err(NameError::DotDot(_))));
        assert!(matches!(validate_name("x..y"), Err(NameError::DotDot(_))));
        assert_eq!(validate_name("a\0b"), Err(NameError::Nul));
        assert!(matches!(validate_name("."), Err(NameError::Dot(_))));
        assert!(matches!(validate_name("-c"), Err(NameError::Dash(_))));
        assert!(matches!(validate_name("@opts.c"), Err(NameError::At(_))));
        assert!(
            validate_name("@x")
                .unwrap_err()
                .to_string()
                .contains("file of options")
        );
        validate_name("a@b.c").unwrap();
        assert!(matches!(validate_name("a\nb"), Err(NameError::Control(_))));
        assert_eq!(
            validate_name(&"x".repeat(256)),
            Err(NameError::TooLong { len: 256 })
        );
        assert!(
            validate_name("a/b")
                .unwrap_err()
                .to_string()
                .contains("'/'")
        );
    }

    /// One limit on both sides: what the validator accepts, sandbox-init
    /// places (the real-engine test runs a name of exactly this length).
    #[test]
    fn the_validator_and_sandbox_init_share_the_name_limit() {
        let init = include_str!("../../sandbox-images/base/sandbox-init.c");
        let define = format!("#define NAME_MAX_BYTES {MAX_NAME_BYTES}\n");
        assert!(
            init.contains(&define),
            "sandbox-init.c must have {define:?}"
        );
        validate_name(&"x".repeat(MAX_NAME_BYTES)).unwrap();
        assert!(validate_name(&"x".repeat(MAX_NAME_BYTES + 1)).is_err());
    }

    #[test]
    fn submission_limits_are_enforced() {
        let p = SandboxPolicy::embedded().unwrap().input;
        assert_eq!(validate(&[], b"", &[], &p), Err(SubmissionError::NoFiles));
        let dup = [file("a.py", ""), file("a.py", "")];
        assert_eq!(
            validate(&dup, b"", &[], &p),
            Err(SubmissionError::Duplicate("a.py".into()))
        );
        let big = SubmissionFile {
            name: "a".into(),
            content: vec![0; p.max_file_bytes as usize + 1],
        };
        assert!(matches!(
            validate(&[big], b"", &[], &p),
            Err(SubmissionError::FileTooLarge { .. })
        ));
        let stdin = vec![0; p.max_stdin_bytes as usize + 1];
        assert!(matches!(
            validate(&[file("a", "")], &stdin, &[], &p),
            Err(SubmissionError::StdinTooLarge { .. })
        ));
        let args = vec!["x".to_string(); p.max_args + 1];
        assert!(matches!(
            validate(&[file("a", "")], b"", &args, &p),
            Err(SubmissionError::TooManyArgs { .. })
        ));
        let err = validate(&[file("ok", ""), file("../x", "")], b"", &[], &p).unwrap_err();
        assert!(err.to_string().starts_with("file #2:"), "{err}");
        validate(&[file("main.py", "print(1)")], b"in", &["a".into()], &p).unwrap();
    }

    #[test]
    fn archive_holds_files_under_their_names() {
        let bytes = archive(
            &[file("main.py", "print('OK')"), file("b.txt", "b")],
            10001,
            10001,
        );
        let mut ar = tar::Archive::new(bytes.as_slice());
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["main.py", "b.txt"]);
        assert_eq!(
            bytes,
            archive(
                &[file("main.py", "print('OK')"), file("b.txt", "b")],
                10001,
                10001
            )
        );
    }
}
