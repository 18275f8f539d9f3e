//! File-backed adapters for mail, handoff and photos.

use super::write_atomic;
use crate::ports::{
    HandoffMessage, HandoffPublisher, MediaError, MediaStore, NotifyError, PublishError,
    ReviewMail, ReviewNotifier,
};
use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// An append-only log of JSON lines in one file, also kept in memory.
/// Appending costs the same however long the log is (the list that was
/// rewritten whole on every push grew slower with every mail).
struct JsonLog<T> {
    file: Option<Mutex<std::fs::File>>,
    items: Mutex<Vec<T>>,
    /// How many items are logged (what a relay of the log waits on).
    len: tokio::sync::watch::Sender<usize>,
}

fn invalid(f: &Path, line: usize, e: serde_json::Error) -> std::io::Error {
    // Line and column only: serde's message can quote the content.
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!(
            "{}: line {}: not a JSON document (column {})",
            f.display(),
            line,
            e.column()
        ),
    )
}

impl<T: Serialize + DeserializeOwned + Clone> JsonLog<T> {
    /// `dir/{name}.jsonl`; a `dir/{name}.json` list written by earlier
    /// versions is taken over once (renamed `.json.imported`).
    fn open(dir: Option<&Path>, name: &str) -> std::io::Result<Self> {
        let Some(dir) = dir else {
            return Ok(Self {
                file: None,
                items: Mutex::new(Vec::new()),
                len: tokio::sync::watch::Sender::new(0),
            });
        };
        let path = dir.join(format!("{name}.jsonl"));
        let mut items: Vec<T> = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(i, l)| serde_json::from_str(l).map_err(|e| invalid(&path, i + 1, e)))
                .collect::<Result<_, _>>()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let old = dir.join(format!("{name}.json"));
        let taken_over: Vec<T> = match std::fs::read(&old) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| invalid(&old, e.line(), e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut o = std::fs::OpenOptions::new();
        o.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        let file = o.open(&path)?;
        let log = Self {
            file: Some(Mutex::new(file)),
            items: Mutex::new(Vec::new()),
            len: tokio::sync::watch::Sender::new(0),
        };
        if old.exists() {
            for item in taken_over {
                log.push(item)?;
            }
            std::fs::rename(&old, dir.join(format!("{name}.json.imported")))?;
        }
        let mut taken = log.items.lock().expect("log lock");
        items.append(&mut taken);
        *taken = items;
        log.len.send_replace(taken.len());
        drop(taken);
        Ok(log)
    }

    fn push(&self, item: T) -> std::io::Result<()> {
        let mut items = self.items.lock().expect("log lock");
        if let Some(f) = &self.file {
            let mut line = serde_json::to_vec(&item).map_err(std::io::Error::other)?;
            line.push(b'\n');
            let mut f = f.lock().expect("log file lock");
            // One write of the whole line, then on disk before "sent".
            f.write_all(&line)?;
            f.sync_data()?;
        }
        items.push(item);
        self.len.send_replace(items.len());
        Ok(())
    }

    fn all(&self) -> Vec<T> {
        self.items.lock().expect("log lock").clone()
    }

    fn since(&self, from: usize) -> Vec<T> {
        let items = self.items.lock().expect("log lock");
        items.get(from..).map(<[T]>::to_vec).unwrap_or_default()
    }
}

/// Review mail goes here in `fieldgate dev`; `/dev/outbox` shows it.
pub struct Outbox(JsonLog<ReviewMail>);

impl Outbox {
    pub fn open(dir: Option<&Path>) -> std::io::Result<Self> {
        Ok(Self(JsonLog::open(dir, "outbox")?))
    }
    pub fn mails(&self) -> Vec<ReviewMail> {
        self.0.all()
    }
    /// The mails from position `from` on (a reader's cursor).
    pub fn since(&self, from: usize) -> Vec<ReviewMail> {
        self.0.since(from)
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
pub struct HandoffLog(
    JsonLog<HandoffMessage>,
    /// The dedupe keys in the log (from the file at start): a message is
    /// logged once, even when a crash came between logging it and the
    /// store recording it as published, and the commit step publishes it
    /// again after the restart.
    Mutex<std::collections::HashSet<String>>,
);

impl HandoffLog {
    pub fn open(dir: Option<&Path>) -> std::io::Result<Self> {
        let log: JsonLog<HandoffMessage> = JsonLog::open(dir, "handoff")?;
        let keys = log.all().into_iter().map(|m| m.dedupe_key).collect();
        Ok(Self(log, Mutex::new(keys)))
    }
    pub fn messages(&self) -> Vec<HandoffMessage> {
        self.0.all()
    }
    /// The messages from position `from` on (a relay's cursor).
    pub fn since(&self, from: usize) -> Vec<HandoffMessage> {
        self.0.since(from)
    }
    /// Follows the number of messages logged.
    pub fn watch_len(&self) -> tokio::sync::watch::Receiver<usize> {
        self.0.len.subscribe()
    }
}

#[async_trait]
impl HandoffPublisher for HandoffLog {
    async fn publish(&self, msg: &HandoffMessage) -> Result<(), PublishError> {
        // Held across the append: two drivers publishing one message at
        // once log it once.
        let mut keys = self.1.lock().expect("handoff keys lock");
        if keys.contains(&msg.dedupe_key) {
            return Ok(());
        }
        self.0
            .push(msg.clone())
            .map_err(|e| PublishError::failed("writing the handoff log", e))?;
        keys.insert(msg.dedupe_key.clone());
        Ok(())
    }
}

/// Photos as files under `dir/media/`.
pub struct FileMedia {
    dir: PathBuf,
}

impl FileMedia {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let dir = dir.join("media");
        super::create_private_dir(&dir)?;
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

    async fn delete(&self, key: &str) -> Result<(), MediaError> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(MediaError::failed(format!("deleting {key}"), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::HandoffPublisher;

    fn message(key: &str) -> HandoffMessage {
        let json = serde_json::json!({
            "schema": "fieldgate.handoff/v1",
            "event": "committed",
            "dedupe_key": key,
            "proposal_id": "01JD0000000000000000000000",
            "workflow": "field-service-case",
            "object": "Case",
            "salesforce_id": "500000000000001AAA",
            "salesforce_url": "https://example.my.salesforce.com/500000000000001AAA",
            "summary": "Leak",
            "priority": null,
            "asset": {"id": "02i000000000001AAA", "name": "Chiller"},
            "approved_by": null,
            "committed_at": "2026-12-01T00:00:00Z",
        });
        serde_json::from_value(json).unwrap()
    }

    /// A crash between logging a handoff and recording it as published
    /// makes the commit step publish it again after the restart: the log
    /// keeps one copy (the chaos suite's larger run found two).
    #[tokio::test]
    async fn the_handoff_log_keeps_one_copy_per_dedupe_key_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let log = HandoffLog::open(Some(dir.path())).unwrap();
        log.publish(&message("a:committed")).await.unwrap();
        log.publish(&message("a:committed")).await.unwrap();
        drop(log);
        let log = HandoffLog::open(Some(dir.path())).unwrap();
        log.publish(&message("a:committed")).await.unwrap();
        log.publish(&message("b:committed")).await.unwrap();
        let keys: Vec<String> = log.messages().into_iter().map(|m| m.dedupe_key).collect();
        assert_eq!(keys, ["a:committed", "b:committed"]);
        let lines = std::fs::read_to_string(dir.path().join("handoff.jsonl")).unwrap();
        assert_eq!(lines.lines().count(), 2);
    }
}
