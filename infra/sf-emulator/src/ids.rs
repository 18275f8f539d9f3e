//! Salesforce record ids: a 3-character key prefix, a 12-character base62
//! counter and the 3-character case-safe checksum Salesforce appends when it
//! turns a 15-character id into an 18-character one.

/// Base62 digits in ASCII order, so ids with the same prefix sort in the
/// order they were minted (the store relies on that for stable listings).
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Alphabet Salesforce uses to encode each 5-bit "which chars are uppercase" mask.
const SUFFIX: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

pub const ORG: &str = "00D";
pub const USER: &str = "005";
pub const QUERY_LOCATOR: &str = "01g";

/// Builds the 15-character id for `counter` under `prefix`.
pub fn id15(prefix: &str, counter: u64) -> String {
    debug_assert_eq!(prefix.len(), 3);
    let mut digits = [b'0'; 12];
    let mut n = counter;
    for slot in digits.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    let mut s = String::with_capacity(15);
    s.push_str(prefix);
    s.push_str(std::str::from_utf8(&digits).expect("base62 is ascii"));
    s
}

/// The case-safe suffix: for each 5-character chunk, bit i is set when
/// character i is an uppercase ASCII letter.
pub fn checksum(id15: &str) -> String {
    let bytes = id15.as_bytes();
    let mut out = String::with_capacity(3);
    for chunk in bytes.chunks(5).take(3) {
        let mut mask = 0usize;
        for (i, b) in chunk.iter().enumerate() {
            if b.is_ascii_uppercase() {
                mask |= 1 << i;
            }
        }
        out.push(SUFFIX[mask] as char);
    }
    out
}

/// 15 → 18 characters.
pub fn to18(id15: &str) -> String {
    format!("{id15}{}", checksum(id15))
}

/// Mints an 18-character id.
pub fn mint(prefix: &str, counter: u64) -> String {
    to18(&id15(prefix, counter))
}

/// Whether `s` has the shape of a Salesforce id (15 or 18 alphanumerics).
pub fn is_well_formed(s: &str) -> bool {
    (s.len() == 15 || s.len() == 18) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The case-sensitive 15-character key used to match ids, whichever length
/// the caller sent. `None` when `s` is not an id at all.
pub fn key(s: &str) -> Option<&str> {
    is_well_formed(s).then(|| &s[..15])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_all_lowercase_is_aaa() {
        assert_eq!(to18("001000000000001"), "001000000000001AAA");
    }

    #[test]
    fn checksum_matches_known_salesforce_pair() {
        // Published example pair: 001A0000006Vm9r ↔ 001A0000006Vm9rIAC.
        assert_eq!(to18("001A0000006Vm9r"), "001A0000006Vm9rIAC");
        // Every char uppercase in a chunk → mask 31 → '5'.
        assert_eq!(checksum("ABCDEABCDEABCDE"), "555");
        // Only the last char of each chunk uppercase → mask 16 → 'Q'.
        assert_eq!(checksum("0000A0000B0000C"), "QQQ");
    }

    #[test]
    fn counter_is_base62_and_sorts_in_mint_order() {
        assert_eq!(id15("500", 1), "500000000000001");
        assert_eq!(id15("500", 62), "500000000000010");
        assert_eq!(id15("500", 61), "50000000000000z");
        let a = id15("02i", 9);
        let b = id15("02i", 10);
        let c = id15("02i", 36);
        assert!(a < b && b < c, "{a} {b} {c}");
        assert_eq!(mint("02i", 10), "02i00000000000AAAQ");
    }

    #[test]
    fn key_accepts_15_and_18() {
        assert_eq!(key("001000000000001AAA"), Some("001000000000001"));
        assert_eq!(key("001000000000001"), Some("001000000000001"));
        assert_eq!(key("001-000"), None);
        assert_eq!(key("0010000000000011"), None);
    }
}
