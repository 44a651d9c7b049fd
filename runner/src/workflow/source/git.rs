//! Running the `git` CLI locked down: no hooks, no credential helpers or
//! other settings from the host's config, no prompts, only the transports
//! the policy allows, bounded in time and output.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};

use super::url::RepoUrl;
use crate::workflow::policy::Protocol;

/// Bytes of git's stderr kept for messages.
const MAX_STDERR: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub(super) struct Git {
    pub program: PathBuf,
    /// An empty directory: HOME and XDG_CONFIG_HOME, so no user config.
    pub home: PathBuf,
    pub protocols: Vec<Protocol>,
}

#[derive(Debug)]
pub(super) struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

#[derive(Debug)]
pub(super) enum RunError {
    Spawn(std::io::Error),
    TimedOut,
    TooMuchOutput,
    Io(std::io::Error),
}

impl Git {
    /// `git` with the settings every invocation gets; `url` is passed as
    /// `remote.origin.url` through the environment (`GIT_CONFIG_*`), so
    /// credentials in it never appear in argv (visible to every user of the
    /// host) nor in a config file.
    pub fn command(&self, git_dir: Option<&Path>, url: Option<&RepoUrl>) -> Command {
        let mut c = Command::new(&self.program);
        c.env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", &self.home)
            .env("LC_ALL", "C")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "/bin/false")
            .env("SSH_ASKPASS", "/bin/false")
            .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
            .env("GIT_LITERAL_PATHSPECS", "1")
            .env("GIT_NO_REPLACE_OBJECTS", "1")
            .env(
                "GIT_ALLOW_PROTOCOL",
                self.protocols
                    .iter()
                    .map(|p| p.git_name())
                    .collect::<Vec<_>>()
                    .join(":"),
            );
        if let Some(url) = url {
            c.env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", "remote.origin.url")
                .env("GIT_CONFIG_VALUE_0", &url.raw);
        }
        let mut settings = vec![
            "core.hooksPath=/dev/null".to_owned(),
            "core.fsmonitor=false".into(),
            // An empty value resets the list: no helper from anywhere.
            "credential.helper=".into(),
            "core.askPass=/bin/false".into(),
            "gc.auto=0".into(),
            "maintenance.auto=false".into(),
            "fetch.recurseSubmodules=false".into(),
            "submodule.recurse=false".into(),
            "fetch.fsckObjects=true".into(),
            "protocol.allow=never".into(),
            "advice.detachedHead=false".into(),
        ];
        settings.extend(
            self.protocols
                .iter()
                .map(|p| format!("protocol.{}.allow=always", p.git_name())),
        );
        for s in settings {
            c.arg("-c").arg(s);
        }
        if let Some(dir) = git_dir {
            c.arg("--git-dir").arg(dir);
        }
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }
}

/// Reads up to `max` bytes of `r`, then drains (and drops) the rest so the
/// child never blocks on a full pipe.
async fn read_bounded(mut r: impl AsyncRead + Unpin, max: usize) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let mut over = false;
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return (out, over),
            Ok(n) => {
                let room = max.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
                over |= n > room;
            }
        }
    }
}

pub(super) fn stderr_task(child: &mut Child) -> tokio::task::JoinHandle<String> {
    let stderr = child.stderr.take();
    tokio::spawn(async move {
        match stderr {
            Some(s) => String::from_utf8_lossy(&read_bounded(s, MAX_STDERR).await.0).into_owned(),
            None => String::new(),
        }
    })
}

/// Runs `cmd` to its end within `timeout`, keeping at most `max_stdout`
/// bytes of output (more is an error).
pub(super) async fn run(
    mut cmd: Command,
    timeout: Duration,
    max_stdout: usize,
) -> Result<Output, RunError> {
    let mut child = cmd.spawn().map_err(RunError::Spawn)?;
    let stderr = stderr_task(&mut child);
    let stdout = child.stdout.take();
    let work = async {
        let (out, over) = match stdout {
            Some(s) => read_bounded(s, max_stdout).await,
            None => (Vec::new(), false),
        };
        let status = child.wait().await.map_err(RunError::Io)?;
        Ok::<_, RunError>((status, out, over))
    };
    let (status, stdout, over) = match tokio::time::timeout(timeout, work).await {
        Ok(r) => r?,
        // Dropping `work` drops the child: kill_on_drop stops it.
        Err(_) => return Err(RunError::TimedOut),
    };
    if over {
        return Err(RunError::TooMuchOutput);
    }
    Ok(Output {
        status,
        stdout,
        stderr: stderr.await.unwrap_or_default(),
    })
}
