//! Create, update, upsert and delete, validated against the describe
//! metadata in the order the platform applies its checks: field names,
//! writability, value types, required fields, lengths, picklists,
//! references, validation rules, then uniqueness.

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use regex::Regex;
use serde_json::{Map, Value, json};

use crate::describe::{FieldDef, FieldType, ObjectDef};
use crate::errors::ApiError;
use crate::faults::ValidationRule;
use crate::ids;
use crate::state::{Record, Store};

/// What a write may need beyond the store: rules and a clock.
pub struct WriteCtx<'a> {
    pub rules: &'a [ValidationRule],
    pub now: &'a str,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Upserted {
    Created(String),
    Updated(String),
    /// Several records share the external id value: their ids.
    Ambiguous(Vec<String>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Create,
    Update,
}

/// The checked, canonicalised fields of one request body.
struct Changes {
    values: Vec<(&'static FieldDef, Value)>,
    blob: Option<Vec<u8>>,
}

pub fn create(
    store: &mut Store,
    obj: &'static ObjectDef,
    body: Map<String, Value>,
    blob: Option<Vec<u8>>,
    ctx: &WriteCtx,
) -> Result<String, ApiError> {
    if !obj.createable {
        return Err(ApiError::dml(
            "INVALID_TYPE_FOR_OPERATION",
            format!("entity type {} does not support insert", obj.name),
            vec![],
        ));
    }
    if body.keys().any(|k| k.eq_ignore_ascii_case("Id")) {
        return Err(ApiError::dml(
            "INVALID_FIELD",
            "The Id field should not be specified in the sobject data.",
            vec![],
        ));
    }
    let mut changes = prepare(obj, body, Mode::Create)?;
    if blob.is_some() {
        changes.blob = blob;
    }
    insert_checked(store, obj, changes, ctx)
}

fn insert_checked(
    store: &mut Store,
    obj: &'static ObjectDef,
    changes: Changes,
    ctx: &WriteCtx,
) -> Result<String, ApiError> {
    let mut record = Record::new();
    for (f, v) in &changes.values {
        record.insert(f.name.to_string(), v.clone());
    }
    for f in &obj.fields {
        if let (Some(default), false) = (f.default_value, record.contains_key(f.name)) {
            let v = match f.ftype {
                FieldType::Boolean => json!(default == "true"),
                _ => json!(default),
            };
            record.insert(f.name.to_string(), v);
        }
    }
    derive_fields(obj, &mut record);
    if obj.name == "ContentVersion" {
        derive_file_fields(&mut record, changes.blob.as_deref());
    }

    let missing: Vec<String> = obj
        .fields
        .iter()
        .filter(|f| f.createable && !f.nillable && !f.defaulted_on_create)
        .filter(|f| {
            if f.ftype == FieldType::Base64 {
                changes.blob.is_none()
            } else {
                record.get(f.name).is_none_or(Value::is_null)
            }
        })
        .map(|f| f.name.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::dml(
            "REQUIRED_FIELD_MISSING",
            format!("Required fields are missing: [{}]", missing.join(", ")),
            missing,
        ));
    }
    check_values(store, obj, &changes.values, &record, None, ctx)?;

    let id = store.mint(obj.key_prefix);
    record.insert("Id".into(), json!(id));
    for f in ["CreatedDate", "LastModifiedDate", "SystemModstamp"] {
        record.insert(f.into(), json!(ctx.now));
    }
    // Auto-numbers are assigned on insert only (contract: Auto-numbers).
    match obj.name {
        "Case" => {
            record.insert("CaseNumber".into(), json!(store.next_case_number()));
        }
        "WorkOrder" => {
            record.insert(
                "WorkOrderNumber".into(),
                json!(store.next_work_order_number()),
            );
        }
        _ => {}
    }
    if obj.name == "ContentVersion" {
        attach_document(store, &mut record, ctx.now);
        store
            .blobs
            .insert(id[..15].to_string(), changes.blob.unwrap_or_default());
    }
    store.insert(obj.name, record);
    Ok(id)
}

/// Fields the platform computes from others: a Case's `IsClosed` follows
/// its Status (the demo org's one closed status is "Closed").
pub(crate) fn derive_fields(obj: &ObjectDef, record: &mut Record) {
    if obj.name == "Case" {
        let closed = record
            .get("Status")
            .and_then(Value::as_str)
            .is_some_and(|s| s == "Closed");
        record.insert("IsClosed".into(), json!(closed));
    }
}

pub fn update(
    store: &mut Store,
    obj: &'static ObjectDef,
    id: &str,
    mut body: Map<String, Value>,
    ctx: &WriteCtx,
) -> Result<(), ApiError> {
    let existing = store
        .get(obj.name, id)
        .ok_or_else(ApiError::not_found)?
        .clone();
    let existing_id = existing["Id"].as_str().unwrap_or_default().to_string();
    // An Id in the body is tolerated only when it names this same record.
    if let Some(k) = body.keys().find(|k| k.eq_ignore_ascii_case("Id")).cloned() {
        let same = body[&k]
            .as_str()
            .and_then(ids::key)
            .is_some_and(|key| existing_id.starts_with(key));
        if !same {
            return Err(ApiError::dml(
                "INVALID_FIELD",
                "The Id field should not be specified in the sobject data.",
                vec![],
            ));
        }
        body.remove(&k);
    }
    let changes = prepare(obj, body, Mode::Update)?;
    update_checked(store, obj, existing, changes, ctx)
}

fn update_checked(
    store: &mut Store,
    obj: &'static ObjectDef,
    existing: Record,
    changes: Changes,
    ctx: &WriteCtx,
) -> Result<(), ApiError> {
    let nulled: Vec<String> = changes
        .values
        .iter()
        .filter(|(f, v)| v.is_null() && !f.nillable)
        .map(|(f, _)| f.name.to_string())
        .collect();
    if !nulled.is_empty() {
        return Err(ApiError::dml(
            "REQUIRED_FIELD_MISSING",
            format!("Required fields are missing: [{}]", nulled.join(", ")),
            nulled,
        ));
    }
    let id = existing["Id"].as_str().unwrap_or_default().to_string();
    let mut record = existing;
    for (f, v) in &changes.values {
        record.insert(f.name.to_string(), v.clone());
    }
    check_values(store, obj, &changes.values, &record, Some(&id), ctx)?;
    derive_fields(obj, &mut record);
    record.insert("LastModifiedDate".into(), json!(ctx.now));
    record.insert("SystemModstamp".into(), json!(ctx.now));
    store.insert(obj.name, record);
    Ok(())
}

pub fn upsert(
    store: &mut Store,
    obj: &'static ObjectDef,
    ext_field: &str,
    value: &str,
    mut body: Map<String, Value>,
    ctx: &WriteCtx,
) -> Result<Upserted, ApiError> {
    let not_found = || {
        ApiError::new(
            404,
            "NOT_FOUND",
            format!("Provided external ID field does not exist or is not accessible: {ext_field}"),
        )
    };
    // Upsert on Id updates a record that exists; it cannot invent one.
    if ext_field.eq_ignore_ascii_case("Id") {
        store.get(obj.name, value).ok_or_else(ApiError::not_found)?;
        update(store, obj, value, body, ctx)?;
        let id = store.get(obj.name, value).expect("just updated")["Id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        return Ok(Upserted::Updated(id));
    }
    let field = obj
        .field(ext_field)
        .filter(|f| f.external_id)
        .ok_or_else(not_found)?;

    if let Some(k) = body
        .keys()
        .find(|k| k.eq_ignore_ascii_case(field.name))
        .cloned()
    {
        let same = match &body[&k] {
            Value::String(s) => s == value,
            Value::Number(n) => n.to_string() == value,
            _ => false,
        };
        if !same {
            return Err(ApiError::dml(
                "INVALID_FIELD",
                format!(
                    "The value of {} in the body does not match the external id value in the URL: {value}",
                    field.name
                ),
                vec![field.name.to_string()],
            ));
        }
        body.remove(&k);
    }

    let matches: Vec<Record> = store
        .table(obj.name)
        .filter(|r| {
            r.get(field.name)
                .and_then(Value::as_str)
                .is_some_and(|v| v.eq_ignore_ascii_case(value))
        })
        .cloned()
        .collect();
    match matches.len() {
        0 => {
            if body.keys().any(|k| k.eq_ignore_ascii_case("Id")) {
                return Err(ApiError::dml(
                    "INVALID_FIELD",
                    "The Id field should not be specified in the sobject data.",
                    vec![],
                ));
            }
            body.insert(field.name.to_string(), json!(value));
            let changes = prepare(obj, body, Mode::Create)?;
            insert_checked(store, obj, changes, ctx).map(Upserted::Created)
        }
        1 => {
            let existing = matches.into_iter().next().expect("one match");
            let id = existing["Id"].as_str().unwrap_or_default().to_string();
            if body.keys().any(|k| k.eq_ignore_ascii_case("Id")) {
                return Err(ApiError::dml(
                    "INVALID_FIELD",
                    "The Id field should not be specified in the sobject data.",
                    vec![],
                ));
            }
            let changes = prepare(obj, body, Mode::Update)?;
            update_checked(store, obj, existing, changes, ctx)?;
            Ok(Upserted::Updated(id))
        }
        _ => Ok(Upserted::Ambiguous(
            matches
                .iter()
                .filter_map(|r| r["Id"].as_str().map(str::to_string))
                .collect(),
        )),
    }
}

pub fn delete(store: &mut Store, obj: &'static ObjectDef, id: &str) -> Result<(), ApiError> {
    store
        .remove(obj.name, id)
        .map(|_| ())
        .ok_or_else(ApiError::not_found)
}

/// Resolves names, enforces writability and converts values to their stored
/// JSON form. Base64 fields are decoded into the blob rather than stored.
fn prepare(
    obj: &'static ObjectDef,
    body: Map<String, Value>,
    mode: Mode,
) -> Result<Changes, ApiError> {
    let mut resolved = Vec::with_capacity(body.len());
    for (k, v) in body {
        // Clients echo back `attributes` from reads; the platform ignores it.
        if k == "attributes" {
            continue;
        }
        let f = obj.field(&k).ok_or_else(|| {
            ApiError::dml(
                "INVALID_FIELD",
                format!("No such column '{k}' on sobject of type {}", obj.name),
                vec![],
            )
        })?;
        resolved.push((f, v));
    }
    let read_only: Vec<String> = resolved
        .iter()
        .filter(|(f, _)| match mode {
            Mode::Create => !f.createable,
            Mode::Update => !f.updateable,
        })
        .map(|(f, _)| f.name.to_string())
        .collect();
    if !read_only.is_empty() {
        return Err(ApiError::dml(
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            format!(
                "Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
                read_only.join(", ")
            ),
            read_only,
        ));
    }
    let mut changes = Changes {
        values: Vec::with_capacity(resolved.len()),
        blob: None,
    };
    for (f, v) in resolved {
        if f.ftype == FieldType::Base64 {
            if let Some(bytes) = decode_base64_field(f, &v)? {
                changes.blob = Some(bytes);
            }
            continue;
        }
        changes.values.push((f, coerce(f, v)?));
    }
    Ok(changes)
}

fn parser_error(f: &FieldDef, v: &Value) -> ApiError {
    ApiError::json_parser(format!(
        "Cannot deserialize instance of {} from value {v} or request may be missing a required field",
        f.ftype.as_str()
    ))
}

fn decode_base64_field(f: &FieldDef, v: &Value) -> Result<Option<Vec<u8>>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => {
            // MIME-style line breaks are common in base64 from other tools.
            let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            STANDARD
                .decode(compact)
                .map(Some)
                .map_err(|_| parser_error(f, &json!("<invalid base64>")))
        }
        _ => Err(parser_error(f, v)),
    }
}

static DATETIME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?$")
        .expect("valid regex")
});

fn coerce(f: &FieldDef, v: Value) -> Result<Value, ApiError> {
    if v.is_null() {
        return Ok(v);
    }
    match f.ftype {
        FieldType::String | FieldType::Textarea | FieldType::Picklist | FieldType::Phone => {
            match v {
                Value::String(_) => Ok(v),
                // The platform stringifies scalars sent to text fields.
                Value::Number(n) => Ok(json!(n.to_string())),
                Value::Bool(b) => Ok(json!(b.to_string())),
                _ => Err(parser_error(f, &v)),
            }
        }
        FieldType::Id | FieldType::Reference => match v {
            Value::String(_) => Ok(v),
            _ => Err(parser_error(f, &v)),
        },
        FieldType::Int => match &v {
            Value::Number(n) if n.is_i64() => Ok(v),
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map(|n| json!(n))
                .map_err(|_| parser_error(f, &v)),
            _ => Err(parser_error(f, &v)),
        },
        FieldType::Date => match &v {
            Value::String(s) if is_date(s) => Ok(v),
            _ => Err(parser_error(f, &v)),
        },
        FieldType::Datetime => match &v {
            Value::String(s) if DATETIME.is_match(s) => Ok(v),
            _ => Err(parser_error(f, &v)),
        },
        FieldType::Base64 => Err(parser_error(f, &v)),
        FieldType::Boolean => match &v {
            Value::Bool(_) => Ok(v),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(json!(true)),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(json!(false)),
            _ => Err(parser_error(f, &v)),
        },
    }
}

fn is_date(s: &str) -> bool {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &fmt).is_ok()
}

fn check_values(
    store: &Store,
    obj: &'static ObjectDef,
    changed: &[(&'static FieldDef, Value)],
    record: &Record,
    self_id: Option<&str>,
    ctx: &WriteCtx,
) -> Result<(), ApiError> {
    for (f, v) in changed {
        let Some(s) = v.as_str() else { continue };
        if f.ftype.is_text() && f.length > 0 {
            let n = s.chars().count();
            if n > f.length as usize {
                // Echo at most `length` characters (capped) of the value, as
                // the platform's message shows a truncated copy.
                let shown: String = s.chars().take((f.length as usize).min(255)).collect();
                return Err(ApiError::dml(
                    "STRING_TOO_LONG",
                    format!(
                        "{}: data value too large: {shown} (max length={})",
                        f.name, f.length
                    ),
                    vec![f.name.to_string()],
                ));
            }
        }
        if f.ftype == FieldType::Picklist && f.restricted_picklist && !f.allows(s) {
            return Err(ApiError::dml(
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                format!("bad value for restricted picklist field: {s}"),
                vec![f.name.to_string()],
            ));
        }
        if f.ftype == FieldType::Reference {
            check_reference(store, f, s)?;
        }
    }
    for rule in ctx.rules {
        if !rule.sobject.eq_ignore_ascii_case(obj.name) {
            continue;
        }
        let Some(f) = obj.field(&rule.field) else {
            continue;
        };
        let hit = record
            .get(f.name)
            .and_then(Value::as_str)
            .is_some_and(|s| s.contains(&rule.forbidden));
        if hit {
            return Err(ApiError::dml(
                "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                rule.message.clone(),
                vec![f.name.to_string()],
            ));
        }
    }
    for (f, v) in changed {
        let Some(s) = v.as_str().filter(|_| f.unique) else {
            continue;
        };
        let clash = store.table(obj.name).find(|r| {
            let rid = r["Id"].as_str().unwrap_or_default();
            self_id != Some(rid)
                && r.get(f.name)
                    .and_then(Value::as_str)
                    .is_some_and(|other| other.eq_ignore_ascii_case(s))
        });
        if let Some(other) = clash {
            return Err(ApiError::dml(
                "DUPLICATE_VALUE",
                format!(
                    "duplicate value found: {} duplicates value on record with id: {}",
                    f.name,
                    other["Id"].as_str().unwrap_or_default()
                ),
                vec![],
            ));
        }
    }
    Ok(())
}

fn check_reference(store: &Store, f: &FieldDef, value: &str) -> Result<(), ApiError> {
    if !ids::is_well_formed(value) {
        return Err(ApiError::dml(
            "MALFORMED_ID",
            format!("{}: id value of incorrect type: {value}", f.label),
            vec![f.name.to_string()],
        ));
    }
    let ok = store
        .find(value)
        .is_some_and(|(target, _)| f.reference_to.contains(&target.name));
    if ok {
        Ok(())
    } else {
        Err(ApiError::dml(
            "INVALID_CROSS_REFERENCE_KEY",
            "invalid cross reference id",
            vec![f.name.to_string()],
        ))
    }
}

/// FileExtension, ContentSize and the Title fallback come from the upload.
fn derive_file_fields(record: &mut Record, blob: Option<&[u8]>) {
    let path = record
        .get("PathOnClient")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let file_name = path.rsplit(['/', '\\']).next().unwrap_or_default();
    let (stem, ext) = match file_name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && !ext.is_empty() => {
            (stem, Some(ext.to_ascii_lowercase()))
        }
        _ => (file_name, None),
    };
    if record.get("Title").is_none_or(Value::is_null) && !file_name.is_empty() {
        record.insert("Title".into(), json!(stem));
    }
    record.insert("FileExtension".into(), json!(ext));
    record.insert("ContentSize".into(), json!(blob.map_or(0, <[u8]>::len)));
}

/// Every version belongs to a ContentDocument; a first version makes the
/// document and, with FirstPublishLocationId, links it to that record.
fn attach_document(store: &mut Store, version: &mut Record, now: &str) {
    let version_id = version["Id"].clone();
    let doc_fields = |doc: &mut Record| {
        doc.insert("Title".into(), version["Title"].clone());
        doc.insert("LatestPublishedVersionId".into(), version_id.clone());
        doc.insert("FileExtension".into(), version["FileExtension"].clone());
        doc.insert("ContentSize".into(), version["ContentSize"].clone());
        doc.insert("LastModifiedDate".into(), json!(now));
        doc.insert("SystemModstamp".into(), json!(now));
    };
    if let Some(existing) = version
        .get("ContentDocumentId")
        .and_then(Value::as_str)
        .map(str::to_string)
        && let Some(doc) = store.get_mut("ContentDocument", &existing)
    {
        doc_fields(doc);
        let doc_id = doc["Id"].clone();
        version.insert("ContentDocumentId".into(), doc_id);
        store.dirty = true;
        return;
    }
    let doc_id = store.mint("069");
    let mut doc = Record::new();
    doc.insert("Id".into(), json!(doc_id));
    doc.insert("CreatedDate".into(), json!(now));
    doc_fields(&mut doc);
    store.insert("ContentDocument", doc);
    version.insert("ContentDocumentId".into(), json!(doc_id));

    if let Some(parent) = version
        .get("FirstPublishLocationId")
        .and_then(Value::as_str)
    {
        let parent_id = store
            .find(parent)
            .and_then(|(_, r)| r["Id"].as_str().map(str::to_string))
            .unwrap_or_else(|| parent.to_string());
        // Store the canonical 18-char id even if the client sent 15.
        version.insert("FirstPublishLocationId".into(), json!(parent_id));
        let link_id = store.mint("06A");
        let mut link = Record::new();
        link.insert("Id".into(), json!(link_id));
        link.insert("ContentDocumentId".into(), json!(doc_id));
        link.insert("LinkedEntityId".into(), json!(parent_id));
        link.insert("ShareType".into(), json!("V"));
        link.insert("Visibility".into(), json!("AllUsers"));
        for f in ["CreatedDate", "LastModifiedDate", "SystemModstamp"] {
            link.insert(f.into(), json!(now));
        }
        store.insert("ContentDocumentLink", link);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::describe;

    fn ctx() -> WriteCtx<'static> {
        WriteCtx {
            rules: &[],
            now: "2026-01-05T09:00:00.000+0000",
        }
    }

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn case_comments_follow_the_contract_and_is_closed_follows_status() {
        let mut s = Store::new();
        let case = describe::object("Case").unwrap();
        let comment = describe::object("CaseComment").unwrap();
        let id = create(&mut s, case, body(json!({"Subject": "Leak"})), None, &ctx()).unwrap();
        assert_eq!(s.get("Case", &id).unwrap()["IsClosed"], false);
        let c = create(
            &mut s,
            comment,
            body(json!({"ParentId": id, "CommentBody": "Seen again [fieldgate X]", "IsPublished": false})),
            None,
            &ctx(),
        )
        .unwrap();
        assert!(c.starts_with("00a") && c.len() == 18);
        let r = s.get("CaseComment", &c).unwrap();
        assert_eq!(
            (r["ParentId"].as_str(), &r["IsPublished"]),
            (Some(id.as_str()), &json!(false))
        );
        // IsPublished defaults to false, as a boolean.
        let d = create(&mut s, comment, body(json!({"ParentId": id})), None, &ctx()).unwrap();
        assert_eq!(
            s.get("CaseComment", &d).unwrap()["IsPublished"],
            json!(false)
        );
        // Required ParentId, a ParentId that is no Case, a malformed one.
        let e = create(
            &mut s,
            comment,
            body(json!({"CommentBody": "x"})),
            None,
            &ctx(),
        )
        .unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.fields.clone()),
            ("REQUIRED_FIELD_MISSING", Some(vec!["ParentId".to_string()]))
        );
        let account = s.mint("001");
        let e = create(
            &mut s,
            comment,
            body(json!({"ParentId": account})),
            None,
            &ctx(),
        )
        .unwrap_err();
        assert_eq!(e.code, "INVALID_CROSS_REFERENCE_KEY", "{e:?}");
        let e = create(
            &mut s,
            comment,
            body(json!({"ParentId": "nope"})),
            None,
            &ctx(),
        )
        .unwrap_err();
        assert_eq!(e.code, "MALFORMED_ID");
        let e = create(
            &mut s,
            comment,
            body(json!({"ParentId": id, "CommentBody": "x".repeat(4001)})),
            None,
            &ctx(),
        )
        .unwrap_err();
        assert_eq!(e.code, "STRING_TOO_LONG");
        let e = create(
            &mut s,
            comment,
            body(json!({"ParentId": id, "IsPublished": "maybe"})),
            None,
            &ctx(),
        )
        .unwrap_err();
        assert_eq!(e.code, "JSON_PARSER_ERROR", "{e:?}");
        // IsClosed is the platform's: derived, never written.
        let e = update(&mut s, case, &id, body(json!({"IsClosed": true})), &ctx()).unwrap_err();
        assert_eq!(e.code, "INVALID_FIELD_FOR_INSERT_UPDATE");
        update(&mut s, case, &id, body(json!({"Status": "Closed"})), &ctx()).unwrap();
        assert_eq!(s.get("Case", &id).unwrap()["IsClosed"], true);
    }

    #[test]
    fn create_applies_defaults_and_case_number() {
        let mut s = Store::new();
        let case = describe::object("Case").unwrap();
        let id = create(&mut s, case, body(json!({"subject": "Leak"})), None, &ctx()).unwrap();
        let r = s.get("Case", &id).unwrap();
        assert_eq!(r["Subject"], "Leak");
        assert_eq!(r["Status"], "New");
        assert_eq!(r["Priority"], "Medium");
        assert_eq!(r["CaseNumber"], "00001001");
        assert!(id.starts_with("500") && id.len() == 18);
    }

    #[test]
    fn work_orders_get_their_number_on_insert_and_upsert_insert_only() {
        let mut s = Store::new();
        let wo = describe::object("WorkOrder").unwrap();
        let id = create(
            &mut s,
            wo,
            body(json!({"Subject": "Fix fan"})),
            None,
            &ctx(),
        )
        .unwrap();
        let r = s.get("WorkOrder", &id).unwrap();
        assert_eq!(r["WorkOrderNumber"], "00000001");
        assert_eq!(
            (r["Status"].as_str(), r["Priority"].as_str()),
            (Some("New"), Some("Low"))
        );
        assert!(id.starts_with("0WO") && id.len() == 18);
        // An upsert that inserts numbers the next; one that updates keeps it.
        let ext = "Fieldgate_Proposal_Id__c";
        let key = "01JD0000000000000000000001";
        let Upserted::Created(second) =
            upsert(&mut s, wo, ext, key, body(json!({"Subject": "a"})), &ctx()).unwrap()
        else {
            panic!("a new external id inserts");
        };
        assert_eq!(
            s.get("WorkOrder", &second).unwrap()["WorkOrderNumber"],
            "00000002"
        );
        let again = upsert(&mut s, wo, ext, key, body(json!({"Subject": "b"})), &ctx()).unwrap();
        assert!(matches!(again, Upserted::Updated(ref i) if *i == second));
        assert_eq!(
            s.get("WorkOrder", &second).unwrap()["WorkOrderNumber"],
            "00000002"
        );
        // Never written by a client, on create or update.
        for e in [
            create(
                &mut s,
                wo,
                body(json!({"WorkOrderNumber": "9"})),
                None,
                &ctx(),
            )
            .unwrap_err(),
            update(
                &mut s,
                wo,
                &id,
                body(json!({"WorkOrderNumber": "9"})),
                &ctx(),
            )
            .unwrap_err(),
        ] {
            assert_eq!(e.code, "INVALID_FIELD_FOR_INSERT_UPDATE");
            assert_eq!(e.fields, Some(vec!["WorkOrderNumber".to_string()]));
        }
        // A restricted picklist refuses what the org does not have; the
        // work type must exist.
        let e = create(
            &mut s,
            wo,
            body(json!({"Priority": "Urgent"})),
            None,
            &ctx(),
        )
        .unwrap_err();
        assert_eq!(e.code, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST");
        let e = create(
            &mut s,
            wo,
            body(json!({"WorkTypeId": "08q000000000099AAA"})),
            None,
            &ctx(),
        )
        .unwrap_err();
        assert_eq!(e.fields, Some(vec!["WorkTypeId".to_string()]));
    }

    #[test]
    fn read_only_and_unknown_fields_are_rejected() {
        let mut s = Store::new();
        let case = describe::object("Case").unwrap();
        let e = create(
            &mut s,
            case,
            body(json!({"Subject": "x", "CaseNumber": "1"})),
            None,
            &ctx(),
        )
        .unwrap_err();
        assert_eq!(e.code, "INVALID_FIELD_FOR_INSERT_UPDATE");
        assert_eq!(e.fields, Some(vec!["CaseNumber".to_string()]));
        let e = create(
            &mut s,
            case,
            body(json!({"Subject": "x", "Bogus": 1})),
            None,
            &ctx(),
        )
        .unwrap_err();
        assert_eq!(e.message, "No such column 'Bogus' on sobject of type Case");
    }

    #[test]
    fn update_cannot_null_a_required_field() {
        let mut s = Store::new();
        let case = describe::object("Case").unwrap();
        let id = create(&mut s, case, body(json!({"Subject": "a"})), None, &ctx()).unwrap();
        let e = update(&mut s, case, &id, body(json!({"Subject": null})), &ctx()).unwrap_err();
        assert_eq!(e.code, "REQUIRED_FIELD_MISSING");
        update(
            &mut s,
            case,
            &id[..15],
            body(json!({"Subject": "b"})),
            &ctx(),
        )
        .unwrap();
        assert_eq!(s.get("Case", &id).unwrap()["Subject"], "b");
    }
}
