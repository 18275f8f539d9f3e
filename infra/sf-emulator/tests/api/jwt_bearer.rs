//! The JWT bearer grant: signature against the app's certificate, then
//! `iss`, `aud`, `exp` (seconds, a few minutes ahead), `sub`, each refused
//! with the description Salesforce answers (contract: Auth).

use crate::common;
use fieldgate_sf_emulator::{DEV_JWT_PRIVATE_KEY, DEV_USERNAME};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const OTHER_KEY: &str = include_str!("../../fixtures/other-jwt.key");

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn sign(claims: &Value, key_pem: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        claims,
        &EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn claims(org: &common::Org) -> Value {
    json!({
        "iss": org.em.config().client_id,
        "sub": DEV_USERNAME,
        "aud": "https://login.salesforce.com",
        "exp": now() + 120,
    })
}

async fn grant(org: &common::Org, assertion: &str) -> common::Reply {
    org.token_call(&[("grant_type", GRANT), ("assertion", assertion)])
        .await
}

fn assert_oauth_error(r: &common::Reply, error: &str, description: &str) {
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["error"], error, "{}", r.body);
    assert_eq!(r.body["error_description"], description, "{}", r.body);
}

#[tokio::test]
async fn a_signed_assertion_buys_a_working_token() {
    let org = common::start().await;
    let r = grant(&org, &sign(&claims(&org), DEV_JWT_PRIVATE_KEY)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    for key in [
        "access_token",
        "scope",
        "instance_url",
        "id",
        "token_type",
        "issued_at",
        "signature",
    ] {
        assert!(r.body.get(key).is_some(), "{key} missing: {}", r.body);
    }
    assert_eq!(r.body["token_type"], "Bearer");
    assert!(r.body.get("refresh_token").is_none());
    assert_eq!(r.body["instance_url"], org.base);
    // The token works for REST calls.
    let token = r.body["access_token"].as_str().unwrap();
    let d = common::reply(
        org.http
            .get(org.url("/sobjects/Case/describe"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(d.status, 200, "{}", d.body);
    // The emulator's own URL is a valid audience (My Domain / community).
    let mut c = claims(&org);
    c["aud"] = json!(org.base);
    assert_eq!(
        grant(&org, &sign(&c, DEV_JWT_PRIVATE_KEY)).await.status,
        200
    );
}

#[tokio::test]
async fn a_key_the_app_does_not_trust_is_refused() {
    let org = common::start().await;
    let r = grant(&org, &sign(&claims(&org), OTHER_KEY)).await;
    assert_oauth_error(&r, "invalid_grant", "invalid assertion");
    // A tampered payload with the right key's signature fails the same way.
    let good = sign(&claims(&org), DEV_JWT_PRIVATE_KEY);
    let mut parts: Vec<&str> = good.split('.').collect();
    let evil = {
        use base64::Engine;
        let mut c = claims(&org);
        c["sub"] = json!("admin@example.com");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c.to_string())
    };
    parts[1] = &evil;
    let r = grant(&org, &parts.join(".")).await;
    assert_oauth_error(&r, "invalid_grant", "invalid assertion");
    // HS256 with anything as the secret is not RS256.
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(&org),
        &EncodingKey::from_secret(b"fieldgate-dev-secret"),
    )
    .unwrap();
    let r = grant(&org, &hs).await;
    assert_eq!(r.body["error"], "invalid_grant", "{}", r.body);
    let r = grant(&org, "not-a-jwt").await;
    assert_oauth_error(&r, "invalid_grant", "invalid assertion");
    let r = org.token_call(&[("grant_type", GRANT)]).await;
    assert_eq!(r.body["error"], "invalid_request", "{}", r.body);
}

#[tokio::test]
async fn each_claim_is_checked_with_salesforces_description() {
    let org = common::start().await;
    let with = |k: &str, v: Value| {
        let mut c = claims(&org);
        c[k] = v;
        sign(&c, DEV_JWT_PRIVATE_KEY)
    };
    let r = grant(&org, &with("iss", json!("someone-else"))).await;
    assert_oauth_error(&r, "invalid_client_id", "client identifier invalid");
    let r = grant(&org, &with("aud", json!("https://evil.example.com"))).await;
    assert_oauth_error(&r, "invalid_grant", "audience is invalid");
    let r = grant(&org, &with("sub", json!("nobody@example.com"))).await;
    assert_oauth_error(&r, "invalid_grant", "user hasn't approved this consumer");
    // exp in milliseconds, in the past, too far ahead, missing.
    for exp in [
        json!(now() * 1000 + 120_000),
        json!(now() - 10),
        json!(now() + 3600),
        Value::Null,
    ] {
        let r = grant(&org, &with("exp", exp.clone())).await;
        assert_oauth_error(&r, "invalid_grant", "expired authorization code");
    }
    // Five minutes ahead is still fine; the sandbox audience too.
    assert_eq!(
        grant(&org, &with("exp", json!(now() + 290))).await.status,
        200
    );
    assert_eq!(
        grant(&org, &with("aud", json!("https://test.salesforce.com/")))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn without_a_configured_certificate_the_grant_is_refused() {
    let org = common::start_with(fieldgate_sf_emulator::EmulatorConfig {
        jwt: None,
        ..Default::default()
    })
    .await;
    let r = grant(&org, &sign(&claims(&org), DEV_JWT_PRIVATE_KEY)).await;
    assert_oauth_error(&r, "invalid_grant", "user hasn't approved this consumer");
}
