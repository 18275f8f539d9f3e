//! The short reference printed on a sticker beside its QR code, for the
//! technician whose camera fails: eight Crockford base32 symbols
//! (`7K3M-9QXD`), typed at `/k`, looked up in the store, answered with the
//! code's form.
//!
//! Why a stored lookup and not a shorter signature: a reference must name
//! its asset, and an Asset id is 18 characters nobody types. Why 40 bits:
//! a correct guess only opens the form of some asset (what photographing a
//! sticker gives), and the lookup is rate limited per client, so guessing
//! one of 10,000 stickers takes about 10⁸ tries.

use super::tokens::QrKeyring;
use super::{AssetId, Timestamp, WorkflowId};
use data_encoding::{Encoding, Specification};
use hmac::Mac;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

/// Symbols of a reference (5 bytes).
const LEN: usize = 8;

/// Crockford's alphabet: no I, L, O, U; a typed i/l reads as 1, o as 0,
/// lower case as upper, and dashes and spaces are ignored.
static CROCKFORD: LazyLock<Encoding> = LazyLock::new(|| {
    let mut spec = Specification::new();
    spec.symbols.push_str("0123456789ABCDEFGHJKMNPQRSTVWXYZ");
    spec.translate.from.push_str("abcdefghjkmnpqrstvwxyziIlLoO");
    spec.translate.to.push_str("ABCDEFGHJKMNPQRSTVWXYZ111100");
    spec.ignore.push_str("- ");
    spec.encoding().expect("a valid base32 specification")
});

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StickerRefError {
    #[error("a sticker's code has 8 letters and digits, like 7K3M-9QXD")]
    Malformed,
}

/// A sticker's typed reference, canonical (upper case, no dash).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StickerRef(String);

impl StickerRef {
    /// The canonical form, the store's key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for StickerRef {
    type Err = StickerRefError;

    /// Reads what a person typed: `7k3m 9qxd`, `7K3M-9QXD` and `7K3M9QXD`
    /// are one reference.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        // Bounded before decoding: the input is a stranger's.
        if s.len() > 32 {
            return Err(StickerRefError::Malformed);
        }
        let bytes = CROCKFORD
            .decode(s.as_bytes())
            .map_err(|_| StickerRefError::Malformed)?;
        if bytes.len() != LEN * 5 / 8 {
            return Err(StickerRefError::Malformed);
        }
        Ok(StickerRef(CROCKFORD.encode(&bytes)))
    }
}

impl TryFrom<String> for StickerRef {
    type Error = StickerRefError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<StickerRef> for String {
    fn from(r: StickerRef) -> String {
        r.0
    }
}

/// As printed: two groups of four.
impl fmt::Display for StickerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", &self.0[..4], &self.0[4..])
    }
}

impl QrKeyring {
    /// The reference of a code: a keyed hash of it, so printing the same
    /// sheet twice gives the same references, and nobody without the key
    /// can tell which reference belongs to which code.
    pub fn sticker_ref(&self, code: &str) -> StickerRef {
        let mut mac = self.mac(&self.current).expect("the current key exists");
        mac.update(b"fieldgate-sticker/v1\n");
        mac.update(code.as_bytes());
        let tag = mac.finalize().into_bytes();
        StickerRef(CROCKFORD.encode(&tag[..LEN * 5 / 8]))
    }
}

/// A printed sticker: its reference and the code it opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sticker {
    pub reference: StickerRef,
    /// The path segment after `/q/`: the QR code itself, so the form
    /// checks the same signature, key retirement and revocation.
    pub code: String,
    pub asset: AssetId,
    pub workflow: WorkflowId,
    #[serde(with = "time::serde::rfc3339")]
    pub printed_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Fills with one byte: keys that differ only where a test wants.
    struct Fill(u8);
    impl rand_core::RngCore for Fill {
        fn next_u32(&mut self) -> u32 {
            u32::from(self.0)
        }
        fn next_u64(&mut self) -> u64 {
            u64::from(self.0)
        }
        fn fill_bytes(&mut self, d: &mut [u8]) {
            d.fill(self.0)
        }
    }

    fn keys() -> QrKeyring {
        QrKeyring::generate("k1", &mut Fill(7))
    }

    #[test]
    fn a_reference_reads_however_it_is_typed() {
        let r: StickerRef = "7K3M-9QXD".parse().unwrap();
        assert_eq!(r.as_str(), "7K3M9QXD");
        assert_eq!(r.to_string(), "7K3M-9QXD");
        for typed in ["7k3m9qxd", " 7k3m-9qxd ", "7K3M 9QXD", "7K3M--9QXD"] {
            assert_eq!(typed.parse::<StickerRef>().unwrap(), r, "{typed:?}");
        }
        // Crockford's look-alikes: o is 0, i and l are 1.
        assert_eq!(
            "oilO-1111".parse::<StickerRef>().unwrap().as_str(),
            "01101111"
        );
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "7K3M",
            "7K3M-9QX",
            "7K3M-9QXDA",
            "7K3M-9QXU",
            "7K3M_9QXD",
            "7K3M/9QXD",
            "ÄK3M-9QXD",
        ] {
            assert_eq!(
                bad.parse::<StickerRef>(),
                Err(StickerRefError::Malformed),
                "{bad:?}"
            );
        }
        assert!("7".repeat(33).parse::<StickerRef>().is_err());
    }

    #[test]
    fn a_code_has_one_reference_per_key() {
        let k = keys();
        let a = k.sticker_ref("02i000000000001AAA.field-service-case.k1.tag");
        assert_eq!(
            a,
            k.sticker_ref("02i000000000001AAA.field-service-case.k1.tag")
        );
        assert_ne!(
            a,
            k.sticker_ref("02i000000000002AAA.field-service-case.k1.tag")
        );
        let mut other = keys();
        other.rotate(
            time::OffsetDateTime::UNIX_EPOCH,
            time::Duration::days(1),
            &mut Fill(9),
        );
        assert_ne!(
            a,
            other.sticker_ref("02i000000000001AAA.field-service-case.k1.tag")
        );
        // What is printed parses back to itself.
        assert_eq!(a.to_string().parse::<StickerRef>().unwrap(), a);
    }

    proptest! {
        #[test]
        fn printed_references_parse_back(code in "[ -~]{0,120}") {
            let r = keys().sticker_ref(&code);
            prop_assert_eq!(r.to_string().parse::<StickerRef>().unwrap(), r.clone());
            prop_assert_eq!(r.to_string().to_lowercase().parse::<StickerRef>().unwrap(), r);
        }

        #[test]
        fn no_input_panics(s in "\\PC{0,40}") {
            let _ = s.parse::<StickerRef>();
        }
    }
}
