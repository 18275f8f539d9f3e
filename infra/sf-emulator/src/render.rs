//! How stored records look on the wire: with `attributes {type,url}`, every
//! describe field present (null when unset), and file bodies as URLs.

use serde_json::{Map, Value, json};

use crate::describe::{FieldDef, FieldType, ObjectDef};
use crate::state::Record;

pub fn record_url(obj: &str, id: &str, version: &str) -> String {
    format!("/services/data/v{version}/sobjects/{obj}/{id}")
}

pub fn attributes(obj: &str, id: &str, version: &str) -> Value {
    json!({ "type": obj, "url": record_url(obj, id, version) })
}

pub fn id_of(record: &Record) -> &str {
    record.get("Id").and_then(Value::as_str).unwrap_or_default()
}

/// One field's wire value. Base64 fields are never inlined: the platform
/// returns the URL the bytes can be fetched from.
pub fn field_value(obj: &ObjectDef, f: &FieldDef, record: &Record, version: &str) -> Value {
    if f.ftype == FieldType::Base64 {
        return json!(format!(
            "{}/{}",
            record_url(obj.name, id_of(record), version),
            f.name
        ));
    }
    record.get(f.name).cloned().unwrap_or(Value::Null)
}

/// The full record, as `GET /sobjects/{Obj}/{id}` returns it.
pub fn full(obj: &ObjectDef, record: &Record, version: &str) -> Value {
    let mut out = Map::new();
    out.insert(
        "attributes".into(),
        attributes(obj.name, id_of(record), version),
    );
    for f in &obj.fields {
        out.insert(f.name.into(), field_value(obj, f, record, version));
    }
    Value::Object(out)
}

/// The record restricted to `fields`, as `?fields=` asks.
pub fn selected(obj: &ObjectDef, record: &Record, fields: &[&FieldDef], version: &str) -> Value {
    let mut out = Map::new();
    out.insert(
        "attributes".into(),
        attributes(obj.name, id_of(record), version),
    );
    for f in fields {
        out.insert(f.name.into(), field_value(obj, f, record, version));
    }
    Value::Object(out)
}

/// The record without `attributes` or file bodies, for test inspection.
pub fn plain(obj: &ObjectDef, record: &Record) -> Value {
    let mut out = Map::new();
    for f in obj.fields.iter().filter(|f| f.ftype != FieldType::Base64) {
        out.insert(
            f.name.into(),
            record.get(f.name).cloned().unwrap_or(Value::Null),
        );
    }
    Value::Object(out)
}
