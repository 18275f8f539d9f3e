//! QR codes (signed, not secret) and review links (secret, single use).

use super::{AssetId, ProposalId, WorkflowId};
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
}

/// 128-bit tag: ample against forgery (an attacker must guess it online,
/// rate-limited), and short enough to keep the printed QR code small.
const QR_TAG_BYTES: usize = 16;

/// HMAC keys for QR codes, by key id. Rotation: add a key, make it current,
/// reprint stickers, then drop the old key — which revokes every old code.
#[derive(Clone, Serialize, Deserialize)]
pub struct QrKeyring {
    pub current: String,
    /// key id → base64url secret (≥ 32 bytes).
    pub keys: BTreeMap<String, String>,
}

impl fmt::Debug for QrKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets, even in debug output.
        f.debug_struct("QrKeyring")
            .field("current", &self.current)
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl QrKeyring {
    pub fn generate(kid: &str, rng: &mut dyn RngCore) -> Self {
        let mut keys = BTreeMap::new();
        keys.insert(kid.to_owned(), B64.encode(random_bytes::<32>(rng)));
        Self {
            current: kid.to_owned(),
            keys,
        }
    }

    fn mac(&self, kid: &str) -> Result<HmacSha256, TokenError> {
        let secret = self.keys.get(kid).ok_or(TokenError::UnknownKey)?;
        let raw = B64.decode(secret).map_err(|_| TokenError::UnknownKey)?;
        HmacSha256::new_from_slice(&raw).map_err(|_| TokenError::UnknownKey)
    }

    fn tag(
        &self,
        kid: &str,
        asset: &AssetId,
        workflow: &WorkflowId,
    ) -> Result<Vec<u8>, TokenError> {
        let mut mac = self.mac(kid)?;
        mac.update(format!("fieldgate-qr/v1\n{asset}\n{workflow}\n{kid}").as_bytes());
        Ok(mac.finalize().into_bytes()[..QR_TAG_BYTES].to_vec())
    }

    /// `{asset}.{workflow}.{kid}.{tag}` — the path segment after `/q/`.
    pub fn sign(&self, asset: &AssetId, workflow: &WorkflowId) -> String {
        let tag = self
            .tag(&self.current, asset, workflow)
            .expect("the current key exists");
        format!("{asset}.{workflow}.{}.{}", self.current, B64.encode(tag))
    }

    pub fn verify(&self, code: &str) -> Result<(AssetId, WorkflowId), TokenError> {
        let mut parts = code.split('.');
        let (Some(a), Some(w), Some(kid), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TokenError::Malformed);
        };
        let asset: AssetId = a.parse().map_err(|_| TokenError::Malformed)?;
        let workflow: WorkflowId = w.parse().map_err(|_| TokenError::Malformed)?;
        let given = B64.decode(tag).map_err(|_| TokenError::Malformed)?;
        if given.len() != QR_TAG_BYTES {
            return Err(TokenError::BadSignature);
        }
        let mut mac = self.mac(kid)?;
        mac.update(format!("fieldgate-qr/v1\n{asset}\n{workflow}\n{kid}").as_bytes());
        mac.verify_truncated_left(&given)
            .map_err(|_| TokenError::BadSignature)?;
        Ok((asset, workflow))
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

    #[test]
    fn qr_codes_verify_and_resist_forgery() {
        let ring = QrKeyring::generate("k1", &mut SeededRng(1));
        let code = ring.sign(&asset(), &wf());
        assert_eq!(ring.verify(&code), Ok((asset(), wf())));

        // Another asset with the same tag.
        let forged = code.replace("02i000000000001AAA", "02i000000000002AAA");
        assert_eq!(ring.verify(&forged), Err(TokenError::BadSignature));
        // Another key.
        let other = QrKeyring::generate("k1", &mut SeededRng(2));
        assert_eq!(other.verify(&code), Err(TokenError::BadSignature));
        // Truncated tag.
        assert!(ring.verify(&code[..code.len() - 4]).is_err());
        assert_eq!(ring.verify("junk"), Err(TokenError::Malformed));
        // Dropped key = revoked.
        let mut rotated = QrKeyring::generate("k2", &mut SeededRng(3));
        assert_eq!(rotated.verify(&code), Err(TokenError::UnknownKey));
        rotated.keys.extend(ring.keys.clone());
        assert!(
            rotated.verify(&code).is_ok(),
            "old key still honoured while kept"
        );
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
}
