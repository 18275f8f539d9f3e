//! The org's data: records per sObject keyed by their 15-character id, file
//! bodies, and the counters that mint ids. It is plain data (cloneable) so
//! composite allOrNone can snapshot and roll back, and serialisable so it can
//! be persisted to one JSON file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::describe::{self, ObjectDef};
use crate::ids;

pub type Record = Map<String, Value>;

const FORMAT: u32 = 1;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Store {
    #[serde(default)]
    pub format: u32,
    /// Next counter per key prefix; deterministic so a fresh seed always
    /// yields the same ids.
    #[serde(default)]
    pub counters: BTreeMap<String, u64>,
    /// Last Case auto-number handed out.
    #[serde(default)]
    pub case_number: u64,
    /// Last WorkOrder auto-number handed out (0 in a store saved before
    /// there were work orders: the first is `00000001`, as in a new org).
    #[serde(default)]
    pub work_order_number: u64,
    /// sObject name → 15-char id → stored fields (Id as 18 chars).
    #[serde(default)]
    pub objects: BTreeMap<String, BTreeMap<String, Record>>,
    /// ContentVersion 15-char id → file bytes (base64 in the file).
    #[serde(default, with = "blobs")]
    pub blobs: BTreeMap<String, Vec<u8>>,
    /// Set by every mutation; the server persists and clears it.
    #[serde(skip)]
    pub dirty: bool,
}

impl Store {
    pub fn new() -> Store {
        Store {
            format: FORMAT,
            case_number: 1000,
            ..Store::default()
        }
    }

    pub fn mint(&mut self, prefix: &str) -> String {
        let n = self.counters.entry(prefix.to_string()).or_insert(0);
        *n += 1;
        ids::mint(prefix, *n)
    }

    pub fn next_case_number(&mut self) -> String {
        self.case_number += 1;
        format!("{:08}", self.case_number)
    }

    pub fn next_work_order_number(&mut self) -> String {
        self.work_order_number += 1;
        format!("{:08}", self.work_order_number)
    }

    pub fn table(&self, sobject: &str) -> impl Iterator<Item = &Record> {
        self.objects
            .get(sobject)
            .into_iter()
            .flat_map(|t| t.values())
    }

    pub fn get(&self, sobject: &str, id: &str) -> Option<&Record> {
        let key = ids::key(id)?;
        self.objects.get(sobject)?.get(key)
    }

    pub fn get_mut(&mut self, sobject: &str, id: &str) -> Option<&mut Record> {
        let key = ids::key(id)?;
        self.objects.get_mut(sobject)?.get_mut(key)
    }

    /// Finds a record of any type from its id's key prefix.
    pub fn find(&self, id: &str) -> Option<(&'static ObjectDef, &Record)> {
        let key = ids::key(id)?;
        let obj = describe::object_by_prefix(&key[..3])?;
        Some((obj, self.objects.get(obj.name)?.get(key)?))
    }

    pub fn insert(&mut self, sobject: &str, record: Record) {
        let id = record
            .get("Id")
            .and_then(Value::as_str)
            .and_then(ids::key)
            .expect("records are inserted with a minted Id")
            .to_string();
        self.objects
            .entry(sobject.to_string())
            .or_default()
            .insert(id, record);
        self.dirty = true;
    }

    pub fn remove(&mut self, sobject: &str, id: &str) -> Option<Record> {
        let key = ids::key(id)?.to_string();
        let removed = self.objects.get_mut(sobject)?.remove(&key)?;
        self.blobs.remove(&key);
        self.dirty = true;
        Some(removed)
    }

    pub fn blob(&self, id: &str) -> Option<&Vec<u8>> {
        self.blobs.get(ids::key(id)?)
    }

    pub fn load(path: &Path) -> std::io::Result<Option<Store>> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut store: Store = serde_json::from_slice(&bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        // Files written before Case.IsClosed was emulated: derive it, as
        // the platform always has it (a query on it must find them).
        if let (Some(case), Some(rows)) = (
            crate::describe::object("Case"),
            store.objects.get_mut("Case"),
        ) {
            for r in rows.values_mut().filter(|r| !r.contains_key("IsClosed")) {
                crate::dml::derive_fields(case, r);
            }
        }
        Ok(Some(store))
    }

    /// Write a sibling temp file then rename it over the target, so a crash
    /// mid-write never leaves a truncated state file behind.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        Self::write_bytes(path, &self.to_bytes()?)
    }

    /// The state file's content.
    pub fn to_bytes(&self) -> std::io::Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(std::io::Error::other)
    }

    /// Writes a state file's content as [`Store::save`] does.
    pub fn write_bytes(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir)?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "sf-emulator.json".into());
        let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    }
}

/// Blobs are stored base64-encoded so the state file stays valid JSON text.
mod blobs {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(
        m: &BTreeMap<String, Vec<u8>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let encoded: BTreeMap<&String, String> =
            m.iter().map(|(k, v)| (k, STANDARD.encode(v))).collect();
        encoded.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Vec<u8>>, D::Error> {
        let encoded = BTreeMap::<String, String>::deserialize(d)?;
        encoded
            .into_iter()
            .map(|(k, v)| {
                STANDARD
                    .decode(v)
                    .map(|b| (k, b))
                    .map_err(serde::de::Error::custom)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cases_of_older_state_files_get_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut s = Store::new();
        for (id, status) in [
            ("500000000000001AAA", "New"),
            ("500000000000002AAA", "Closed"),
        ] {
            let mut r = Record::new();
            r.insert("Id".into(), serde_json::json!(id));
            r.insert("Status".into(), serde_json::json!(status));
            s.insert("Case", r);
        }
        s.save(&path).unwrap();
        let back = Store::load(&path).unwrap().unwrap();
        assert_eq!(
            back.get("Case", "500000000000001AAA").unwrap()["IsClosed"],
            false
        );
        assert_eq!(
            back.get("Case", "500000000000002AAA").unwrap()["IsClosed"],
            true
        );
    }

    #[test]
    fn save_and_load_round_trip_including_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("org.json");
        let mut s = Store::new();
        let id = s.mint("068");
        let mut r = Record::new();
        r.insert("Id".into(), json!(id));
        s.insert("ContentVersion", r);
        s.blobs.insert(id[..15].to_string(), vec![0, 159, 146, 150]);
        s.save(&path).unwrap();
        let back = Store::load(&path).unwrap().unwrap();
        assert_eq!(back.blob(&id).unwrap(), &vec![0, 159, 146, 150]);
        assert_eq!(
            back.get("ContentVersion", &id[..15]).unwrap()["Id"],
            json!(id)
        );
        assert_eq!(back.counters["068"], 1);
        assert!(
            Store::load(&dir.path().join("missing.json"))
                .unwrap()
                .is_none()
        );
    }
}
