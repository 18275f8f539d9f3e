//! Assistant tokens in one file of the data directory (`assistants.json`,
//! mode 0600). Read on every lookup, so `fieldgate mcp token create` and
//! `revoke` in another process take effect on the running server at once.

use crate::domain::{AssistantToken, Timestamp};
use crate::ports::{AssistantTokens, StoreError};
use async_trait::async_trait;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct AssistantFile {
    path: PathBuf,
    /// Serialises this process's read-modify-write cycles.
    lock: Mutex<()>,
}

impl AssistantFile {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            path: dir.join("assistants.json"),
            lock: Mutex::new(()),
        })
    }

    fn read(&self) -> Result<Vec<AssistantToken>, StoreError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::backend(format!("reading {}", self.path.display()), e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(StoreError::backend(
                format!("reading {}", self.path.display()),
                e,
            )),
        }
    }

    /// Temp file created 0600, then renamed: the file is never readable by
    /// others, and never half written.
    fn write(&self, tokens: &[AssistantToken]) -> Result<(), StoreError> {
        let ctx = || format!("writing {}", self.path.display());
        let bytes = serde_json::to_vec_pretty(tokens).map_err(|e| StoreError::backend(ctx(), e))?;
        let tmp = self
            .path
            .with_extension(format!("tmp{}", std::process::id()));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let written = opts
            .open(&tmp)
            .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        written.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            StoreError::backend(ctx(), e)
        })
    }

    fn update<T>(
        &self,
        f: impl FnOnce(&mut Vec<AssistantToken>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _guard = self.lock.lock().expect("assistants lock");
        let mut tokens = self.read()?;
        let v = f(&mut tokens)?;
        self.write(&tokens)?;
        Ok(v)
    }
}

#[async_trait]
impl AssistantTokens for AssistantFile {
    async fn put(&self, token: &AssistantToken) -> Result<(), StoreError> {
        self.update(|all| {
            if all
                .iter()
                .any(|t| t.token_hash == token.token_hash || t.id == token.id)
            {
                return Err(StoreError::Conflict);
            }
            all.push(token.clone());
            Ok(())
        })
    }

    async fn by_hash(&self, token_hash: &str) -> Result<Option<AssistantToken>, StoreError> {
        use subtle::ConstantTimeEq;
        Ok(self
            .read()?
            .into_iter()
            .find(|t| bool::from(t.token_hash.as_bytes().ct_eq(token_hash.as_bytes()))))
    }

    async fn list(&self) -> Result<Vec<AssistantToken>, StoreError> {
        self.read()
    }

    async fn revoke(&self, id: &str, at: Timestamp) -> Result<Option<AssistantToken>, StoreError> {
        self.update(|all| {
            Ok(all.iter_mut().find(|t| t.id == id).map(|t| {
                t.revoked_at.get_or_insert(at);
                t.clone()
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::{SeededRng, at};
    use crate::domain::{AssistantLimits, AssistantToken};

    #[tokio::test]
    async fn tokens_persist_privately_and_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let file = AssistantFile::open(dir.path()).unwrap();
        let (secret, rec) = AssistantToken::mint(
            "Desk",
            vec!["field-service-case".parse().unwrap()],
            AssistantLimits::default(),
            at(0),
            &mut SeededRng(3),
        );
        file.put(&rec).await.unwrap();
        assert_eq!(file.put(&rec).await, Err(StoreError::Conflict));
        // Another handle (another process) sees it at once.
        let other = AssistantFile::open(dir.path()).unwrap();
        let found = other
            .by_hash(&AssistantToken::hash(&secret))
            .await
            .unwrap()
            .unwrap();
        assert!(found.is_active());
        let text = std::fs::read_to_string(dir.path().join("assistants.json")).unwrap();
        assert!(!text.contains(&secret));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("assistants.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let revoked = other.revoke(&rec.id, at(5)).await.unwrap().unwrap();
        assert_eq!(revoked.revoked_at, Some(at(5)));
        assert!(!file.list().await.unwrap()[0].is_active());
        assert!(file.revoke("as_nope", at(6)).await.unwrap().is_none());
    }
}
