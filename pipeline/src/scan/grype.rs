//! Running Grype on an SBOM: `grype sbom:FILE -o json`, with the database
//! settings passed as Grype's environment variables, stdout captured up to
//! a bound and the end of stderr kept for the error message.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::ScanError;
use super::read::{MAX_REPORT_BYTES, read_limited};

/// Overrides the Grype executable (a name on PATH or a path).
pub const GRYPE_ENV: &str = "PIPELINE_GRYPE";
/// How much of Grype's stderr an error message quotes.
pub const STDERR_TAIL_BYTES: usize = 4 << 10;

pub const INSTALL_HINT: &str = "Install Grype from a release (https://github.com/anchore/grype/releases: \
check the archive against the release's checksums file, then put `grype` on PATH) \
or with a package manager (`brew install grype`), \
or point at it with --grype PATH or PIPELINE_GRYPE=PATH; \
or scan where Grype is installed (`grype sbom:FILE -o json > report.json`) and evaluate that report with --grype-report report.json.";

/// How to run Grype.
#[derive(Debug, Clone)]
pub struct GrypeOptions {
    /// The executable: a name looked up on PATH, or a path.
    pub program: PathBuf,
    /// `GRYPE_DB_CACHE_DIR`: where the vulnerability database lives.
    pub db_cache_dir: Option<PathBuf>,
    /// `GRYPE_DB_AUTO_UPDATE`: whether Grype may download a newer database.
    pub db_auto_update: Option<bool>,
    /// `GRYPE_DB_MAX_ALLOWED_BUILT_AGE`: the oldest database Grype accepts.
    pub db_max_age_hours: Option<u64>,
    /// `GRYPE_DB_VALIDATE_AGE=false`: accept a database of any age (offline
    /// runs with an imported database). Wins over `db_max_age_hours`.
    pub no_db_age_check: bool,
    /// Stop Grype after this long (a database download that hangs).
    pub timeout: Option<Duration>,
    /// The most report bytes read from Grype's stdout.
    pub max_report_bytes: u64,
}

impl Default for GrypeOptions {
    fn default() -> Self {
        GrypeOptions {
            program: default_program(),
            db_cache_dir: None,
            db_auto_update: None,
            db_max_age_hours: None,
            no_db_age_check: false,
            timeout: None,
            max_report_bytes: MAX_REPORT_BYTES,
        }
    }
}

/// `PIPELINE_GRYPE` when set, else `grype` on PATH.
pub fn default_program() -> PathBuf {
    std::env::var_os(GRYPE_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("grype"), PathBuf::from)
}

impl GrypeOptions {
    /// Grype's arguments for an SBOM file.
    pub fn args(sbom: &Path) -> Vec<OsString> {
        let mut source = OsString::from("sbom:");
        source.push(sbom);
        vec![source, "-o".into(), "json".into()]
    }

    /// The environment variables set for Grype; others are inherited.
    pub fn env(&self) -> Vec<(&'static str, OsString)> {
        // Grype otherwise asks the network whether it is the latest release,
        // which only adds a failure mode to offline and CI runs.
        let mut env = vec![("GRYPE_CHECK_FOR_APP_UPDATE", OsString::from("false"))];
        if let Some(dir) = &self.db_cache_dir {
            env.push(("GRYPE_DB_CACHE_DIR", dir.into()));
        }
        if let Some(update) = self.db_auto_update {
            env.push(("GRYPE_DB_AUTO_UPDATE", update.to_string().into()));
        }
        if self.no_db_age_check {
            env.push(("GRYPE_DB_VALIDATE_AGE", "false".into()));
        } else if let Some(hours) = self.db_max_age_hours {
            env.push(("GRYPE_DB_VALIDATE_AGE", "true".into()));
            // A Go duration.
            env.push(("GRYPE_DB_MAX_ALLOWED_BUILT_AGE", format!("{hours}h").into()));
        }
        env
    }
}

/// Runs `grype sbom:FILE -o json` and returns its standard output, the
/// JSON report (parse it with [`super::parse_report`]).
pub fn run_grype(sbom: &Path, opts: &GrypeOptions) -> Result<Vec<u8>, ScanError> {
    check_sbom(sbom)?;
    let program = opts.program.display().to_string();
    let failed = |status: String, stderr_tail: String| ScanError::GrypeFailed {
        program: program.clone(),
        status,
        stderr_tail,
    };
    let mut child = start(sbom, opts)?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(failed(
            "its output could not be captured".to_owned(),
            String::new(),
        ));
    };
    // Both pipes are drained at once so that Grype never blocks on a full one.
    // Past the bound the stdout reader stops and drops its end: Grype then
    // fails on its next write instead of running on.
    let limit = opts.max_report_bytes;
    let out_reader = std::thread::spawn(move || read_limited(stdout, limit));
    let err_reader = std::thread::spawn(move || read_tail(stderr, STDERR_TAIL_BYTES));
    let status = match wait(&mut child, opts.timeout) {
        Ok(Some(status)) => status,
        // The readers are left to finish on their own: a process Grype
        // started may still hold the pipes open.
        Ok(None) => {
            let secs = opts.timeout.unwrap_or_default().as_secs();
            let why = format!("did not finish within {secs} s and was stopped");
            return Err(failed(why, String::new()));
        }
        Err(e) => {
            let why = format!("could not be waited for: {e}");
            return Err(failed(why, String::new()));
        }
    };
    let stderr_tail = err_reader.join().unwrap_or_default();
    let stdout = match out_reader.join() {
        Ok(Ok(Some(bytes))) => bytes,
        Ok(Ok(None)) => {
            let why =
                format!("wrote more than {limit} bytes of report, the most this command reads");
            return Err(failed(why, stderr_tail));
        }
        Ok(Err(e)) => {
            let why = format!("its output could not be read: {e}");
            return Err(failed(why, stderr_tail));
        }
        Err(_) => return Err(failed("its output could not be read".into(), stderr_tail)),
    };
    if !status.success() {
        return Err(failed(status.to_string(), stderr_tail));
    }
    Ok(stdout)
}

/// The SBOM must be a regular file: Grype's own message for a missing one
/// is about "sbom:..." sources; ours names the file.
fn check_sbom(sbom: &Path) -> Result<(), ScanError> {
    let sbom_err = |source| ScanError::Read {
        what: "SBOM",
        path: sbom.to_owned(),
        source,
    };
    if !std::fs::metadata(sbom).map_err(sbom_err)?.is_file() {
        return Err(sbom_err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    Ok(())
}

/// Starts Grype on the SBOM, its output piped.
fn start(sbom: &Path, opts: &GrypeOptions) -> Result<Child, ScanError> {
    let program = opts.program.display().to_string();
    let mut command = Command::new(&opts.program);
    command
        .args(GrypeOptions::args(sbom))
        .envs(opts.env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    spawn(&mut command).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ScanError::GrypeNotFound { program }
        } else {
            ScanError::GrypeStart { program, source }
        }
    })
}

/// Spawns, retrying briefly on ETXTBSY: an executable written a moment ago
/// (just installed, or a test's stand-in) can still be open for writing in
/// a process that another thread is forking.
fn spawn(command: &mut Command) -> std::io::Result<Child> {
    let mut attempts = 0;
    loop {
        match command.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 5 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Waits for the child; `None` when it ran past `timeout` and was killed.
fn wait(child: &mut Child, timeout: Option<Duration>) -> std::io::Result<Option<ExitStatus>> {
    let Some(timeout) = timeout else {
        return child.wait().map(Some);
    };
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last `limit` bytes of a stream, from a line start when cut, as text.
fn read_tail(mut reader: impl Read, limit: usize) -> String {
    let mut tail: VecDeque<u8> = VecDeque::with_capacity(limit);
    let mut cut = false;
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend(&buf[..n]);
                if tail.len() > limit {
                    tail.drain(..tail.len() - limit);
                    cut = true;
                }
            }
        }
    }
    let mut bytes: Vec<u8> = tail.into();
    if cut {
        if let Some(nl) = bytes.iter().position(|&b| b == b'\n') {
            bytes.drain(..=nl);
        }
        let mut text = String::from("[...]\n");
        text.push_str(&String::from_utf8_lossy(&bytes));
        return text;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(opts: &GrypeOptions) -> Vec<(String, String)> {
        opts.env()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_string_lossy().into_owned()))
            .collect()
    }

    #[test]
    fn database_settings_become_grype_variables() {
        let opts = GrypeOptions {
            program: "grype".into(),
            db_cache_dir: Some("/cache/grype".into()),
            db_auto_update: Some(false),
            db_max_age_hours: Some(48),
            ..GrypeOptions::default()
        };
        let env = env_of(&opts);
        for pair in [
            ("GRYPE_DB_CACHE_DIR", "/cache/grype"),
            ("GRYPE_DB_AUTO_UPDATE", "false"),
            ("GRYPE_DB_VALIDATE_AGE", "true"),
            ("GRYPE_DB_MAX_ALLOWED_BUILT_AGE", "48h"),
            ("GRYPE_CHECK_FOR_APP_UPDATE", "false"),
        ] {
            assert!(
                env.contains(&(pair.0.to_owned(), pair.1.to_owned())),
                "{pair:?} in {env:?}"
            );
        }
        let unchecked = env_of(&GrypeOptions {
            no_db_age_check: true,
            ..opts
        });
        assert!(unchecked.contains(&("GRYPE_DB_VALIDATE_AGE".to_owned(), "false".to_owned())));
        assert!(
            !unchecked
                .iter()
                .any(|(k, _)| k == "GRYPE_DB_MAX_ALLOWED_BUILT_AGE")
        );
        assert_eq!(
            GrypeOptions::args(Path::new("out/app.cdx.json")),
            ["sbom:out/app.cdx.json", "-o", "json"].map(OsString::from)
        );
    }

    /// A stand-in grype that runs `body` as a shell script.
    fn script(dir: &tempfile::TempDir, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.path().join("grype");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn output_past_the_bound_is_refused_not_buffered() {
        let dir = tempfile::tempdir().unwrap();
        let sbom = dir.path().join("sbom.json");
        std::fs::write(&sbom, "{}").unwrap();
        let opts = GrypeOptions {
            // Far more than a pipe holds, so the capture must keep draining.
            program: script(&dir, "head -c 4000000 /dev/zero; echo done >&2"),
            max_report_bytes: 1000,
            ..GrypeOptions::default()
        };
        let err = run_grype(&sbom, &opts).unwrap_err();
        assert!(!err.is_usage() && !err.is_grype_not_found());
        let msg = err.to_string();
        assert!(
            msg.contains("wrote more than 1000 bytes of report"),
            "{msg}"
        );

        let fits = GrypeOptions {
            program: script(&dir, "printf '{\"matches\": []}'"),
            max_report_bytes: 1000,
            ..GrypeOptions::default()
        };
        assert_eq!(run_grype(&sbom, &fits).unwrap(), br#"{"matches": []}"#);
    }

    #[test]
    fn the_stderr_tail_keeps_the_last_whole_lines() {
        let text: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        let tail = read_tail(text.as_bytes(), 64);
        assert!(tail.starts_with("[...]\nline "), "{tail}");
        assert!(tail.ends_with("line 999\n"), "{tail}");
        assert!(tail.len() <= 64 + 6);
        assert_eq!(read_tail(&b"short"[..], 64), "short");
    }
}
