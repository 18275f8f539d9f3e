//! Fixed inputs for tests: of the domain, and of every store adapter (the
//! conformance suite). Deterministic, so a failure replays.

use crate::{AssetContext, Intake, Proposal, ProposalId, Timestamp, Transition};

/// A deterministic generator (SplitMix64): tests need repeatable "random"
/// ids and nonces, not good ones.
#[derive(Debug, Clone)]
pub struct SeededRng(pub u64);

impl rand_core::RngCore for SeededRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// 2026-01-01T00:00:00Z plus `secs`.
pub fn at(secs: i64) -> Timestamp {
    time::macros::datetime!(2026-01-01 0:00 UTC) + time::Duration::seconds(secs)
}

/// A RECEIVED proposal for the demo chiller.
pub fn received(id: ProposalId, now: Timestamp) -> Transition {
    Proposal::receive(
        id,
        "field-service-case".parse().expect("valid"),
        AssetContext {
            id: "02i000000000001AAA".parse().expect("valid"),
            name: "Chiller".into(),
            serial_number: Some("CH-1".into()),
            account_id: None,
            account_name: None,
            location: None,
        },
        Intake {
            notes: "leak at the seal".into(),
            reporter: None,
            photos: vec![],
            received_at: now,
            assistant: None,
        },
        now,
    )
}

/// Property tests' edits of a valid input (positions taken modulo the
/// length): replace, insert or cut one character per edit.
pub fn mutate(s: &str, edits: &[(usize, u8, char)]) -> String {
    let mut v: Vec<char> = s.chars().collect();
    for &(at, op, c) in edits {
        let i = if v.is_empty() { 0 } else { at % v.len() };
        match op % 3 {
            0 if !v.is_empty() => v[i] = c,
            1 => v.insert(i, c),
            _ if !v.is_empty() => {
                v.remove(i);
            }
            _ => v.push(c),
        }
    }
    v.into_iter().collect()
}
