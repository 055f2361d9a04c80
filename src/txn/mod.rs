//! The transaction coordinator (exactly-once, KIP-98): `state` is the pure
//! state machine of one transactional id (Kafka's states and transitions,
//! unit-tested by tables of events); `records` its record in the transaction
//! state log; `coordinator` the async shell that persists steps, writes
//! COMMIT/ABORT markers through the broker, and aborts timed-out transactions.

pub mod coordinator;
pub mod records;
pub mod state;

pub use coordinator::{BoxFuture, CoordError, FreshPid, MarkerSink, TxnCoordinator};
