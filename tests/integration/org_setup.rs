//! The org setup in `infra/salesforce/` (a Salesforce DX project) says what
//! fieldgate needs and not a permission more: the external id field is an
//! External ID and Unique, the permission set grants exactly the list, never
//! delete, never view/modify all, and covers every field the built-in
//! workflow writes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("infra/salesforce")
}

fn read(rel: &str) -> String {
    let p = root().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Text of the direct child `name` of `node`.
fn child<'a>(node: roxmltree::Node<'a, 'a>, name: &str) -> Option<&'a str> {
    node.children()
        .find(|c| c.has_tag_name(name))
        .and_then(|c| c.text())
}

const NS: &str = "http://soap.sforce.com/2006/04/metadata";

#[test]
fn the_project_is_a_deployable_dx_project() {
    let p: serde_json::Value = serde_json::from_str(&read("sfdx-project.json")).unwrap();
    let dirs = p["packageDirectories"].as_array().unwrap();
    assert!(
        dirs.iter()
            .any(|d| d["path"] == "force-app" && d["default"] == true)
    );
    assert_eq!(p["sourceApiVersion"], "66.0");
}

#[test]
fn the_external_id_field_is_text_26_external_and_unique() {
    let text =
        read("force-app/main/default/objects/Case/fields/Fieldgate_Proposal_Id__c.field-meta.xml");
    let doc = roxmltree::Document::parse(&text).unwrap();
    let f = doc.root_element();
    assert!(f.has_tag_name((NS, "CustomField")));
    assert_eq!(child(f, "fullName"), Some("Fieldgate_Proposal_Id__c"));
    assert_eq!(child(f, "type"), Some("Text"));
    assert_eq!(child(f, "length"), Some("26"));
    assert_eq!(child(f, "externalId"), Some("true"));
    assert_eq!(child(f, "unique"), Some("true"));
    // The workflow upserts by exactly this field.
    let wf = fieldgate::workflows::builtin();
    let wf = wf.iter().next().unwrap();
    assert_eq!(
        wf.external_id_field.as_deref(),
        Some("Fieldgate_Proposal_Id__c")
    );
}

#[test]
fn the_permission_set_grants_exactly_what_fieldgate_needs() {
    let text =
        read("force-app/main/default/permissionsets/Fieldgate_Integration.permissionset-meta.xml");
    let doc = roxmltree::Document::parse(&text).unwrap();
    let ps = doc.root_element();
    assert!(ps.has_tag_name((NS, "PermissionSet")));
    // Only these kinds of grants exist: no user, app, class, tab or record
    // type permissions sneak in.
    let allowed: BTreeSet<&str> = [
        "description",
        "label",
        "hasActivationRequired",
        "objectPermissions",
        "fieldPermissions",
    ]
    .into();
    for el in ps.children().filter(|c| c.is_element()) {
        assert!(
            allowed.contains(el.tag_name().name()),
            "unexpected grant <{}>",
            el.tag_name().name()
        );
    }

    // Objects: (create, read, edit); delete and view/modify all never.
    let mut objects = BTreeMap::new();
    for op in ps
        .children()
        .filter(|c| c.has_tag_name("objectPermissions"))
    {
        let flag = |k: &str| child(op, k) == Some("true");
        for never in ["allowDelete", "viewAllRecords", "modifyAllRecords"] {
            assert_eq!(child(op, never), Some("false"), "{never} must be false");
        }
        let name = child(op, "object").unwrap().to_owned();
        let prev = objects.insert(
            name.clone(),
            (flag("allowCreate"), flag("allowRead"), flag("allowEdit")),
        );
        assert!(prev.is_none(), "{name} listed twice");
    }
    let expected: BTreeMap<String, (bool, bool, bool)> = [
        ("Account".to_owned(), (false, true, false)),
        ("Asset".to_owned(), (false, true, false)),
        ("Case".to_owned(), (true, true, true)),
    ]
    .into();
    assert_eq!(objects, expected);

    // Fields: every Case field the workflow writes, editable; the Asset
    // fields the context query reads, read-only; nothing else.
    let mut fields = BTreeMap::new();
    for fp in ps.children().filter(|c| c.has_tag_name("fieldPermissions")) {
        let name = child(fp, "field").unwrap().to_owned();
        let editable = child(fp, "editable") == Some("true");
        assert_eq!(child(fp, "readable"), Some("true"), "{name}");
        assert!(
            fields.insert(name.clone(), editable).is_none(),
            "{name} twice"
        );
    }
    let wf = fieldgate::workflows::builtin();
    let wf = wf.iter().next().unwrap();
    let mut written: BTreeSet<String> = wf.fields.iter().map(|f| f.name.clone()).collect();
    written.extend(wf.constants.keys().cloned());
    written.extend(wf.bindings.keys().cloned());
    written.extend(wf.external_id_field.clone());
    let mut want: BTreeMap<String, bool> = written
        .into_iter()
        .map(|f| (format!("{}.{f}", wf.object), true))
        .collect();
    want.insert("Asset.SerialNumber".into(), false);
    want.insert("Asset.LocationId".into(), false);
    assert_eq!(fields, want);
}
