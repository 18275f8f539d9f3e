//! QR codes (signed, not secret) and review links (secret, single use).

use super::{AssetId, ProposalId, Timestamp, WorkflowId};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use rand_core::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("malformed")]
    Malformed,
    #[error("unknown key")]
    UnknownKey,
    #[error("bad signature")]
    BadSignature,
    /// A genuine code whose key was rotated out and whose grace period
    /// is over: the sticker has to be reprinted.
    #[error("the code's key was retired")]
    Retired,
}

/// 128-bit tag: ample against forgery (an attacker must guess it online,
/// rate-limited), and short enough to keep the printed QR code small.
const QR_TAG_BYTES: usize = 16;

/// When a rotated-out key stops verifying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retirement {
    #[serde(with = "time::serde::rfc3339")]
    pub after: Timestamp,
}

/// HMAC keys for QR codes, by key id. Rotation ([`QrKeyring::rotate`]): a
/// new key signs from then on, the old one verifies until its grace period
/// ends and then answers [`TokenError::Retired`]; its secret is kept so a
/// retired sticker is told apart from a forged one.
#[derive(Clone, Serialize, Deserialize)]
pub struct QrKeyring {
    pub current: String,
    /// key id → base64url secret (≥ 32 bytes).
    pub keys: BTreeMap<String, String>,
    /// key id → its retirement. Absent from documents written before
    /// rotation existed: they load with every key valid.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub retiring: BTreeMap<String, Retirement>,
}

impl fmt::Debug for QrKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets, even in debug output.
        f.debug_struct("QrKeyring")
            .field("current", &self.current)
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .field("retiring", &self.retiring)
            .finish()
    }
}

/// What a genuine QR code says. `generation` counts revocations of the
/// asset × workflow's code: the store keeps the lowest generation still
/// valid, so revoking withdraws every code issued so far and the next one
/// issued (one generation up) works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrClaims {
    pub asset: AssetId,
    pub workflow: WorkflowId,
    pub kid: String,
    pub generation: u32,
}

/// Key ids must not contain the code's separator (or anything a URL would
/// escape): they appear in the printed code.
fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= 32
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl QrKeyring {
    pub fn generate(kid: &str, rng: &mut dyn RngCore) -> Self {
        let mut keys = BTreeMap::new();
        keys.insert(kid.to_owned(), B64.encode(random_bytes::<32>(rng)));
        Self {
            current: kid.to_owned(),
            keys,
            retiring: BTreeMap::new(),
        }
    }

    /// Adds a new key that signs from now on and retires the current one
    /// `grace` after `now` (an earlier retirement already set stays).
    /// Returns the new key id: `k{n}`, one past the highest in use.
    pub fn rotate(
        &mut self,
        now: Timestamp,
        grace: time::Duration,
        rng: &mut dyn RngCore,
    ) -> String {
        let next = self
            .keys
            .keys()
            .filter_map(|k| k.strip_prefix('k')?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        let kid = format!("k{next}");
        let old = std::mem::replace(&mut self.current, kid.clone());
        let after = now + grace;
        self.retiring
            .entry(old)
            .and_modify(|r| r.after = r.after.min(after))
            .or_insert(Retirement { after });
        self.keys
            .insert(kid.clone(), B64.encode(random_bytes::<32>(rng)));
        kid
    }

    pub(crate) fn mac(&self, kid: &str) -> Result<HmacSha256, TokenError> {
        let secret = self.keys.get(kid).ok_or(TokenError::UnknownKey)?;
        let raw = B64.decode(secret).map_err(|_| TokenError::UnknownKey)?;
        HmacSha256::new_from_slice(&raw).map_err(|_| TokenError::UnknownKey)
    }

    /// What the tag covers. Generation 0 keeps the first version's message,
    /// so every sticker printed before revocation existed still verifies;
    /// later generations sign under their own prefix, so no code of one
    /// form can be read as the other.
    fn message(asset: &AssetId, workflow: &WorkflowId, kid: &str, generation: u32) -> String {
        if generation == 0 {
            format!("fieldgate-qr/v1\n{asset}\n{workflow}\n{kid}")
        } else {
            format!("fieldgate-qr/v2\n{asset}\n{workflow}\n{kid}\n{generation}")
        }
    }

    /// `{asset}.{workflow}.{kid}.{tag}` — the path segment after `/q/`.
    pub fn sign(&self, asset: &AssetId, workflow: &WorkflowId) -> String {
        self.sign_generation(asset, workflow, 0)
    }

    /// The code of one generation: generation 0 is `{asset}.{workflow}.{kid}.{tag}`,
    /// later ones `{asset}.{workflow}.{kid}.{generation}.{tag}`.
    pub fn sign_generation(
        &self,
        asset: &AssetId,
        workflow: &WorkflowId,
        generation: u32,
    ) -> String {
        let kid = &self.current;
        let mut mac = self.mac(kid).expect("the current key exists");
        mac.update(Self::message(asset, workflow, kid, generation).as_bytes());
        let tag = B64.encode(&mac.finalize().into_bytes()[..QR_TAG_BYTES]);
        if generation == 0 {
            format!("{asset}.{workflow}.{kid}.{tag}")
        } else {
            format!("{asset}.{workflow}.{kid}.{generation}.{tag}")
        }
    }

    /// Checks a code's signature, then its key's retirement at `now` (a
    /// forged code never learns that a key id is retired).
    pub fn verify(&self, code: &str, now: Timestamp) -> Result<QrClaims, TokenError> {
        let parts: Vec<&str> = code.splitn(6, '.').collect();
        let (a, w, kid, generation, tag) = match parts[..] {
            [a, w, kid, tag] => (a, w, kid, 0, tag),
            [a, w, kid, g, tag] => {
                // Canonical decimal only, 1 and up: one spelling per code.
                if g.is_empty()
                    || g.len() > 9
                    || g.starts_with('0')
                    || !g.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(TokenError::Malformed);
                }
                (
                    a,
                    w,
                    kid,
                    g.parse().map_err(|_| TokenError::Malformed)?,
                    tag,
                )
            }
            _ => return Err(TokenError::Malformed),
        };
        let asset: AssetId = a.parse().map_err(|_| TokenError::Malformed)?;
        let workflow: WorkflowId = w.parse().map_err(|_| TokenError::Malformed)?;
        if !valid_kid(kid) {
            return Err(TokenError::Malformed);
        }
        let given = B64.decode(tag).map_err(|_| TokenError::Malformed)?;
        if given.len() != QR_TAG_BYTES {
            return Err(TokenError::BadSignature);
        }
        let mut mac = self.mac(kid)?;
        mac.update(Self::message(&asset, &workflow, kid, generation).as_bytes());
        mac.verify_truncated_left(&given)
            .map_err(|_| TokenError::BadSignature)?;
        if self.retiring.get(kid).is_some_and(|r| now >= r.after) {
            return Err(TokenError::Retired);
        }
        Ok(QrClaims {
            asset,
            workflow,
            kid: kid.to_owned(),
            generation,
        })
    }
}

/// A review link's secret part: `{proposal}.{nonce}`, 256 random bits.
#[derive(Clone, PartialEq, Eq)]
pub struct ReviewToken {
    pub proposal: ProposalId,
    nonce: [u8; 32],
}

impl ReviewToken {
    pub fn generate(proposal: ProposalId, rng: &mut dyn RngCore) -> Self {
        Self {
            proposal,
            nonce: random_bytes::<32>(rng),
        }
    }

    /// What the store keeps: the SHA-256 of the nonce, hex.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.nonce))
    }
}

impl FromStr for ReviewToken {
    type Err = TokenError;
    fn from_str(s: &str) -> Result<Self, TokenError> {
        let (id, nonce) = s.split_once('.').ok_or(TokenError::Malformed)?;
        let proposal: ProposalId = id.parse().map_err(|_| TokenError::Malformed)?;
        if nonce.len() != 43 {
            return Err(TokenError::Malformed);
        }
        let raw = B64.decode(nonce).map_err(|_| TokenError::Malformed)?;
        let nonce: [u8; 32] = raw.try_into().map_err(|_| TokenError::Malformed)?;
        Ok(Self { proposal, nonce })
    }
}

impl fmt::Display for ReviewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.proposal, B64.encode(self.nonce))
    }
}

impl fmt::Debug for ReviewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The nonce is a credential: keep it out of logs.
        write!(f, "ReviewToken({}.…)", self.proposal)
    }
}

/// Key for CSRF tokens on review forms.
#[derive(Clone, Serialize, Deserialize)]
pub struct CsrfKey(String);

impl fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CsrfKey(…)")
    }
}

impl CsrfKey {
    pub fn generate(rng: &mut dyn RngCore) -> Self {
        Self(B64.encode(random_bytes::<32>(rng)))
    }

    pub fn from_secret(secret: &str) -> Self {
        Self(secret.to_owned())
    }

    fn mac(&self, token_hash: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(self.0.as_bytes()).expect("any key length");
        mac.update(b"fieldgate-csrf/v1\n");
        mac.update(token_hash.as_bytes());
        mac
    }

    /// Bound to the link, so a form token is useless with any other link.
    pub fn token_for(&self, token_hash: &str) -> String {
        B64.encode(self.mac(token_hash).finalize().into_bytes())
    }

    /// A MAC of `data` for another use of the same key (`purpose` keeps
    /// the uses apart: a tag made for one never verifies for another).
    pub fn sign_for(&self, purpose: &str, data: &[u8]) -> Vec<u8> {
        self.purpose_mac(purpose, data)
            .finalize()
            .into_bytes()
            .to_vec()
    }

    /// Checks a tag made by [`CsrfKey::sign_for`], in constant time.
    pub fn verify_for(&self, purpose: &str, data: &[u8], tag: &[u8]) -> bool {
        self.purpose_mac(purpose, data).verify_slice(tag).is_ok()
    }

    fn purpose_mac(&self, purpose: &str, data: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(self.0.as_bytes()).expect("any key length");
        mac.update(b"fieldgate-");
        mac.update(purpose.as_bytes());
        mac.update(b"/v1\n");
        mac.update(data);
        mac
    }

    pub fn verify(&self, token_hash: &str, given: &str) -> bool {
        match B64.decode(given) {
            Ok(raw) => self.mac(token_hash).verify_slice(&raw).is_ok(),
            Err(_) => false,
        }
    }
}

fn random_bytes<const N: usize>(rng: &mut dyn RngCore) -> [u8; N] {
    let mut b = [0u8; N];
    rng.fill_bytes(&mut b);
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{SeededRng, at};

    fn asset() -> AssetId {
        "02i000000000001AAA".parse().unwrap()
    }
    fn wf() -> WorkflowId {
        "field-service-case".parse().unwrap()
    }

    fn claims(generation: u32, kid: &str) -> QrClaims {
        QrClaims {
            asset: asset(),
            workflow: wf(),
            kid: kid.into(),
            generation,
        }
    }

    #[test]
    fn qr_codes_verify_and_resist_forgery() {
        let now = at(0);
        let ring = QrKeyring::generate("k1", &mut SeededRng(1));
        let code = ring.sign(&asset(), &wf());
        assert_eq!(ring.verify(&code, now), Ok(claims(0, "k1")));

        // Another asset with the same tag.
        let forged = code.replace("02i000000000001AAA", "02i000000000002AAA");
        assert_eq!(ring.verify(&forged, now), Err(TokenError::BadSignature));
        // Another key.
        let other = QrKeyring::generate("k1", &mut SeededRng(2));
        assert_eq!(other.verify(&code, now), Err(TokenError::BadSignature));
        // Truncated tag.
        assert!(ring.verify(&code[..code.len() - 4], now).is_err());
        assert_eq!(ring.verify("junk", now), Err(TokenError::Malformed));
        // Dropped key = revoked.
        let mut rotated = QrKeyring::generate("k2", &mut SeededRng(3));
        assert_eq!(rotated.verify(&code, now), Err(TokenError::UnknownKey));
        rotated.keys.extend(ring.keys.clone());
        assert!(
            rotated.verify(&code, now).is_ok(),
            "old key still honoured while kept"
        );
    }

    #[test]
    fn a_generation_is_part_of_the_signed_code() {
        let now = at(0);
        let ring = QrKeyring::generate("k1", &mut SeededRng(1));
        let g0 = ring.sign(&asset(), &wf());
        let g2 = ring.sign_generation(&asset(), &wf(), 2);
        assert_eq!(ring.sign_generation(&asset(), &wf(), 0), g0);
        assert_eq!(ring.verify(&g2, now), Ok(claims(2, "k1")));
        // The generation cannot be changed, added or dropped.
        let tag2 = g2.rsplit('.').next().unwrap();
        let tag0 = g0.rsplit('.').next().unwrap();
        let base = format!("{}.{}.k1", asset(), wf());
        for forged in [
            format!("{base}.3.{tag2}"),
            format!("{base}.{tag2}"),
            format!("{base}.1.{tag0}"),
        ] {
            assert_eq!(
                ring.verify(&forged, now),
                Err(TokenError::BadSignature),
                "{forged}"
            );
        }
        // One spelling per generation.
        for odd in [
            format!("{base}.02.{tag2}"),
            format!("{base}.0.{tag0}"),
            format!("{base}.+2.{tag2}"),
        ] {
            assert_eq!(ring.verify(&odd, now), Err(TokenError::Malformed), "{odd}");
        }
    }

    #[test]
    fn a_rotated_key_verifies_until_its_grace_ends() {
        let t0 = at(0);
        let mut ring = QrKeyring::generate("k1", &mut SeededRng(1));
        let old = ring.sign(&asset(), &wf());
        let grace = time::Duration::days(30);
        assert_eq!(ring.rotate(t0, grace, &mut SeededRng(7)), "k2");
        assert_eq!(ring.current, "k2");
        let new = ring.sign(&asset(), &wf());
        assert!(new.contains(".k2."), "{new}");
        let within = t0 + grace - time::Duration::seconds(1);
        assert!(ring.verify(&old, within).is_ok());
        assert!(ring.verify(&new, within).is_ok());
        assert_eq!(ring.verify(&old, t0 + grace), Err(TokenError::Retired));
        assert!(ring.verify(&new, t0 + grace + grace).is_ok());
        // A forged code of the retired key is still just forged.
        let forged = old.replace("02i000000000001AAA", "02i000000000002AAA");
        assert_eq!(
            ring.verify(&forged, t0 + grace),
            Err(TokenError::BadSignature)
        );
        // Rotating again retires k2 and keeps k1's earlier date.
        assert_eq!(ring.rotate(t0 + grace, grace, &mut SeededRng(8)), "k3");
        assert_eq!(ring.retiring["k1"].after, t0 + grace);
        assert_eq!(ring.retiring["k2"].after, t0 + grace + grace);
        // A document of before rotation (no `retiring`) loads, and its
        // retirements survive a round trip.
        let doc = serde_json::to_value(&ring).unwrap();
        let back: QrKeyring = serde_json::from_value(doc).unwrap();
        assert_eq!(back.retiring, ring.retiring);
        let legacy: QrKeyring = serde_json::from_str(
            r#"{"current":"k1","keys":{"k1":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}"#,
        )
        .unwrap();
        assert!(legacy.retiring.is_empty());
    }

    #[test]
    fn review_tokens_round_trip_and_hash() {
        let mut rng = SeededRng(4);
        let id = ProposalId::generate(at(0), &mut rng);
        let t = ReviewToken::generate(id, &mut rng);
        let s = t.to_string();
        let back: ReviewToken = s.parse().unwrap();
        assert_eq!(back.hash(), t.hash());
        assert_eq!(back.proposal, id);
        assert_ne!(ReviewToken::generate(id, &mut rng).hash(), t.hash());
        assert!(
            !format!("{t:?}").contains(s.split_once('.').unwrap().1),
            "debug output hides the nonce"
        );
        let mut bad = s.clone();
        bad.pop();
        assert!(bad.parse::<ReviewToken>().is_err());
    }

    #[test]
    fn csrf_is_bound_to_the_link() {
        let k = CsrfKey::generate(&mut SeededRng(5));
        let tok = k.token_for("abc");
        assert!(k.verify("abc", &tok));
        assert!(!k.verify("abd", &tok));
        assert!(!k.verify("abc", "garbage"));
    }

    /// The parsers over generated input: any string, and every valid
    /// code or link with bytes changed, inserted or cut. `PROPTEST_CASES`
    /// sets the count (BENCHMARKS.md: the 1,000,000-case run).
    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn config() -> ProptestConfig {
            let mut c = ProptestConfig::default();
            if std::env::var_os("PROPTEST_CASES").is_none() {
                c.cases = 4096;
            }
            c.failure_persistence = None;
            c
        }

        /// Characters a hostile code is made of: the code's own alphabet
        /// and separators most of the time, anything now and then.
        fn edit() -> impl Strategy<Value = (usize, u8, char)> {
            let ch = prop_oneof![
                8 => proptest::char::ranges(vec!['0'..='9', 'A'..='Z', 'a'..='z'].into()),
                3 => Just('.'),
                2 => proptest::sample::select(vec!['-', '_', '~', '%', '/', '+', '=', '\n', '\0']),
                1 => any::<char>(),
            ];
            (any::<usize>(), any::<u8>(), ch)
        }

        fn ring() -> QrKeyring {
            let mut r = QrKeyring::generate("k1", &mut SeededRng(11));
            r.rotate(at(0), time::Duration::days(1), &mut SeededRng(12));
            r
        }

        proptest! {
            #![proptest_config(config())]

            #[test]
            fn qr_any_string_is_refused_with_a_typed_error(code in any::<String>()) {
                prop_assert!(ring().verify(&code, at(0)).is_err());
            }

            #[test]
            fn qr_an_edited_code_never_verifies(
                generation in 0u32..4,
                old_key in any::<bool>(),
                edits in proptest::collection::vec(edit(), 1..4),
            ) {
                let mut r = ring();
                if old_key {
                    r.current = "k1".into();
                }
                let code = r.sign_generation(&asset(), &wf(), generation);
                let edited = crate::fixtures::mutate(&code, &edits);
                let got = ring().verify(&edited, at(0));
                if edited == code {
                    prop_assert_eq!(got.map(|c| c.generation), Ok(generation));
                } else {
                    prop_assert!(got.is_err(), "{} verified", edited);
                }
            }

            #[test]
            fn review_token_parsing_refuses_or_round_trips(s in any::<String>()) {
                if let Ok(t) = s.parse::<ReviewToken>() {
                    prop_assert_eq!(t.to_string().to_ascii_uppercase(), s.to_ascii_uppercase());
                }
            }

            #[test]
            fn review_token_an_edited_link_is_another_or_refused(
                seed in any::<u64>(),
                edits in proptest::collection::vec(edit(), 1..4),
            ) {
                let mut rng = SeededRng(seed);
                let t = ReviewToken::generate(ProposalId::generate(at(0), &mut rng), &mut rng);
                let link = t.to_string();
                let edited = crate::fixtures::mutate(&link, &edits);
                match edited.parse::<ReviewToken>() {
                    // Only a change of letter case in the id names the same link.
                    Ok(back) if back.proposal == t.proposal && back.hash() == t.hash() => {
                        prop_assert!(edited.eq_ignore_ascii_case(&link), "{}", edited);
                    }
                    Ok(_) | Err(_) => {}
                }
            }
        }
    }
}
