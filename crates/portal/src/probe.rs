//! Test hooks only (`test-hooks` feature, never in release builds; mx's hooks use it too): what code running inside
//! a role tries when it plays an intruder, and what the kernel answered.
//!
//! A role's hook runs [`run`] on the probes a test sends and returns each outcome; the tests
//! then assert that the kernel (Landlock, file ownership) said no to everything a compromised
//! role must not reach.

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "try", rename_all = "kebab-case")]
pub enum Probe {
    /// Open a file for reading and read from it.
    Read {
        /// The file.
        path: PathBuf,
    },
    /// Open a file for writing (appending nothing).
    Write {
        /// The file.
        path: PathBuf,
    },
    /// Create a new file.
    Create {
        /// The file (removed again if it was made).
        path: PathBuf,
    },
    /// List a directory.
    List {
        /// The directory.
        path: PathBuf,
    },
    /// Connect to a Unix socket, send a line, read the reply line.
    Send {
        /// The socket.
        path: PathBuf,
        /// What to send (a newline is added).
        line: String,
    },
}

/// What the kernel (or the peer) said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// It worked; what came back (the first bytes read, entries, a reply).
    Allowed {
        /// What came back.
        detail: String,
    },
    /// The kernel refused (`EACCES`, `EPERM`).
    Denied {
        /// The error.
        detail: String,
    },
    /// It failed otherwise (not found, refused connection, …).
    Failed {
        /// The error.
        detail: String,
    },
}

/// A probe and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// What was tried.
    pub probe: Probe,
    /// What happened.
    pub outcome: Outcome,
}

fn outcome(r: std::io::Result<String>) -> Outcome {
    match r {
        Ok(detail) => Outcome::Allowed { detail },
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Outcome::Denied {
            detail: e.to_string(),
        },
        Err(e) => Outcome::Failed {
            detail: e.to_string(),
        },
    }
}

fn attempt(p: &Probe) -> std::io::Result<String> {
    match p {
        Probe::Read { path } => {
            let mut f = std::fs::File::open(path)?;
            let mut buf = [0u8; 16];
            let n = f.read(&mut buf)?;
            Ok(format!("read {n} bytes"))
        }
        Probe::Write { path } => {
            std::fs::OpenOptions::new().append(true).open(path)?;
            Ok("opened for writing".into())
        }
        Probe::Create { path } => {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)?;
            let _ = std::fs::remove_file(path);
            Ok("created".into())
        }
        Probe::List { path } => {
            let n = std::fs::read_dir(path)?.count();
            Ok(format!("{n} entries"))
        }
        Probe::Send { path, line } => {
            let mut s = std::os::unix::net::UnixStream::connect(path)?;
            s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
            s.write_all(format!("{line}\n").as_bytes())?;
            let mut reply = String::new();
            std::io::BufReader::new(s.take(1 << 20)).read_line(&mut reply)?;
            Ok(reply.trim_end().to_string())
        }
    }
}

/// Tries every probe from the calling process (blocking file and socket I/O).
pub fn run(probes: &[Probe]) -> Vec<ProbeResult> {
    probes
        .iter()
        .map(|p| ProbeResult {
            probe: p.clone(),
            outcome: outcome(attempt(p)),
        })
        .collect()
}
