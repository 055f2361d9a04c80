//! The transaction coordinator (exactly-once, KIP-98), being built in steps:
//! `state` is the pure state machine of one transactional id (Kafka's states
//! and transitions, unit-tested by tables of events); `records` its record in
//! the internal state log. The async shell, its
//! records in the internal state log, the COMMIT/ABORT markers and the last
//! stable offset come next; until then Sluice refuses transactional
//! InitProducerId, as docs/compat.md says.

pub mod records;
pub mod state;
