//! Sluice: a Kafka-wire-compatible message broker.
//!
//! # Layout
//! - `config`: every setting and limit, with defaults and reasons.
//! - `server`: accept loop, connection limit, shutdown and drain.
//! - `connection`: framing over one socket, size cap, idle timeout, ordered responses.
//! - `protocol`: the bridge to `kafka-protocol`: decode requests, encode responses, the version table.
//! - `handlers`: one file per API family; Kafka error codes are chosen here.
//! - `broker`: the shared state: topics, partition logs, durability (group commit), long-poll wakeups.
//! - `log`: the synchronous segmented log (no wire types, no async).
//! - `group`: the group coordinator: a pure state machine per group, its async shell, and the internal group log.
//! - `alloc`: the global allocator guard against wire-chosen huge reservations.

pub mod alloc;
pub mod broker;
pub mod config;
pub mod connection;
pub mod group;
pub mod handlers;
pub mod log;
pub mod protocol;
pub mod server;
pub mod topic_config;
