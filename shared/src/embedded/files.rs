//! File-backed adapters for mail, handoff and photos.

use super::write_atomic;
use crate::ports::{
    HandoffMessage, HandoffPublisher, MediaError, MediaStore, NotifyError, PublishError,
    ReviewMail, ReviewNotifier,
};
use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// An append-only JSON list in one file, also kept in memory.
struct JsonLog<T> {
    file: Option<PathBuf>,
    items: Mutex<Vec<T>>,
}

impl<T: Serialize + DeserializeOwned + Clone> JsonLog<T> {
    fn open(file: Option<PathBuf>) -> std::io::Result<Self> {
        let items = match &file {
            Some(f) => match std::fs::read(f) {
                Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}: {e}", f.display()),
                    )
                })?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(e),
            },
            None => Vec::new(),
        };
        Ok(Self {
            file,
            items: Mutex::new(items),
        })
    }

    fn push(&self, item: T) -> std::io::Result<()> {
        let mut items = self.items.lock().expect("log lock");
        items.push(item);
        if let Some(f) = &self.file {
            let written = serde_json::to_vec_pretty(&*items)
                .map_err(std::io::Error::other)
                .and_then(|bytes| write_atomic(f, &bytes));
            if let Err(e) = written {
                items.pop();
                return Err(e);
            }
        }
        Ok(())
    }

    fn all(&self) -> Vec<T> {
        self.items.lock().expect("log lock").clone()
    }
}

/// Review mail goes here in `fieldgate dev`; `/dev/outbox` shows it.
pub struct Outbox(JsonLog<ReviewMail>);

impl Outbox {
    pub fn open(dir: Option<&Path>) -> std::io::Result<Self> {
        Ok(Self(JsonLog::open(dir.map(|d| d.join("outbox.json")))?))
    }
    pub fn mails(&self) -> Vec<ReviewMail> {
        self.0.all()
    }
}

#[async_trait]
impl ReviewNotifier for Outbox {
    async fn send(&self, mail: &ReviewMail) -> Result<(), NotifyError> {
        self.0
            .push(mail.clone())
            .map_err(|e| NotifyError::failed("writing the outbox", e))
    }
}

/// Handoff messages go here in `fieldgate dev`; `/dev/handoff` shows them.
pub struct HandoffLog(JsonLog<HandoffMessage>);

impl HandoffLog {
    pub fn open(dir: Option<&Path>) -> std::io::Result<Self> {
        Ok(Self(JsonLog::open(dir.map(|d| d.join("handoff.json")))?))
    }
    pub fn messages(&self) -> Vec<HandoffMessage> {
        self.0.all()
    }
}

#[async_trait]
impl HandoffPublisher for HandoffLog {
    async fn publish(&self, msg: &HandoffMessage) -> Result<(), PublishError> {
        self.0
            .push(msg.clone())
            .map_err(|e| PublishError::failed("writing the handoff log", e))
    }
}

/// Photos as files under `dir/media/`.
pub struct FileMedia {
    dir: PathBuf,
}

impl FileMedia {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let dir = dir.join("media");
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    /// Keys are ours (`photos/{ulid}.{ext}`), but never trust a path.
    fn path(&self, key: &str) -> Result<PathBuf, MediaError> {
        let ok = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
            && !key.contains("..")
            && !key.starts_with('/');
        if !ok {
            return Err(MediaError::BadKey(key.to_owned()));
        }
        Ok(self.dir.join(key.replace('/', "__")))
    }
}

#[async_trait]
impl MediaStore for FileMedia {
    async fn put(&self, key: &str, data: &[u8], _content_type: &str) -> Result<(), MediaError> {
        let path = self.path(key)?;
        write_atomic(&path, data).map_err(|e| MediaError::failed(format!("writing {key}"), e))
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, MediaError> {
        match tokio::fs::read(self.path(key)?).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(MediaError::failed(format!("reading {key}"), e)),
        }
    }
}
