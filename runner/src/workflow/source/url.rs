//! Which transport a repository URL uses, and the URL with credentials
//! hidden for messages.

use crate::workflow::policy::Protocol;

/// A repository location the policy allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoUrl {
    /// As given, credentials included: only ever handed to git through its
    /// environment, never in messages or argv.
    pub(super) raw: String,
    pub protocol: Protocol,
    /// For messages and logs: user and password replaced by `***`.
    pub redacted: String,
    /// The URL without credentials: the cache key.
    pub(super) key: String,
}

/// Why a repository location is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("is empty, too long, or holds spaces or control characters")]
    Malformed,
    #[error("starts with `-`")]
    LooksLikeAnOption,
    #[error("uses the transport `{0}`, which is never allowed")]
    Transport(String),
    #[error("names a remote helper (`transport::address`), which is never allowed")]
    RemoteHelper,
    #[error("is neither a URL (https://, ssh://, file://) nor an absolute path")]
    NotAUrl,
}

/// Reads `url`: `https://`, `http://`, `ssh://`, `git://`, `file://`,
/// `user@host:path` (ssh) or an absolute local path (file).
pub fn classify(url: &str) -> Result<RepoUrl, UrlError> {
    if url.is_empty()
        || url.len() > 4096
        || url.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(UrlError::Malformed);
    }
    if url.starts_with('-') {
        return Err(UrlError::LooksLikeAnOption);
    }
    let (protocol, rest) = if let Some((scheme, rest)) = url.split_once("://") {
        let p = match scheme.to_ascii_lowercase().as_str() {
            "https" => Protocol::Https,
            "http" => Protocol::Http,
            "ssh" | "git+ssh" | "ssh+git" => Protocol::Ssh,
            "git" => Protocol::Git,
            "file" => Protocol::File,
            other => {
                return Err(UrlError::Transport(other.chars().take(32).collect()));
            }
        };
        (p, Some((scheme, rest)))
    } else if url.starts_with('/') {
        (Protocol::File, None)
    } else if url.contains("::") {
        return Err(UrlError::RemoteHelper);
    } else if scp_like(url) {
        (Protocol::Ssh, None)
    } else {
        return Err(UrlError::NotAUrl);
    };
    let (redacted, key) = match rest {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
            match authority.rsplit_once('@') {
                Some((_, host)) => (
                    format!("{scheme}://***@{host}/{path}"),
                    format!("{scheme}://{host}/{path}"),
                ),
                None => (url.to_owned(), url.to_owned()),
            }
        }
        None => (url.to_owned(), url.to_owned()),
    };
    Ok(RepoUrl {
        raw: url.to_owned(),
        protocol,
        redacted,
        key,
    })
}

/// `[user@]host:path`, git's scp-like ssh syntax: a colon before any slash.
fn scp_like(url: &str) -> bool {
    match (url.find(':'), url.find('/')) {
        (Some(c), Some(s)) => c > 0 && c < s,
        (Some(c), None) => c > 0,
        _ => false,
    }
}

impl RepoUrl {
    /// `text` with every credential of the URL replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(&self.raw, &self.redacted);
        if let Some((_, rest)) = self.raw.split_once("://") {
            let authority = rest.split('/').next().unwrap_or("");
            if let Some((userinfo, _)) = authority.rsplit_once('@') {
                for secret in [Some(userinfo), userinfo.split_once(':').map(|(_, p)| p)]
                    .into_iter()
                    .flatten()
                {
                    if secret.len() >= 3 {
                        out = out.replace(secret, "***");
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_are_recognized() {
        assert_eq!(
            classify("https://github.com/a/b.git").unwrap().protocol,
            Protocol::Https
        );
        assert_eq!(
            classify("git@github.com:a/b.git").unwrap().protocol,
            Protocol::Ssh
        );
        assert_eq!(
            classify("ssh://git@host/a").unwrap().protocol,
            Protocol::Ssh
        );
        assert_eq!(classify("/srv/git/a").unwrap().protocol, Protocol::File);
        assert_eq!(
            classify("file:///srv/git/a").unwrap().protocol,
            Protocol::File
        );
        for bad in [
            "ext::sh -c touch% /tmp/x",
            "ext::sh",
            "fd::17",
            "relative/path",
            "-uhttps://x",
            "ftp://x/y",
            "",
            "https://a b",
        ] {
            assert!(classify(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_never_show() {
        let u = classify("https://ci-bot:s3cr3t-t0ken@git.example.com/a/b.git").unwrap();
        assert_eq!(u.redacted, "https://***@git.example.com/a/b.git");
        assert_eq!(u.key, "https://git.example.com/a/b.git");
        let msg = "fatal: unable to access 'https://ci-bot:s3cr3t-t0ken@git.example.com/a/b.git/': auth s3cr3t-t0ken failed";
        let scrubbed = u.scrub(msg);
        assert!(!scrubbed.contains("s3cr3t"), "{scrubbed}");
        let t = classify("https://x-access-token:ghp_abcdef@github.com/a/b").unwrap();
        assert!(!t.scrub("token ghp_abcdef").contains("ghp_abcdef"));
    }
}
