//! The REST surface over real HTTP: auth, describe, writes, validation,
//! queries, files, composite.

use crate::common;
use crate::common::{V, only_error, start};
use serde_json::{Value, json};

#[tokio::test]
async fn token_good_and_bad_credentials() {
    let org = start().await;
    let good = org
        .token_call(&[
            ("grant_type", "client_credentials"),
            ("client_id", "fieldgate-dev-client"),
            ("client_secret", "fieldgate-dev-secret"),
        ])
        .await;
    assert_eq!(good.status, 200);
    let b = &good.body;
    assert_eq!(b["token_type"], "Bearer");
    assert_eq!(b["token_format"], "opaque");
    assert_eq!(b["instance_url"], json!(org.base));
    assert!(
        b["access_token"]
            .as_str()
            .unwrap()
            .starts_with("00D000000000001!")
    );
    assert!(b["signature"].as_str().is_some_and(|s| !s.is_empty()));
    let id = b["id"].as_str().unwrap();
    assert!(id.starts_with(&format!("{}/id/00D", org.base)), "{id}");
    assert!(id.contains("/005"), "{id}");
    let issued: u128 = b["issued_at"].as_str().unwrap().parse().unwrap();
    assert!(
        issued > 1_700_000_000_000,
        "issued_at is epoch ms: {issued}"
    );
    assert_ne!(b["access_token"], json!(org.token), "tokens are random");

    let bad_id = org
        .token_call(&[
            ("grant_type", "client_credentials"),
            ("client_id", "someone-else"),
            ("client_secret", "fieldgate-dev-secret"),
        ])
        .await;
    assert_eq!(bad_id.status, 400);
    assert_eq!(
        bad_id.body,
        json!({"error": "invalid_client_id", "error_description": "client identifier invalid"})
    );
    let bad_secret = org
        .token_call(&[
            ("grant_type", "client_credentials"),
            ("client_id", "fieldgate-dev-client"),
            ("client_secret", "nope"),
        ])
        .await;
    assert_eq!(bad_secret.status, 400);
    assert_eq!(
        bad_secret.body,
        json!({"error": "invalid_client", "error_description": "invalid client credentials"})
    );
    let password = org
        .token_call(&[
            ("grant_type", "password"),
            ("username", "u"),
            ("password", "p"),
        ])
        .await;
    assert_eq!(password.status, 400);
    assert_eq!(
        password.body,
        json!({"error": "unsupported_grant_type", "error_description": "grant type not supported"})
    );
    assert!(
        password.limit().is_some(),
        "token calls carry the limit header"
    );
}

#[tokio::test]
async fn configured_instance_url_is_used() {
    let org = common::start_with(fieldgate_sf_emulator::EmulatorConfig {
        instance_url: Some("https://fieldgate-demo.my.salesforce.com".into()),
        ..Default::default()
    })
    .await;
    let r = org
        .token_call(&[
            ("grant_type", "client_credentials"),
            ("client_id", "fieldgate-dev-client"),
            ("client_secret", "fieldgate-dev-secret"),
        ])
        .await;
    assert_eq!(
        r.body["instance_url"],
        "https://fieldgate-demo.my.salesforce.com"
    );
}

#[tokio::test]
async fn versions_list_needs_no_auth_and_has_no_limit_header() {
    let org = start().await;
    let before = org.em.api_calls();
    let r = common::reply(
        org.http
            .get(format!("{}/services/data/", org.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.limit().is_none());
    let list = r.body.as_array().unwrap();
    let last = list.last().unwrap();
    assert_eq!(
        last,
        &json!({"label": "Spring '26", "url": "/services/data/v66.0", "version": "66.0"})
    );
    assert!(list.iter().any(|v| v["version"] == "45.0"));
    assert_eq!(org.em.api_calls(), before, "not counted");
}

#[tokio::test]
async fn rest_calls_need_a_valid_bearer_token() {
    let org = start().await;
    let none = common::reply(
        org.http
            .get(org.url("/sobjects/Case/describe"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let wrong = common::reply(
        org.http
            .get(org.url("/sobjects/Case/describe"))
            .bearer_auth("00D000000000001!forged")
            .send()
            .await
            .unwrap(),
    )
    .await;
    for r in [none, wrong] {
        assert_eq!(r.status, 401);
        assert_eq!(
            r.body,
            json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
        );
        assert!(r.limit().is_some());
    }
}

#[tokio::test]
async fn describe_case_matches_the_contract() {
    let org = start().await;
    let r = org.get("/sobjects/Case/describe").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["name"], "Case");
    assert_eq!(r.body["keyPrefix"], "500");
    assert_eq!(r.body["createable"], true);
    let fields = r.body["fields"].as_array().unwrap();
    let field = |n: &str| {
        fields
            .iter()
            .find(|f| f["name"] == n)
            .unwrap_or_else(|| panic!("{n}"))
    };
    let subject = field("Subject");
    assert_eq!(subject["type"], "string");
    assert_eq!(subject["length"], 255);
    assert_eq!(subject["nillable"], false);
    assert_eq!(subject["defaultedOnCreate"], false);
    let priority = field("Priority");
    assert_eq!(priority["restrictedPicklist"], true);
    assert_eq!(priority["defaultValue"], "Medium");
    let values: Vec<&str> = priority["picklistValues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["High", "Medium", "Low"]);
    let medium = &priority["picklistValues"][1];
    assert_eq!(
        medium,
        &json!({"value": "Medium", "label": "Medium", "active": true, "defaultValue": true, "validFor": null})
    );
    assert_eq!(field("Origin")["picklistValues"][3]["value"], "Field QR");
    let ext = field("Fieldgate_Proposal_Id__c");
    assert_eq!(
        (
            ext["externalId"].clone(),
            ext["unique"].clone(),
            ext["custom"].clone()
        ),
        (json!(true), json!(true), json!(true))
    );
    assert_eq!(field("AssetId")["referenceTo"], json!(["Asset"]));
    assert_eq!(field("CaseNumber")["createable"], false);
    assert_eq!(field("CreatedDate")["type"], "datetime");
    for key in [
        "name",
        "label",
        "type",
        "length",
        "nillable",
        "createable",
        "updateable",
        "defaultedOnCreate",
        "defaultValue",
        "restrictedPicklist",
        "externalId",
        "unique",
        "custom",
        "calculated",
        "referenceTo",
        "picklistValues",
    ] {
        assert!(subject.get(key).is_some(), "field key {key}");
    }
    for obj in ["Asset", "Account", "ContentVersion", "Location"] {
        let d = org.get(&format!("/sobjects/{obj}/describe")).await;
        assert_eq!(d.status, 200, "{obj}");
        assert_eq!(d.body["name"], obj);
    }
    let missing = org.get("/sobjects/Widget__c/describe").await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.body,
        json!([{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}])
    );
}

#[tokio::test]
async fn create_read_update_delete_a_case() {
    let org = start().await;
    let asset = &org.em.demo_assets()[0];
    let r = org
        .post(
            "/sobjects/Case/",
            json!({"Subject": "Compressor rattles", "Origin": "Field QR", "AssetId": asset.id, "Priority": "High"}),
        )
        .await;
    assert_eq!(r.status, 201);
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(r.body, json!({"id": id, "success": true, "errors": []}));
    assert!(id.starts_with("500") && id.len() == 18);

    let stored = org.em.record("Case", &id).unwrap();
    assert_eq!(stored["Status"], "New", "picklist default");
    assert_eq!(stored["CaseNumber"], "00001001");
    assert!(stored["CreatedDate"].as_str().unwrap().ends_with("+0000"));

    let read = org
        .get(&format!(
            "/sobjects/Case/{id}?fields=Subject,Status,CaseNumber"
        ))
        .await;
    assert_eq!(read.status, 200);
    let obj = read.body.as_object().unwrap();
    assert_eq!(obj.len(), 4, "attributes + three fields: {}", read.body);
    assert_eq!(
        read.body["attributes"],
        json!({"type": "Case", "url": format!("{V}/sobjects/Case/{id}")})
    );
    assert_eq!(read.body["Subject"], "Compressor rattles");

    let full = org.get(&format!("/sobjects/Case/{}", &id[..15])).await;
    assert_eq!(full.status, 200, "15-char ids work");
    assert_eq!(full.body["Id"], json!(id));
    assert_eq!(full.body["AssetId"], json!(asset.id));
    assert!(full.body.get("Description").is_some_and(Value::is_null));

    let upd = org
        .patch(
            &format!("/sobjects/Case/{id}"),
            json!({"Status": "Working"}),
        )
        .await;
    assert_eq!((upd.status, upd.raw.len()), (204, 0));
    assert_eq!(org.em.record("Case", &id).unwrap()["Status"], "Working");

    let bad_field = org
        .get(&format!("/sobjects/Case/{id}?fields=Subject,Nope"))
        .await;
    assert_eq!(bad_field.status, 400);
    assert_eq!(only_error(&bad_field.body)["errorCode"], "INVALID_FIELD");

    let gone = "500000000000999AAA";
    assert_eq!(org.get(&format!("/sobjects/Case/{gone}")).await.status, 404);
    let r = org
        .patch(
            &format!("/sobjects/Case/{gone}"),
            json!({"Status": "Working"}),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(only_error(&r.body)["errorCode"], "NOT_FOUND");

    assert_eq!(
        org.delete(&format!("/sobjects/Case/{id}")).await.status,
        204
    );
    assert_eq!(org.get(&format!("/sobjects/Case/{id}")).await.status, 404);
}

#[tokio::test]
async fn required_field_missing() {
    let org = start().await;
    for body in [
        json!({"Description": "no subject"}),
        json!({"Subject": null}),
    ] {
        let r = org.post("/sobjects/Case/", body).await;
        assert_eq!(r.status, 400);
        assert_eq!(
            r.body,
            json!([{"message": "Required fields are missing: [Subject]", "errorCode": "REQUIRED_FIELD_MISSING", "fields": ["Subject"]}])
        );
    }
    assert!(org.em.records("Case").is_empty());
}

#[tokio::test]
async fn restricted_picklist_rejects_unknown_values() {
    let org = start().await;
    let r = org
        .post(
            "/sobjects/Case/",
            json!({"Subject": "x", "Priority": "Carrier Pigeon"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        json!([{"message": "bad value for restricted picklist field: Carrier Pigeon", "errorCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "fields": ["Priority"]}])
    );
    // Unrestricted picklists take any value, as in a real org.
    let ok = org
        .post(
            "/sobjects/Case/",
            json!({"Subject": "x", "Type": "Hydraulic"}),
        )
        .await;
    assert_eq!(ok.status, 201);
}

#[tokio::test]
async fn string_too_long() {
    let org = start().await;
    let subject = "é".repeat(256);
    let r = org
        .post("/sobjects/Case/", json!({"Subject": subject}))
        .await;
    assert_eq!(r.status, 400);
    let e = only_error(&r.body);
    assert_eq!(e["errorCode"], "STRING_TOO_LONG");
    assert_eq!(e["fields"], json!(["Subject"]));
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.starts_with("Subject: data value too large: éé"),
        "{msg}"
    );
    assert!(msg.ends_with("(max length=255)"), "{msg}");
    // 255 multi-byte characters fit: length counts characters, not bytes.
    let ok = org
        .post("/sobjects/Case/", json!({"Subject": "é".repeat(255)}))
        .await;
    assert_eq!(ok.status, 201);
    let ext = org
        .post(
            "/sobjects/Case/",
            json!({"Subject": "x", "Fieldgate_Proposal_Id__c": "0".repeat(27)}),
        )
        .await;
    assert!(
        only_error(&ext.body)["message"]
            .as_str()
            .unwrap()
            .ends_with("(max length=26)")
    );
}

#[tokio::test]
async fn other_write_validations() {
    let org = start().await;
    let cases = [
        (
            json!({"Subject": "x", "Id": "500000000000001AAA"}),
            "INVALID_FIELD",
            "The Id field should not be specified in the sobject data.",
        ),
        (
            json!({"Subject": "x", "Colour__c": "red"}),
            "INVALID_FIELD",
            "No such column 'Colour__c' on sobject of type Case",
        ),
        (
            json!({"Subject": "x", "AssetId": "02i000000000999AAA"}),
            "INVALID_CROSS_REFERENCE_KEY",
            "invalid cross reference id",
        ),
        (
            // An Account id in an Asset lookup is the wrong type.
            json!({"Subject": "x", "AssetId": org.em.demo_assets()[0].id.replace("02i", "001")}),
            "INVALID_CROSS_REFERENCE_KEY",
            "invalid cross reference id",
        ),
    ];
    for (body, code, message) in cases {
        let r = org.post("/sobjects/Case/", body.clone()).await;
        assert_eq!(r.status, 400, "{body}");
        let e = only_error(&r.body);
        assert_eq!(
            (
                e["errorCode"].as_str().unwrap(),
                e["message"].as_str().unwrap()
            ),
            (code, message),
            "{body}"
        );
        assert!(e["fields"].is_array(), "{body}");
    }
    let ro = org
        .post(
            "/sobjects/Case/",
            json!({"Subject": "x", "CaseNumber": "1"}),
        )
        .await;
    assert_eq!(
        only_error(&ro.body)["errorCode"],
        "INVALID_FIELD_FOR_INSERT_UPDATE"
    );
    assert_eq!(only_error(&ro.body)["fields"], json!(["CaseNumber"]));

    let first = org
        .post(
            "/sobjects/Case/",
            json!({"Subject": "a", "Fieldgate_Proposal_Id__c": "01JCX3QZ5N8V2W4Y6A7B9C0D1E"}),
        )
        .await;
    assert_eq!(first.status, 201);
    let dup = org
        .post(
            "/sobjects/Case/",
            json!({"Subject": "b", "Fieldgate_Proposal_Id__c": "01JCX3QZ5N8V2W4Y6A7B9C0D1E"}),
        )
        .await;
    assert_eq!(dup.status, 400);
    assert_eq!(
        only_error(&dup.body)["message"],
        json!(format!(
            "duplicate value found: Fieldgate_Proposal_Id__c duplicates value on record with id: {}",
            first.body["id"].as_str().unwrap()
        ))
    );
    assert_eq!(only_error(&dup.body)["errorCode"], "DUPLICATE_VALUE");
    let bad_json = org
        .send(
            org.http
                .post(org.url("/sobjects/Case/"))
                .header("content-type", "application/json")
                .body("{nope"),
        )
        .await;
    assert_eq!(bad_json.status, 400);
    assert_eq!(only_error(&bad_json.body)["errorCode"], "JSON_PARSER_ERROR");
    assert_eq!(org.em.records("Case").len(), 1);
}

#[tokio::test]
async fn upsert_inserts_then_updates() {
    let org = start().await;
    let path = "/sobjects/Case/Fieldgate_Proposal_Id__c/01JCX3QZ5N8V2W4Y6A7B9C0D1E";
    let first = org
        .patch(
            path,
            json!({"Subject": "Leaking valve", "Origin": "Field QR"}),
        )
        .await;
    assert_eq!(first.status, 201);
    let id = first.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        first.body,
        json!({"id": id, "success": true, "errors": [], "created": true})
    );
    let stored = org.em.record("Case", &id).unwrap();
    assert_eq!(
        stored["Fieldgate_Proposal_Id__c"],
        "01JCX3QZ5N8V2W4Y6A7B9C0D1E"
    );

    let second = org
        .patch(path, json!({"Subject": "Leaking valve (retry)"}))
        .await;
    assert_eq!(second.status, 200);
    assert_eq!(
        second.body,
        json!({"id": id, "success": true, "errors": [], "created": false})
    );
    assert_eq!(org.em.records("Case").len(), 1);
    assert_eq!(
        org.em.record("Case", &id).unwrap()["Subject"],
        "Leaking valve (retry)"
    );

    // Same ext value in the body is accepted; a different one is not.
    let same = org
        .patch(
            path,
            json!({"Subject": "s", "Fieldgate_Proposal_Id__c": "01JCX3QZ5N8V2W4Y6A7B9C0D1E"}),
        )
        .await;
    assert_eq!(same.status, 200);
    let other = org
        .patch(
            path,
            json!({"Subject": "s", "Fieldgate_Proposal_Id__c": "01JCX3QZ5N8V2W4Y6A7B9C0D1F"}),
        )
        .await;
    assert_eq!(other.status, 400);
    assert_eq!(only_error(&other.body)["errorCode"], "INVALID_FIELD");

    // Insert through upsert still validates required fields.
    let missing = org
        .patch(
            "/sobjects/Case/Fieldgate_Proposal_Id__c/01JCX3QZ5N8V2W4Y6A7B9C0D2Z",
            json!({"Origin": "Web"}),
        )
        .await;
    assert_eq!(
        only_error(&missing.body)["errorCode"],
        "REQUIRED_FIELD_MISSING"
    );
}

#[tokio::test]
async fn upsert_on_v45_answers_204_for_updates() {
    let org = start().await;
    let path =
        "/services/data/v45.0/sobjects/Case/Fieldgate_Proposal_Id__c/01JCX3QZ5N8V2W4Y6A7B9C0D1E";
    let first = org.patch(path, json!({"Subject": "old client"})).await;
    assert_eq!(first.status, 201);
    assert!(
        first.body.get("created").is_none(),
        "no created flag before v46.0: {}",
        first.body
    );
    let second = org
        .patch(path, json!({"Subject": "old client again"}))
        .await;
    assert_eq!(second.status, 204);
    assert!(second.raw.is_empty());
    let v46 = org
        .patch("/services/data/v46.0/sobjects/Case/Fieldgate_Proposal_Id__c/01JCX3QZ5N8V2W4Y6A7B9C0D1E", json!({"Subject": "new"}))
        .await;
    assert_eq!(v46.status, 200);
    assert_eq!(v46.body["created"], false);
    assert_eq!(
        org.get("/services/data/v12.0/sobjects/Case/describe")
            .await
            .status,
        404,
        "unknown version"
    );
}

#[tokio::test]
async fn upsert_on_a_field_that_is_not_an_external_id_is_404() {
    let org = start().await;
    for path in [
        "/sobjects/Case/Subject/hello",
        "/sobjects/Case/NoSuchField__c/1",
    ] {
        let r = org.patch(path, json!({"Origin": "Web"})).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(only_error(&r.body)["errorCode"], "NOT_FOUND");
    }
    assert!(org.em.records("Case").is_empty());
}

#[tokio::test]
async fn upsert_with_several_matches_answers_300() {
    let org = start().await;
    // Asset_Tag__c is an external id that is not unique, so duplicates exist.
    let mut ids = Vec::new();
    for name in ["Spare pump A", "Spare pump B"] {
        let r = org
            .post(
                "/sobjects/Asset/",
                json!({"Name": name, "Asset_Tag__c": "TAG-77"}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        ids.push(r.body["id"].as_str().unwrap().to_string());
    }
    let r = org
        .patch(
            "/sobjects/Asset/Asset_Tag__c/TAG-77",
            json!({"Status": "Obsolete"}),
        )
        .await;
    assert_eq!(r.status, 300);
    let expected: Vec<Value> = ids
        .iter()
        .map(|id| json!(format!("{V}/sobjects/Asset/{id}")))
        .collect();
    assert_eq!(r.body, Value::Array(expected));
    assert!(
        org.em
            .records("Asset")
            .iter()
            .all(|a| a["Status"] != "Obsolete"),
        "nothing updated"
    );
    let get = org.get("/sobjects/Asset/Asset_Tag__c/TAG-77").await;
    assert_eq!(get.status, 300);
}

#[tokio::test]
async fn soql_with_relationships_and_paging() {
    let org = start().await;
    let soql =
        "SELECT Id, Name, SerialNumber, Account.Name, Location.Name FROM Asset ORDER BY Name";
    let first = org
        .send(
            org.http
                .get(org.url("/query"))
                .query(&[("q", soql)])
                .header("Sforce-Query-Options", "batchSize=2"),
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["totalSize"], 5);
    assert_eq!(first.body["done"], false);
    assert_eq!(first.body["records"].as_array().unwrap().len(), 2);
    let mut records = first.body["records"].as_array().unwrap().clone();
    let mut next = first.body["nextRecordsUrl"].as_str().map(str::to_string);
    let mut pages = 1;
    while let Some(url) = next {
        assert!(url.starts_with(&format!("{V}/query/01g")), "{url}");
        let page = org.get(&url).await;
        assert_eq!(page.status, 200);
        assert_eq!(page.body["totalSize"], 5);
        records.extend(page.body["records"].as_array().unwrap().iter().cloned());
        next = page.body["nextRecordsUrl"].as_str().map(str::to_string);
        assert_eq!(page.body["done"], next.is_none());
        pages += 1;
    }
    assert_eq!(pages, 3);
    let names: Vec<&str> = records
        .iter()
        .map(|r| r["Name"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert_eq!(names.len(), 5);
    let hvac = records
        .iter()
        .find(|r| r["Name"] == "Rooftop HVAC Unit 3")
        .unwrap();
    assert_eq!(hvac["SerialNumber"], "HVC-3-2291-A");
    assert_eq!(hvac["Account"]["Name"], "Northwind Logistics");
    assert_eq!(hvac["Account"]["attributes"]["type"], "Account");
    assert!(
        hvac["Account"]["attributes"]["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{V}/sobjects/Account/001"))
    );
    assert_eq!(hvac["Location"]["Name"], "Building B roof");
    assert_eq!(hvac["attributes"]["type"], "Asset");

    // Case → Asset.Name / Account.Name, null parent rendered as null.
    let asset = &org.em.demo_assets()[0];
    let with = org
        .post(
            "/sobjects/Case/",
            json!({"Subject": "a", "AssetId": asset.id}),
        )
        .await;
    org.post("/sobjects/Case/", json!({"Subject": "b"})).await;
    let r = org
        .query(
            "SELECT Id, Subject, Asset.Name, Account.Name FROM Case WHERE Subject IN ('a','b') ORDER BY Subject",
        )
        .await;
    assert_eq!(r.body["totalSize"], 2);
    assert_eq!(r.body["done"], true);
    assert!(r.body.get("nextRecordsUrl").is_none());
    assert_eq!(r.body["records"][0]["Id"], with.body["id"]);
    assert_eq!(r.body["records"][0]["Asset"]["Name"], json!(asset.name));
    assert_eq!(r.body["records"][0]["Account"], Value::Null);
    assert_eq!(r.body["records"][1]["Asset"], Value::Null);

    let filtered = org
        .query(&format!(
            "SELECT Name FROM Asset WHERE Id = '{}'",
            &asset.id[..15]
        ))
        .await;
    assert_eq!(filtered.body["records"][0]["Name"], json!(asset.name));
    let like = org
        .query("SELECT Name FROM Asset WHERE Name LIKE 'rooftop%' AND Status != 'Obsolete'")
        .await;
    assert_eq!(like.body["totalSize"], 1);
    let nulls = org.query("SELECT Id FROM Case WHERE AssetId = null").await;
    assert_eq!(nulls.body["totalSize"], 1);
    let limited = org.query("SELECT Id FROM Asset LIMIT 3").await;
    assert_eq!(limited.body["totalSize"], 3);
}

#[tokio::test]
async fn soql_errors() {
    let org = start().await;
    let r = org.query("SELEKT Id FROM Case").await;
    assert_eq!(r.status, 400);
    let e = only_error(&r.body);
    assert_eq!(e["errorCode"], "MALFORMED_QUERY");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("unexpected token: SELEKT")
    );
    let r = org.query("SELECT Id, Colour__c FROM Case").await;
    assert_eq!(r.status, 400);
    assert_eq!(only_error(&r.body)["errorCode"], "INVALID_FIELD");
    assert!(
        only_error(&r.body)["message"]
            .as_str()
            .unwrap()
            .contains("No such column 'Colour__c'")
    );
    let r = org.get("/query").await;
    assert_eq!(only_error(&r.body)["errorCode"], "MALFORMED_QUERY");
    let r = org.get("/query/01g000000000042AAA-2000").await;
    assert_eq!(only_error(&r.body)["errorCode"], "INVALID_QUERY_LOCATOR");
}

#[tokio::test]
async fn content_version_json_upload_links_to_a_case() {
    let org = start().await;
    let case_id = org.create_case("Photo of the leak").await;
    let bytes: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let r = org
        .post(
            "/sobjects/ContentVersion/",
            json!({"Title": "leak", "PathOnClient": "leak.JPG", "VersionData": b64, "FirstPublishLocationId": case_id}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let cv = r.body["id"].as_str().unwrap().to_string();
    assert!(cv.starts_with("068"));
    assert_eq!(r.body, json!({"id": cv, "success": true, "errors": []}));

    let linked = org.em.content_versions_linked_to(&case_id[..15]);
    assert_eq!(linked.len(), 1);
    let v = &linked[0];
    assert_eq!(v["Id"], json!(cv));
    assert_eq!(v["Title"], "leak");
    assert_eq!(v["PathOnClient"], "leak.JPG");
    assert_eq!(v["FileExtension"], "jpg");
    assert_eq!(v["VersionDataLength"], 1000);
    assert!(v["ContentDocumentId"].as_str().unwrap().starts_with("069"));
    assert_eq!(org.em.content_version_data(&cv).unwrap(), bytes);

    let q = org
        .query(&format!(
            "SELECT Id, Title, ContentDocumentId, FileExtension, ContentSize FROM ContentVersion WHERE FirstPublishLocationId = '{case_id}'"
        ))
        .await;
    assert_eq!(q.body["totalSize"], 1);
    assert_eq!(q.body["records"][0]["ContentSize"], 1000);
    let link = org
        .query(&format!(
            "SELECT ContentDocumentId FROM ContentDocumentLink WHERE LinkedEntityId = '{case_id}'"
        ))
        .await;
    assert_eq!(
        link.body["records"][0]["ContentDocumentId"],
        v["ContentDocumentId"]
    );

    let body = org
        .get(&format!("/sobjects/ContentVersion/{cv}/VersionData"))
        .await;
    assert_eq!(body.status, 200);
    assert_eq!(body.raw, bytes);

    let orphan = org
        .post(
            "/sobjects/ContentVersion/",
            json!({"PathOnClient": "a.png", "VersionData": "AAAA", "FirstPublishLocationId": "500000000000999AAA"}),
        )
        .await;
    assert_eq!(orphan.status, 400);
    assert_eq!(
        only_error(&orphan.body)["errorCode"],
        "INVALID_CROSS_REFERENCE_KEY"
    );
    let no_data = org
        .post(
            "/sobjects/ContentVersion/",
            json!({"PathOnClient": "a.png", "FirstPublishLocationId": case_id}),
        )
        .await;
    assert_eq!(only_error(&no_data.body)["fields"], json!(["VersionData"]));
}

#[tokio::test]
async fn content_version_multipart_upload() {
    let org = start().await;
    let case_id = org.create_case("Nameplate photo").await;
    let bytes = b"\x89PNG\r\n\x1a\n not really a png".to_vec();
    let entity =
        json!({"PathOnClient": "nameplate.png", "FirstPublishLocationId": case_id}).to_string();
    let form = reqwest::multipart::Form::new()
        .part(
            "entity_content",
            reqwest::multipart::Part::text(entity)
                .mime_str("application/json")
                .unwrap(),
        )
        .part(
            "VersionData",
            reqwest::multipart::Part::bytes(bytes.clone())
                .file_name("nameplate.png")
                .mime_str("application/octet-stream")
                .unwrap(),
        );
    let r = org
        .send(
            org.http
                .post(org.url("/sobjects/ContentVersion/"))
                .multipart(form),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let cv = r.body["id"].as_str().unwrap();
    let linked = org.em.content_versions_linked_to(&case_id);
    assert_eq!(linked.len(), 1);
    assert_eq!(
        linked[0]["Title"], "nameplate",
        "title defaults to the file name"
    );
    assert_eq!(linked[0]["VersionDataLength"], bytes.len());
    assert_eq!(org.em.content_version_data(cv).unwrap(), bytes);
}

#[tokio::test]
async fn composite_with_references() {
    let org = start().await;
    let asset = org.em.demo_assets()[1].clone();
    let r = org
        .post(
            "/composite",
            json!({
                "allOrNone": true,
                "compositeRequest": [
                    {"method": "GET", "url": format!("{V}/query?q=SELECT+Id,AccountId+FROM+Asset+WHERE+Id='{}'", asset.id), "referenceId": "asset"},
                    {"method": "POST", "url": format!("{V}/sobjects/Case"), "referenceId": "newCase",
                     "body": {"Subject": "Charger fault", "AssetId": "@{asset.records[0].Id}", "AccountId": "@{asset.records[0].AccountId}"}},
                    {"method": "GET", "url": format!("{V}/sobjects/Case/@{{newCase.id}}?fields=CaseNumber,AssetId"), "referenceId": "readBack"}
                ]
            }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let res = r.body["compositeResponse"].as_array().unwrap();
    assert_eq!(res.len(), 3);
    assert_eq!(res[0]["httpStatusCode"], 200);
    assert_eq!(res[1]["httpStatusCode"], 201);
    assert_eq!(res[1]["referenceId"], "newCase");
    assert_eq!(res[1]["body"]["success"], true);
    let case_id = res[1]["body"]["id"].as_str().unwrap();
    assert_eq!(
        res[1]["httpHeaders"]["Location"],
        json!(format!("{V}/sobjects/Case/{case_id}"))
    );
    assert_eq!(res[2]["httpStatusCode"], 200);
    assert_eq!(res[2]["body"]["AssetId"], json!(asset.id));
    assert_eq!(res[2]["body"]["CaseNumber"], "00001001");
    assert!(
        org.em.record("Case", case_id).unwrap()["AccountId"]
            .as_str()
            .unwrap()
            .starts_with("001")
    );
}

#[tokio::test]
async fn composite_all_or_none_rolls_back() {
    let org = start().await;
    let calls_before = org.em.api_calls();
    let r = org
        .post(
            "/composite",
            json!({
                "allOrNone": true,
                "compositeRequest": [
                    {"method": "POST", "url": format!("{V}/sobjects/Case"), "referenceId": "ok", "body": {"Subject": "fine"}},
                    {"method": "POST", "url": format!("{V}/sobjects/Case"), "referenceId": "bad", "body": {"Subject": "s", "Priority": "Urgent!!"}},
                    {"method": "GET", "url": format!("{V}/sobjects/Case/@{{ok.id}}"), "referenceId": "after"}
                ]
            }),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        org.em.api_calls(),
        calls_before + 1,
        "one composite is one API call"
    );
    let res = r.body["compositeResponse"].as_array().unwrap();
    assert_eq!(res[0]["httpStatusCode"], 400);
    assert_eq!(res[0]["body"][0]["errorCode"], "PROCESSING_HALTED");
    assert_eq!(res[1]["httpStatusCode"], 400);
    assert_eq!(
        res[1]["body"][0]["errorCode"],
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    );
    assert_eq!(res[2]["body"][0]["errorCode"], "PROCESSING_HALTED");
    assert!(org.em.records("Case").is_empty(), "rolled back");

    // Without allOrNone the good subrequest sticks and a dangling reference halts.
    let r = org
        .post(
            "/composite",
            json!({
                "compositeRequest": [
                    {"method": "POST", "url": format!("{V}/sobjects/Case"), "referenceId": "ok", "body": {"Subject": "fine"}},
                    {"method": "POST", "url": format!("{V}/sobjects/Case"), "referenceId": "bad", "body": {}},
                    {"method": "GET", "url": format!("{V}/sobjects/Case/@{{bad.id}}"), "referenceId": "after"}
                ]
            }),
        )
        .await;
    let res = r.body["compositeResponse"].as_array().unwrap();
    assert_eq!(res[0]["httpStatusCode"], 201);
    assert_eq!(res[1]["body"][0]["errorCode"], "REQUIRED_FIELD_MISSING");
    assert_eq!(res[2]["body"][0]["errorCode"], "PROCESSING_HALTED");
    assert_eq!(org.em.records("Case").len(), 1);

    let too_many: Vec<Value> = (0..26)
        .map(|i| json!({"method": "GET", "url": format!("{V}/limits"), "referenceId": format!("r{i}")}))
        .collect();
    let r = org
        .post("/composite", json!({"compositeRequest": too_many}))
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn unknown_routes_are_404_arrays() {
    let org = start().await;
    for path in [
        "/services/data/v66.0/nothing/here",
        "/services/apexrest/whatever",
    ] {
        let r = org.get(path).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(only_error(&r.body)["errorCode"], "NOT_FOUND");
        assert!(r.limit().is_some());
    }
}

#[tokio::test]
async fn router_merges_into_another_app() {
    let em = fieldgate_sf_emulator::Emulator::new(Default::default()).unwrap();
    let app = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .merge(em.router())
        .fallback(|| async { (axum::http::StatusCode::IM_A_TEAPOT, "app fallback") });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{base}/elsewhere"))
            .send()
            .await
            .unwrap()
            .status(),
        418
    );
    let r = http
        .get(format!("{base}/services/data/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
