//! The transaction coordinator's records in the internal state log: the key
//! names a transactional id, the value holds its [`Txn`]. A tombstone (no
//! value) removes an expired id. See docs/on-disk-format.md.

use std::collections::BTreeSet;

use super::state::{Txn, TxnState};
use crate::storage::codec::{Dec, Enc};

/// Record kind of a transactional id's state (the first key byte).
const KIND_TXN: u8 = 2;
/// Format version of the value.
const VALUE_VERSION: u8 = 0;
/// Most partitions one transaction may hold (bounds decoding).
pub const TXN_PARTITIONS_MAX: usize = 100_000;

/// The key of a transactional id's record.
pub fn txn_key(id: &str) -> Vec<u8> {
    let mut e = Enc::default();
    e.u8(KIND_TXN).str(id);
    e.0
}

/// The transactional id a key names, if it is a transaction record's.
pub fn txn_id_of(key: &[u8]) -> Option<String> {
    let mut d = Dec(key);
    if d.u8()? != KIND_TXN {
        return None;
    }
    let id = d.str()?;
    d.0.is_empty().then_some(id)
}

fn state_code(s: TxnState) -> u8 {
    match s {
        TxnState::Empty => 0,
        TxnState::Ongoing => 1,
        TxnState::PrepareCommit => 2,
        TxnState::PrepareAbort => 3,
        TxnState::CompleteCommit => 4,
        TxnState::CompleteAbort => 5,
        TxnState::Dead => 6,
        TxnState::PrepareEpochFence => 7,
    }
}

fn state_of(code: u8) -> Option<TxnState> {
    Some(match code {
        0 => TxnState::Empty,
        1 => TxnState::Ongoing,
        2 => TxnState::PrepareCommit,
        3 => TxnState::PrepareAbort,
        4 => TxnState::CompleteCommit,
        5 => TxnState::CompleteAbort,
        6 => TxnState::Dead,
        7 => TxnState::PrepareEpochFence,
        _ => return None,
    })
}

/// The value of a transactional id's record.
pub fn txn_value(t: &Txn) -> Vec<u8> {
    let mut e = Enc::default();
    e.u8(VALUE_VERSION)
        .i64(t.producer_id)
        .i64(t.last_producer_id)
        .i32(i32::from(t.epoch))
        .i32(i32::from(t.last_epoch))
        .i32(t.timeout_ms)
        .u8(state_code(t.state))
        .i64(t.start_ms)
        .i64(t.updated_ms)
        .i32(i32::try_from(t.partitions.len()).unwrap_or(i32::MAX));
    for (topic, partition) in &t.partitions {
        e.str(topic).i32(*partition);
    }
    e.0
}

/// Reads a record written by [`txn_value`] for transactional id `id`; `None`
/// if it is damaged or of an unknown version.
pub fn decode_txn(id: &str, value: &[u8]) -> Option<Txn> {
    let mut d = Dec(value);
    if d.u8()? != VALUE_VERSION {
        return None;
    }
    let producer_id = d.i64()?;
    let last_producer_id = d.i64()?;
    let epoch = i16::try_from(d.i32()?).ok()?;
    let last_epoch = i16::try_from(d.i32()?).ok()?;
    let timeout_ms = d.i32()?;
    let state = state_of(d.u8()?)?;
    let start_ms = d.i64()?;
    let updated_ms = d.i64()?;
    let count = usize::try_from(d.i32()?).ok()?;
    if count > TXN_PARTITIONS_MAX {
        return None;
    }
    let mut partitions = BTreeSet::new();
    for _ in 0..count {
        let topic = d.str()?;
        partitions.insert((topic, d.i32()?));
    }
    if !d.0.is_empty() {
        return None;
    }
    Some(Txn {
        id: id.to_string(),
        producer_id,
        last_producer_id,
        epoch,
        last_epoch,
        timeout_ms,
        state,
        partitions,
        start_ms,
        updated_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(state: TxnState) -> Txn {
        Txn {
            id: "app-1".into(),
            producer_id: 4000,
            last_producer_id: 3000,
            epoch: 7,
            last_epoch: 6,
            timeout_ms: 60_000,
            state,
            partitions: [
                ("orders".to_string(), 0),
                ("orders".to_string(), 3),
                ("audit".to_string(), 1),
            ]
            .into_iter()
            .collect(),
            start_ms: 1_700_000_000_000,
            updated_ms: 1_700_000_000_500,
        }
    }

    #[test]
    fn records_round_trip_in_every_state() {
        for state in [
            TxnState::Empty,
            TxnState::Ongoing,
            TxnState::PrepareCommit,
            TxnState::PrepareAbort,
            TxnState::CompleteCommit,
            TxnState::CompleteAbort,
            TxnState::PrepareEpochFence,
            TxnState::Dead,
        ] {
            let t = sample(state);
            assert_eq!(decode_txn("app-1", &txn_value(&t)), Some(t), "{state:?}");
        }
        assert_eq!(txn_id_of(&txn_key("app-1")).as_deref(), Some("app-1"));
        assert_eq!(
            txn_id_of(&[1, 0, 0, 0, 1, b'g']),
            None,
            "a group record's key"
        );
    }

    #[test]
    fn damaged_values_are_refused_not_trusted() {
        let v = txn_value(&sample(TxnState::Ongoing));
        for cut in 0..v.len() {
            assert_eq!(decode_txn("x", &v[..cut]), None, "cut at {cut}");
        }
        let mut extra = v.clone();
        extra.push(0);
        assert_eq!(decode_txn("x", &extra), None);
        let mut bad_state = v.clone();
        bad_state[1 + 8 + 8 + 4 + 4 + 4] = 99;
        assert_eq!(decode_txn("x", &bad_state), None);
        let mut huge = v;
        let at = 1 + 8 + 8 + 4 + 4 + 4 + 1 + 8 + 8;
        huge[at..at + 4].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(
            decode_txn("x", &huge),
            None,
            "a count larger than the bound"
        );
    }
}
