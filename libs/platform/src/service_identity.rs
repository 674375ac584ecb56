//! This service's own identity when it calls another: a token that is either fixed (dev,
//! tests) or read from a file that something else rotates (a Kubernetes projected
//! ServiceAccount token, which the kubelet rewrites before it expires). The file is looked at
//! again at most every [`RECHECK`] and re-read when it changed, so a rotated token is picked
//! up without a restart.
//!
//! A call another service refuses for our identity is never "the peer is down": it is
//! logged, counted in `connectability_service_auth_failures_total` and alerted on, and the
//! event that needed it follows its normal attempts to a dead letter.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, LazyLock, Mutex},
    time::{Duration, Instant, SystemTime},
};

use prometheus::{IntCounterVec, Opts, register_int_counter_vec};

/// How often a token file is checked for a new token.
pub const RECHECK: Duration = Duration::from_secs(1);

/// Calls another service refused as unauthenticated or not permitted, by peer.
pub static AUTH_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        Opts::new(
            "connectability_service_auth_failures_total",
            "Calls to another Connectability service refused for this service's identity (UNAUTHENTICATED or PERMISSION_DENIED), by peer"
        ),
        &["peer"]
    )
    .expect("registered once")
});

/// Makes `peer`'s failure series exist at 0, so dashboards and alerts see it before the first
/// failure.
pub fn calls_peer(peer: &str) {
    AUTH_FAILURES.with_label_values(&[peer]);
}

/// What a failed call to `peer` means to this service's own caller, the same for every
/// gateway: our request was wrong (INVALID_ARGUMENT) stays as it is; refused for this
/// service's identity (UNAUTHENTICATED, PERMISSION_DENIED) is INTERNAL, counted and alerted,
/// since retrying will not help; anything else is the peer being unreachable or slow
/// (UNAVAILABLE: retried). NOT_FOUND is each gateway's to read (an answer, not a failure).
pub fn peer_failure(peer: &str, status: tonic::Status) -> tonic::Status {
    use tonic::Code;
    match status.code() {
        Code::InvalidArgument => status,
        Code::Unauthenticated | Code::PermissionDenied => {
            refused(peer, &status);
            tonic::Status::internal(format!("{peer} refused this service: {}", status.message()))
        }
        _ => {
            tracing::warn!(peer, code = ?status.code(), message = status.message(), "call to another service failed");
            tonic::Status::unavailable(format!("{peer}: {}", status.message()))
        }
    }
}

/// Records a call `peer` refused for this service's identity.
fn refused(peer: &str, status: &tonic::Status) {
    tracing::error!(
        peer,
        code = ?status.code(),
        message = status.message(),
        "another service refused this service's identity; check SERVICE_TOKEN_FILE and the peer's allow-list"
    );
    AUTH_FAILURES.with_label_values(&[peer]).inc();
}

/// The token this service presents to others. Cheap to clone.
#[derive(Clone)]
pub struct ServiceToken(Arc<Source>);

enum Source {
    Fixed(String),
    File {
        path: PathBuf,
        state: Mutex<FileState>,
    },
}

struct FileState {
    token: String,
    modified: Option<SystemTime>,
    len: u64,
    checked: Instant,
}

/// A token file's content, without the trailing newline a mounted secret often has.
fn read_token(path: &Path) -> anyhow::Result<(String, Option<SystemTime>, u64)> {
    use anyhow::Context as _;
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let token = std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .to_string();
    if token.is_empty() {
        anyhow::bail!("{} is empty", path.display());
    }
    Ok((token, meta.modified().ok(), meta.len()))
}

impl ServiceToken {
    pub fn fixed(token: &str) -> Self {
        Self(Arc::new(Source::Fixed(token.trim().to_string())))
    }

    /// A token read from `path` now (a missing or empty file is a startup error) and again
    /// whenever the file changes.
    pub fn file(path: &Path) -> anyhow::Result<Self> {
        let (token, modified, len) = read_token(path)?;
        Ok(Self(Arc::new(Source::File {
            path: path.to_path_buf(),
            state: Mutex::new(FileState {
                token,
                modified,
                len,
                checked: Instant::now(),
            }),
        })))
    }

    /// The current token. A file that cannot be read keeps the token in hand (the kubelet
    /// swaps it atomically; a failed read is retried at the next check).
    pub fn current(&self) -> String {
        match &*self.0 {
            Source::Fixed(token) => token.clone(),
            Source::File { path, state } => {
                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                if s.checked.elapsed() >= RECHECK {
                    s.checked = Instant::now();
                    let meta = std::fs::metadata(path).ok();
                    let modified = meta.as_ref().and_then(|m| m.modified().ok());
                    let len = meta.as_ref().map(|m| m.len()).unwrap_or(0);
                    if meta.is_some() && (modified != s.modified || len != s.len) {
                        match read_token(path) {
                            Ok((token, modified, len)) => {
                                tracing::info!(path = %path.display(), "service token rotated; using the new one");
                                (s.token, s.modified, s.len) = (token, modified, len);
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "service token file unreadable; keeping the token in hand")
                            }
                        }
                    }
                }
                s.token.clone()
            }
        }
    }
}

impl From<&str> for ServiceToken {
    fn from(token: &str) -> Self {
        Self::fixed(token)
    }
}

impl From<&String> for ServiceToken {
    fn from(token: &String) -> Self {
        Self::fixed(token)
    }
}

impl From<String> for ServiceToken {
    fn from(token: String) -> Self {
        Self::fixed(&token)
    }
}

impl From<&ServiceToken> for ServiceToken {
    fn from(token: &ServiceToken) -> Self {
        token.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotated_token_file_is_picked_up_without_a_restart() {
        let dir = std::env::temp_dir().join(format!("svc-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "first-token\n").unwrap();
        let token = ServiceToken::file(&path).unwrap();
        assert_eq!(token.current(), "first-token", "trailing newline tolerated");
        // The kubelet writes a new file and swaps it in.
        let next = dir.join("token.new");
        std::fs::write(&next, "second-token-longer").unwrap();
        std::fs::rename(&next, &path).unwrap();
        let deadline = Instant::now() + RECHECK * 5;
        while token.current() != "second-token-longer" {
            assert!(
                Instant::now() < deadline,
                "the rotated token was never read"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // A vanished file keeps the token in hand.
        std::fs::remove_file(&path).unwrap();
        std::thread::sleep(RECHECK + Duration::from_millis(50));
        assert_eq!(token.current(), "second-token-longer");
        assert!(
            ServiceToken::file(&path).is_err(),
            "missing at start: an error"
        );
        std::fs::write(&path, "\n").unwrap();
        assert!(ServiceToken::file(&path).is_err(), "empty: an error");
        std::fs::remove_dir_all(dir).ok();
    }
}
