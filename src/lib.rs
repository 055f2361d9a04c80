//! Sluice: a Kafka-wire-compatible message broker.
//!
//! # Layout
//! Each folder is a layer and imports only from the layers below it
//! (`tests/tidy.rs` holds the table); see docs/ARCHITECTURE.md.
//! - `log`: the synchronous segmented log: batches, records, indexes, segments,
//!   producer state, and the filesystem seam (no async, no wire types).
//! - `storage`: the async runtime over `log`: partitions, group commit, retention,
//!   the internal state log.
//! - `group`: the group coordinator: a pure state machine per group, its async
//!   shell, its records in the state log.
//! - `txn`: the transaction coordinator's state machine (the shell comes next).
//! - `auth`: SASL mechanisms, pure (SCRAM credentials and exchange).
//! - `quota`: client quotas, pure: entities, precedence, rates, throttle times.
//! - `broker`: the shared handle: topic registry and admin, metadata files,
//!   producer ids, SCRAM users.
//! - `protocol`: the bridge to `kafka-protocol`: the version table, decoding, encoding.
//! - `handlers`: one file per API family; Kafka error codes are chosen here.
//! - `net`: connection framing, size cap, timeouts, ordered responses.
//! - `server`: accept loop, connection limits, shutdown and drain.
//! - `http`: the HTTP listener: `/metrics`, `/healthz`, `/readyz`.
//! - `cli`: offline subcommands (`sluice scram-users`).
//! - `metrics`: metric names and recording helpers (a leaf, like `config`).
//! - `config`, `clock`, `sys`, `alloc`: settings, time, process resources, and
//!   the allocator guard; importable from anywhere.

pub mod alloc;
pub mod auth;
pub mod broker;
pub mod cli;
pub mod clock;
pub mod config;
pub mod group;
pub mod handlers;
pub mod http;
pub mod log;
pub mod metrics;
pub mod net;
pub mod protocol;
pub mod quota;
pub mod server;
pub mod storage;
pub mod sys;
pub mod txn;
pub mod waiters;
