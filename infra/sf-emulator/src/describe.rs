//! The demo org's metadata. Everything the emulator validates (required,
//! lengths, picklists, references, external ids) is driven by these
//! definitions, and `describe` serialises exactly the same definitions, so a
//! client that trusts the describe call never disagrees with the server.

use serde_json::{Value, json};
use std::sync::LazyLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Id,
    String,
    Textarea,
    Picklist,
    Reference,
    Datetime,
    Date,
    Phone,
    Int,
    Base64,
    Boolean,
}

impl FieldType {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Id => "id",
            FieldType::String => "string",
            FieldType::Textarea => "textarea",
            FieldType::Picklist => "picklist",
            FieldType::Reference => "reference",
            FieldType::Datetime => "datetime",
            FieldType::Date => "date",
            FieldType::Phone => "phone",
            FieldType::Int => "int",
            FieldType::Base64 => "base64",
            FieldType::Boolean => "boolean",
        }
    }

    /// Types whose values are free text with a maximum `length`.
    pub fn is_text(self) -> bool {
        matches!(
            self,
            FieldType::String | FieldType::Textarea | FieldType::Phone | FieldType::Picklist
        )
    }
}

#[derive(Debug, Clone)]
pub struct FieldDef {
    pub name: &'static str,
    pub label: &'static str,
    pub ftype: FieldType,
    pub length: u32,
    pub nillable: bool,
    pub createable: bool,
    pub updateable: bool,
    pub defaulted_on_create: bool,
    pub default_value: Option<&'static str>,
    pub restricted_picklist: bool,
    pub external_id: bool,
    pub unique: bool,
    pub custom: bool,
    pub auto_number: bool,
    pub reference_to: Vec<&'static str>,
    pub relationship_name: Option<&'static str>,
    pub picklist: Vec<&'static str>,
    /// Retired values: listed by describe with `active: false`, refused on write.
    pub inactive: Vec<&'static str>,
}

impl FieldDef {
    fn new(name: &'static str, label: &'static str, ftype: FieldType) -> FieldDef {
        let length = match ftype {
            FieldType::Id | FieldType::Reference => 18,
            FieldType::String | FieldType::Picklist => 255,
            FieldType::Textarea => 32_000,
            FieldType::Phone => 40,
            _ => 0,
        };
        FieldDef {
            name,
            label,
            ftype,
            length,
            nillable: true,
            createable: true,
            updateable: true,
            defaulted_on_create: false,
            default_value: None,
            restricted_picklist: false,
            external_id: false,
            unique: false,
            custom: name.ends_with("__c"),
            auto_number: false,
            reference_to: Vec::new(),
            relationship_name: None,
            picklist: Vec::new(),
            inactive: Vec::new(),
        }
    }

    fn len(mut self, n: u32) -> Self {
        self.length = n;
        self
    }

    /// Not nillable and not defaulted: must be supplied on create.
    fn required(mut self) -> Self {
        self.nillable = false;
        self
    }

    /// Maintained by the platform: never writable.
    fn system(mut self) -> Self {
        self.nillable = false;
        self.createable = false;
        self.updateable = false;
        self.defaulted_on_create = true;
        self
    }

    fn read_only(mut self) -> Self {
        self.createable = false;
        self.updateable = false;
        self
    }

    fn create_only(mut self) -> Self {
        self.updateable = false;
        self
    }

    fn values(mut self, values: &[&'static str]) -> Self {
        self.picklist = values.to_vec();
        self
    }

    fn retired(mut self, values: &[&'static str]) -> Self {
        self.inactive = values.to_vec();
        self
    }

    fn default(mut self, v: &'static str) -> Self {
        self.default_value = Some(v);
        self.defaulted_on_create = true;
        self
    }

    fn restricted(mut self) -> Self {
        self.restricted_picklist = true;
        self
    }

    fn refs(mut self, to: &[&'static str], relationship: &'static str) -> Self {
        self.reference_to = to.to_vec();
        self.relationship_name = Some(relationship);
        self
    }

    fn external_id(mut self, unique: bool) -> Self {
        self.external_id = true;
        self.unique = unique;
        self
    }

    pub fn to_json(&self) -> Value {
        let picklist: Vec<Value> = self
            .picklist
            .iter()
            .map(|v| (v, true))
            .chain(self.inactive.iter().map(|v| (v, false)))
            .map(|(v, active)| {
                json!({
                    "value": v,
                    "label": v,
                    "active": active,
                    "defaultValue": self.default_value == Some(*v),
                    "validFor": null,
                })
            })
            .collect();
        json!({
            "name": self.name,
            "label": self.label,
            "type": self.ftype.as_str(),
            "length": self.length,
            "nillable": self.nillable,
            "createable": self.createable,
            "updateable": self.updateable,
            "defaultedOnCreate": self.defaulted_on_create,
            "defaultValue": self.default_value,
            "restrictedPicklist": self.restricted_picklist,
            "externalId": self.external_id,
            "unique": self.unique,
            "custom": self.custom,
            "calculated": false,
            "autoNumber": self.auto_number,
            "idLookup": self.ftype == FieldType::Id || self.external_id,
            "referenceTo": self.reference_to,
            "relationshipName": self.relationship_name,
            "picklistValues": picklist,
            "filterable": self.ftype != FieldType::Base64 && self.ftype != FieldType::Textarea,
            "sortable": self.ftype != FieldType::Base64 && self.ftype != FieldType::Textarea,
        })
    }

    /// Whether `value` is an active picklist value (exact match, like the platform).
    pub fn allows(&self, value: &str) -> bool {
        self.picklist.contains(&value)
    }
}

#[derive(Debug, Clone)]
pub struct ObjectDef {
    pub name: &'static str,
    pub label: &'static str,
    pub label_plural: &'static str,
    pub key_prefix: &'static str,
    pub createable: bool,
    pub updateable: bool,
    pub fields: Vec<FieldDef>,
}

impl ObjectDef {
    /// Field lookup is case-insensitive, as it is in SOQL and in sObject bodies.
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// The reference field behind a relationship name (`Account` → `AccountId`).
    pub fn relationship(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| {
            f.relationship_name
                .is_some_and(|r| r.eq_ignore_ascii_case(name))
        })
    }

    fn urls(&self, version: &str) -> Value {
        let base = format!("/services/data/v{version}/sobjects/{}", self.name);
        json!({
            "sobject": base,
            "describe": format!("{base}/describe"),
            "rowTemplate": format!("{base}/{{ID}}"),
        })
    }

    /// The short form used by `GET /sobjects/` and `GET /sobjects/{Obj}`.
    pub fn summary_json(&self, version: &str) -> Value {
        json!({
            "name": self.name,
            "label": self.label,
            "labelPlural": self.label_plural,
            "keyPrefix": self.key_prefix,
            "custom": false,
            "createable": self.createable,
            "updateable": self.updateable,
            "deletable": self.createable,
            "queryable": true,
            "retrieveable": true,
            "searchable": true,
            "urls": self.urls(version),
        })
    }

    pub fn describe_json(&self, version: &str) -> Value {
        let mut v = self.summary_json(version);
        let obj = v.as_object_mut().expect("object");
        obj.insert(
            "fields".into(),
            Value::Array(self.fields.iter().map(FieldDef::to_json).collect()),
        );
        obj.insert("childRelationships".into(), json!([]));
        obj.insert("recordTypeInfos".into(), json!([]));
        v
    }
}

/// Fields every object carries.
fn system_fields(mut rest: Vec<FieldDef>) -> Vec<FieldDef> {
    let mut fields = vec![FieldDef::new("Id", "Record ID", FieldType::Id).system()];
    fields.append(&mut rest);
    fields.extend([
        FieldDef::new("CreatedDate", "Created Date", FieldType::Datetime).system(),
        FieldDef::new(
            "LastModifiedDate",
            "Last Modified Date",
            FieldType::Datetime,
        )
        .system(),
        FieldDef::new("SystemModstamp", "System Modstamp", FieldType::Datetime).system(),
    ]);
    fields
}

/// Objects a file may be first published to.
const FILE_PARENTS: &[&str] = &["Account", "Asset", "Case", "Location", "WorkOrder"];

static SCHEMA: LazyLock<Vec<ObjectDef>> = LazyLock::new(|| {
    use FieldType as T;
    vec![
        ObjectDef {
            name: "Account",
            label: "Account",
            label_plural: "Accounts",
            key_prefix: "001",
            createable: true,
            updateable: true,
            fields: system_fields(vec![
                FieldDef::new("Name", "Account Name", T::String).required(),
                FieldDef::new("BillingCity", "Billing City", T::String).len(40),
                FieldDef::new("Phone", "Account Phone", T::Phone),
                FieldDef::new("Industry", "Industry", T::Picklist).values(&[
                    "Agriculture",
                    "Construction",
                    "Energy",
                    "Healthcare",
                    "Manufacturing",
                    "Retail",
                    "Technology",
                    "Transportation",
                    "Other",
                ]),
            ]),
        },
        ObjectDef {
            name: "Location",
            label: "Location",
            label_plural: "Locations",
            key_prefix: "131",
            createable: true,
            updateable: true,
            fields: system_fields(vec![
                FieldDef::new("Name", "Location Name", T::String).required(),
            ]),
        },
        ObjectDef {
            name: "Asset",
            label: "Asset",
            label_plural: "Assets",
            key_prefix: "02i",
            createable: true,
            updateable: true,
            fields: system_fields(vec![
                FieldDef::new("Name", "Asset Name", T::String).required(),
                FieldDef::new("SerialNumber", "Serial Number", T::String).len(80),
                FieldDef::new("Status", "Status", T::Picklist).values(&[
                    "Purchased",
                    "Shipped",
                    "Installed",
                    "Registered",
                    "Obsolete",
                ]),
                FieldDef::new("InstallDate", "Install Date", T::Date),
                FieldDef::new("AccountId", "Account ID", T::Reference)
                    .refs(&["Account"], "Account"),
                FieldDef::new("LocationId", "Location ID", T::Reference)
                    .refs(&["Location"], "Location"),
                FieldDef::new("Description", "Description", T::Textarea),
                // A non-unique external id, as orgs often have for legacy keys;
                // it is what makes an upsert answer 300 on several matches.
                FieldDef::new("Asset_Tag__c", "Asset Tag", T::String)
                    .len(40)
                    .external_id(false),
            ]),
        },
        ObjectDef {
            name: "Case",
            label: "Case",
            label_plural: "Cases",
            key_prefix: "500",
            createable: true,
            updateable: true,
            fields: system_fields(vec![
                {
                    let mut f = FieldDef::new("CaseNumber", "Case Number", T::String)
                        .len(30)
                        .system();
                    f.auto_number = true;
                    f
                },
                // Required on create in this demo org (a page-layout rule made
                // into a field constraint so the API enforces it).
                FieldDef::new("Subject", "Subject", T::String).required(),
                FieldDef::new("Description", "Description", T::Textarea),
                FieldDef::new("Priority", "Priority", T::Picklist)
                    .values(&["High", "Medium", "Low"])
                    .default("Medium")
                    .restricted(),
                FieldDef::new("Type", "Case Type", T::Picklist).values(&[
                    "Mechanical",
                    "Electrical",
                    "Electronic",
                    "Structural",
                    "Other",
                ]),
                FieldDef::new("Reason", "Case Reason", T::Picklist).values(&[
                    "Installation",
                    "Equipment Complexity",
                    "Performance",
                    "Breakdown",
                    "Equipment Design",
                    "Feedback",
                    "Other",
                ]),
                FieldDef::new("Origin", "Case Origin", T::Picklist)
                    .values(&["Phone", "Email", "Web", "Field QR"])
                    .retired(&["Fax"]),
                FieldDef::new("Status", "Status", T::Picklist)
                    .values(&["New", "Working", "Escalated", "Closed"])
                    .default("New"),
                FieldDef::new("AssetId", "Asset ID", T::Reference).refs(&["Asset"], "Asset"),
                FieldDef::new("AccountId", "Account ID", T::Reference)
                    .refs(&["Account"], "Account"),
                // Derived from Status by the platform (a closed status).
                {
                    let mut f = FieldDef::new("IsClosed", "Closed", T::Boolean).read_only();
                    f.nillable = false;
                    f.defaulted_on_create = true;
                    f
                },
                FieldDef::new(
                    "Fieldgate_Proposal_Id__c",
                    "Fieldgate Proposal Id",
                    T::String,
                )
                .len(26)
                .external_id(true),
            ]),
        },
        // Field Service: a job to do on an asset (contract: objects learnt in
        // round two). The same external id as Case, for upserts.
        ObjectDef {
            name: "WorkOrder",
            label: "Work Order",
            label_plural: "Work Orders",
            key_prefix: "0WO",
            createable: true,
            updateable: true,
            fields: system_fields(vec![
                {
                    let mut f = FieldDef::new("WorkOrderNumber", "Work Order Number", T::String)
                        .len(30)
                        .system();
                    f.auto_number = true;
                    f
                },
                FieldDef::new("Subject", "Subject", T::String),
                FieldDef::new("Description", "Description", T::Textarea),
                FieldDef::new("Priority", "Priority", T::Picklist)
                    .values(&["Low", "Medium", "High", "Critical"])
                    .default("Low")
                    .restricted(),
                FieldDef::new("Status", "Status", T::Picklist)
                    .values(&[
                        "New",
                        "In Progress",
                        "On Hold",
                        "Completed",
                        "Closed",
                        "Cannot Complete",
                        "Canceled",
                    ])
                    .default("New")
                    .restricted(),
                FieldDef::new("AssetId", "Asset ID", T::Reference).refs(&["Asset"], "Asset"),
                FieldDef::new("AccountId", "Account ID", T::Reference)
                    .refs(&["Account"], "Account"),
                FieldDef::new("CaseId", "Case ID", T::Reference).refs(&["Case"], "Case"),
                FieldDef::new("WorkTypeId", "Work Type ID", T::Reference)
                    .refs(&["WorkType"], "WorkType"),
                FieldDef::new("LocationId", "Location ID", T::Reference)
                    .refs(&["Location"], "Location"),
                FieldDef::new(
                    "Fieldgate_Proposal_Id__c",
                    "Fieldgate Proposal Id",
                    T::String,
                )
                .len(26)
                .external_id(true),
            ]),
        },
        // The kinds of job an org does, each a record (Field Service).
        ObjectDef {
            name: "WorkType",
            label: "Work Type",
            label_plural: "Work Types",
            key_prefix: "08q",
            createable: true,
            updateable: true,
            fields: system_fields(vec![
                FieldDef::new("Name", "Work Type Name", T::String).required(),
                FieldDef::new("Description", "Description", T::Textarea),
                FieldDef::new("DurationType", "Duration Type", T::Picklist)
                    .values(&["Hours", "Minutes"])
                    .default("Hours")
                    .restricted(),
            ]),
        },
        ObjectDef {
            name: "CaseComment",
            label: "Case Comment",
            label_plural: "Case Comments",
            key_prefix: "00a",
            createable: true,
            updateable: true,
            fields: system_fields(vec![
                FieldDef::new("ParentId", "Parent ID", T::Reference)
                    .refs(&["Case"], "Parent")
                    .required()
                    .create_only(),
                FieldDef::new("CommentBody", "Body", T::Textarea).len(4000),
                {
                    let mut f =
                        FieldDef::new("IsPublished", "Published", T::Boolean).default("false");
                    f.nillable = false;
                    f
                },
            ]),
        },
        ObjectDef {
            name: "ContentVersion",
            label: "Content Version",
            label_plural: "Content Versions",
            key_prefix: "068",
            createable: true,
            updateable: true,
            fields: system_fields(vec![
                // Title falls back to the file name, hence defaulted.
                {
                    let mut f = FieldDef::new("Title", "Title", T::String).required();
                    f.defaulted_on_create = true;
                    f
                },
                FieldDef::new("PathOnClient", "Path On Client", T::String)
                    .len(500)
                    .required()
                    .create_only(),
                FieldDef::new("Description", "Description", T::Textarea).len(1000),
                FieldDef::new("VersionData", "Version Data", T::Base64)
                    .required()
                    .create_only(),
                FieldDef::new(
                    "FirstPublishLocationId",
                    "First Publish Location ID",
                    T::Reference,
                )
                .refs(FILE_PARENTS, "FirstPublishLocation")
                .create_only(),
                FieldDef::new("ContentDocumentId", "Content Document ID", T::Reference)
                    .refs(&["ContentDocument"], "ContentDocument")
                    .create_only(),
                FieldDef::new("FileExtension", "File Extension", T::String)
                    .len(40)
                    .read_only(),
                FieldDef::new("ContentSize", "Size", T::Int).read_only(),
            ]),
        },
        ObjectDef {
            name: "ContentDocument",
            label: "Content Document",
            label_plural: "Content Documents",
            key_prefix: "069",
            createable: false,
            updateable: true,
            fields: system_fields(vec![
                FieldDef::new("Title", "Title", T::String),
                FieldDef::new(
                    "LatestPublishedVersionId",
                    "Latest Published Version ID",
                    T::Reference,
                )
                .refs(&["ContentVersion"], "LatestPublishedVersion")
                .read_only(),
                FieldDef::new("FileExtension", "File Extension", T::String)
                    .len(40)
                    .read_only(),
                FieldDef::new("ContentSize", "Size", T::Int).read_only(),
            ]),
        },
        ObjectDef {
            name: "ContentDocumentLink",
            label: "Content Document Link",
            label_plural: "Content Document Links",
            key_prefix: "06A",
            createable: true,
            updateable: false,
            fields: system_fields(vec![
                FieldDef::new("ContentDocumentId", "Content Document ID", T::Reference)
                    .refs(&["ContentDocument"], "ContentDocument")
                    .required()
                    .create_only(),
                FieldDef::new("LinkedEntityId", "Linked Entity ID", T::Reference)
                    .refs(FILE_PARENTS, "LinkedEntity")
                    .required()
                    .create_only(),
                FieldDef::new("ShareType", "Share Type", T::Picklist)
                    .values(&["V", "C", "I"])
                    .default("V")
                    .create_only(),
                FieldDef::new("Visibility", "Visibility", T::Picklist)
                    .values(&["AllUsers", "InternalUsers", "SharedUsers"])
                    .default("AllUsers"),
            ]),
        },
    ]
});

pub fn objects() -> &'static [ObjectDef] {
    &SCHEMA
}

/// sObject names in REST paths and SOQL are case-insensitive.
pub fn object(name: &str) -> Option<&'static ObjectDef> {
    SCHEMA.iter().find(|o| o.name.eq_ignore_ascii_case(name))
}

pub fn object_by_prefix(prefix: &str) -> Option<&'static ObjectDef> {
    SCHEMA.iter().find(|o| o.key_prefix == prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_required_fields_follow_the_contract_rule() {
        let case = object("case").unwrap();
        let required: Vec<&str> = case
            .fields
            .iter()
            .filter(|f| f.createable && !f.nillable && !f.defaulted_on_create)
            .map(|f| f.name)
            .collect();
        assert_eq!(required, vec!["Subject"]);
        let closed = case.field("isclosed").unwrap();
        assert!(!closed.createable && !closed.updateable);
        assert_eq!(closed.to_json()["type"], "boolean");
        let comment = object("CaseComment").unwrap();
        assert_eq!(comment.key_prefix, "00a");
        let required: Vec<&str> = comment
            .fields
            .iter()
            .filter(|f| f.createable && !f.nillable && !f.defaulted_on_create)
            .map(|f| f.name)
            .collect();
        assert_eq!(required, vec!["ParentId"]);
        assert_eq!(comment.field("CommentBody").unwrap().length, 4000);
        assert_eq!(
            comment.field("ParentId").unwrap().reference_to,
            vec!["Case"]
        );
        let ext = case.field("fieldgate_proposal_id__c").unwrap();
        assert!(ext.external_id && ext.unique && ext.custom && ext.nillable);
        assert_eq!(ext.length, 26);
    }

    #[test]
    fn work_order_follows_the_contract() {
        let wo = object("workorder").unwrap();
        assert_eq!(wo.key_prefix, "0WO");
        let number = wo.field("WorkOrderNumber").unwrap();
        assert!(number.auto_number && !number.createable && !number.updateable);
        assert_eq!(
            wo.field("Priority").unwrap().picklist,
            ["Low", "Medium", "High", "Critical"]
        );
        for f in [
            "Subject",
            "Description",
            "Status",
            "AssetId",
            "AccountId",
            "CaseId",
            "LocationId",
        ] {
            assert!(wo.field(f).is_some(), "{f}");
        }
        assert_eq!(wo.field("WorkTypeId").unwrap().reference_to, ["WorkType"]);
        let ext = wo.field("Fieldgate_Proposal_Id__c").unwrap();
        assert!(ext.external_id && ext.unique);
        let required: Vec<&str> = wo
            .fields
            .iter()
            .filter(|f| f.createable && !f.nillable && !f.defaulted_on_create)
            .map(|f| f.name)
            .collect();
        assert!(required.is_empty(), "{required:?}");
        assert!(object("WorkType").unwrap().field("Name").is_some());
        // Photos can be published to a work order.
        let cv = object("ContentVersion").unwrap();
        assert!(
            cv.field("FirstPublishLocationId")
                .unwrap()
                .reference_to
                .contains(&"WorkOrder")
        );
    }

    #[test]
    fn key_prefixes_are_unique() {
        let mut p: Vec<_> = objects().iter().map(|o| o.key_prefix).collect();
        p.sort();
        p.dedup();
        assert_eq!(p.len(), objects().len());
    }
}
