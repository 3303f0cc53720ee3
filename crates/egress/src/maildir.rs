//! Delivery into a local Maildir tree: `<root>/<recipient>/{tmp,new,cur}`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static SEQ: AtomicU64 = AtomicU64::new(0);

/// The mailbox directory of `rcpt` under `root`; refuses names that could leave `root`.
pub fn mailbox_dir(root: &Path, rcpt: &str) -> io::Result<PathBuf> {
    let name = rcpt.to_lowercase();
    if name.is_empty()
        || name.starts_with('.')
        || name.contains(['/', '\\', '\0'])
        || name.chars().any(char::is_control)
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{rcpt:?} cannot be a mailbox name"),
        ));
    }
    Ok(root.join(name))
}

/// Writes `body` for `rcpt` (tmp → fsync → rename into new → fsync dir); returns the file.
pub fn deliver(root: &Path, rcpt: &str, id: &str, body: &[u8]) -> io::Result<PathBuf> {
    let dir = mailbox_dir(root, rcpt)?;
    for sub in ["tmp", "new", "cur"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let name = format!(
        "{}.M{}P{}Q{}_{id}.sekisho",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let tmp = dir.join("tmp").join(&name);
    let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
    f.write_all(body)?;
    f.sync_all()?;
    let new = dir.join("new").join(&name);
    fs::rename(&tmp, &new)?;
    File::open(dir.join("new"))?.sync_all()?;
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_into_new_and_refuses_escapes() {
        let root = tempfile::tempdir().unwrap();
        let path = deliver(root.path(), "Bob@Demo.test", "ID1", b"hello\r\n").unwrap();
        assert!(path.starts_with(root.path().join("bob@demo.test/new")));
        assert_eq!(fs::read(&path).unwrap(), b"hello\r\n");
        assert!(deliver(root.path(), "../../etc/passwd@x", "ID2", b"x").is_err());
        assert!(deliver(root.path(), ".hidden@x", "ID3", b"x").is_err());
    }
}
