//! The asset context a QR form was shown with, signed into the form: the
//! report it posts can then be taken without asking Salesforce (or the
//! cache) again. It is a hint the intake vouched for, never authority: the
//! QR code's own signature admits the report, and a context that does not
//! verify is simply not used (the report looks the asset up as before).

use super::tokens::CsrfKey;
use super::{AssetContext, Timestamp};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};

/// Keeps these tags apart from every other use of the links key.
const PURPOSE: &str = "form-context";

/// How long a form's context stands in for a lookup, counted from when
/// Salesforce confirmed it: long enough for a report written at the
/// equipment, short enough that an asset taken out of service or moved to
/// another account is looked up again for a form opened before the change
/// (the form itself, on a scan, is never older than the cache's freshness).
pub const LIFETIME: time::Duration = time::Duration::hours(1);

/// Clocks of two containers differ a little; a context dated further
/// ahead than this is not ours to trust.
const SKEW: time::Duration = time::Duration::minutes(5);

/// Longer than any context we sign (an asset's six short fields).
const MAX_LEN: usize = 8 * 1024;

/// A context the intake signed: what it showed and when Salesforce said so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vouched {
    pub asset: AssetContext,
    pub confirmed_at: Timestamp,
}

/// Why a form's context is not used (the report then looks the asset up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FormContextError {
    #[error("not a signed form context")]
    Malformed,
    /// Edited, made for another code, or signed with a key since replaced.
    #[error("the form context's signature does not match this code")]
    BadSignature,
    #[error("the form context is older than its lifetime (or dated ahead)")]
    Expired,
}

#[derive(Serialize, Deserialize)]
struct Payload {
    /// Unix milliseconds (the clocks' precision): when Salesforce
    /// confirmed `asset`.
    at: i64,
    asset: AssetContext,
}

/// The MAC's input: the code the form was served for, then the payload, so
/// a context copied into another sticker's form does not verify.
fn signed_data(code: &str, payload: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(code.len() + 1 + payload.len());
    data.extend_from_slice(code.as_bytes());
    data.push(b'\n');
    data.extend_from_slice(payload);
    data
}

/// The form field for `asset` as shown on the form of `code`, confirmed by
/// Salesforce at `confirmed_at`: `{payload}.{tag}`, both base64url.
pub fn sign(key: &CsrfKey, code: &str, asset: &AssetContext, confirmed_at: Timestamp) -> String {
    let payload = serde_json::to_vec(&Payload {
        at: (confirmed_at.unix_timestamp_nanos() / 1_000_000) as i64,
        asset: asset.clone(),
    })
    .expect("an asset context serializes");
    let tag = key.sign_for(PURPOSE, &signed_data(code, &payload));
    format!("{}.{}", B64.encode(&payload), B64.encode(tag))
}

/// The context a form of `code` carried, if we signed it and it is within
/// its [`LIFETIME`] at `now`.
pub fn verify(
    key: &CsrfKey,
    code: &str,
    given: &str,
    now: Timestamp,
) -> Result<Vouched, FormContextError> {
    if given.len() > MAX_LEN {
        return Err(FormContextError::Malformed);
    }
    let (payload, tag) = given.split_once('.').ok_or(FormContextError::Malformed)?;
    let (Ok(payload), Ok(tag)) = (B64.decode(payload), B64.decode(tag)) else {
        return Err(FormContextError::Malformed);
    };
    // The tag first: nothing of an unsigned payload is read.
    if !key.verify_for(PURPOSE, &signed_data(code, &payload), &tag) {
        return Err(FormContextError::BadSignature);
    }
    let p: Payload = serde_json::from_slice(&payload).map_err(|_| FormContextError::Malformed)?;
    let confirmed_at = Timestamp::from_unix_timestamp_nanos(i128::from(p.at) * 1_000_000)
        .map_err(|_| FormContextError::Malformed)?;
    if confirmed_at > now + SKEW || now - confirmed_at >= LIFETIME {
        return Err(FormContextError::Expired);
    }
    Ok(Vouched {
        asset: p.asset,
        confirmed_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::SeededRng;

    fn asset(id: &str) -> AssetContext {
        AssetContext {
            id: id.parse().unwrap(),
            name: "Chiller 2".into(),
            serial_number: Some("CH-2".into()),
            account_id: Some("001000000000001AAA".into()),
            account_name: Some("Acme".into()),
            location: None,
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_timestamp(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn a_signed_context_verifies_for_its_code_within_its_lifetime() {
        let key = CsrfKey::generate(&mut SeededRng(1));
        let a = asset("02i000000000001AAA");
        // To the millisecond, as the clocks keep time (the cache entry the
        // report stores is dated by it).
        let confirmed = at(0) + time::Duration::milliseconds(123);
        let field = sign(&key, "code-1", &a, confirmed);
        let v = verify(&key, "code-1", &field, at(600)).unwrap();
        assert_eq!((v.asset, v.confirmed_at), (a, confirmed));
        // Within the skew a context from a clock a little ahead counts.
        assert!(verify(&key, "code-1", &field, at(-60)).is_ok());
    }

    #[test]
    fn an_old_or_future_context_is_expired() {
        let key = CsrfKey::generate(&mut SeededRng(1));
        let field = sign(&key, "code-1", &asset("02i000000000001AAA"), at(0));
        let lifetime = LIFETIME.whole_seconds();
        assert!(verify(&key, "code-1", &field, at(lifetime - 1)).is_ok());
        assert_eq!(
            verify(&key, "code-1", &field, at(lifetime)),
            Err(FormContextError::Expired)
        );
        assert_eq!(
            verify(&key, "code-1", &field, at(-SKEW.whole_seconds() - 1)),
            Err(FormContextError::Expired)
        );
    }

    #[test]
    fn another_code_an_edit_or_another_key_does_not_verify() {
        let key = CsrfKey::generate(&mut SeededRng(1));
        let field = sign(&key, "code-1", &asset("02i000000000001AAA"), at(0));
        // Replayed in another sticker's form.
        assert_eq!(
            verify(&key, "code-2", &field, at(1)),
            Err(FormContextError::BadSignature)
        );
        // Signed by another deployment (or before a key change).
        let other = CsrfKey::generate(&mut SeededRng(2));
        assert_eq!(
            verify(&other, "code-1", &field, at(1)),
            Err(FormContextError::BadSignature)
        );
        // Another asset's context with this form's tag.
        let (_, tag) = field.split_once('.').unwrap();
        let forged = serde_json::to_vec(&Payload {
            at: at(0).unix_timestamp() * 1000,
            asset: asset("02i000000000002AAA"),
        })
        .unwrap();
        assert_eq!(
            verify(
                &key,
                "code-1",
                &format!("{}.{tag}", B64.encode(forged)),
                at(1)
            ),
            Err(FormContextError::BadSignature)
        );
        // A later date with the old tag (to outlive the lifetime).
        let (payload, _) = field.split_once('.').unwrap();
        let mut p: serde_json::Value =
            serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap();
        p["at"] = serde_json::json!(at(3000).unix_timestamp() * 1000);
        let moved = format!("{}.{tag}", B64.encode(serde_json::to_vec(&p).unwrap()));
        assert_eq!(
            verify(&key, "code-1", &moved, at(3600)),
            Err(FormContextError::BadSignature)
        );
        for junk in ["", ".", "abc", "a.b", "!!.!!", &"x".repeat(MAX_LEN + 1)] {
            assert!(verify(&key, "code-1", junk, at(1)).is_err(), "{junk:?}");
        }
    }
}
