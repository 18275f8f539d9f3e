//! Embedded adapters: everything `fieldgate dev` and the tests need with no
//! cloud account. State lives in a data directory and survives restarts.

mod assistants;
mod files;
mod store;

pub use assistants::AssistantFile;
pub use files::{FileMedia, HandoffLog, Outbox};
pub use store::EmbeddedStore;

use std::path::Path;

/// Writes `bytes` to `path` atomically (temp file + rename), so a crash
/// never leaves half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!(
        "tmp{}",
        std::process::id() as u64 * 1000 + rand::random::<u16>() as u64
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
