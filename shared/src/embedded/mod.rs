//! Embedded adapters: everything `fieldgate dev` and the tests need with no
//! cloud account. State lives in a data directory and survives restarts;
//! files are private to their owner (0600, directories 0700).

mod assistants;
mod files;
#[cfg(feature = "sqlite")]
mod import;
#[cfg(feature = "smtp")]
pub mod smtp;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "webhook")]
pub mod webhook;

pub use assistants::AssistantFile;
pub use files::{FileMedia, HandoffLog, Outbox};
#[cfg(feature = "sqlite")]
pub use import::OLD_STORE_FILE;
#[cfg(feature = "sqlite")]
pub use sqlite::{Change, DB_FILE, Outcome, SqliteStore};

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically (temp file + rename), so a crash
/// never leaves half a file; the file is created 0600.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!(
        "tmp{}",
        std::process::id() as u64 * 1000 + rand::random::<u16>() as u64
    ));
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let written = o.open(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        // Durable before it replaces the old file: a power cut leaves the
        // old or the new content, never an empty file.
        f.sync_data()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)
}

/// Creates `dir` (and its parents) and makes it 0700: photos, keys and the
/// database are nobody else's business on a shared machine.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}
