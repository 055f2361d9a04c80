//! Client connections: framing with a size cap, idle and request deadlines,
//! strictly ordered responses, and rate-limited logging of refused or closed
//! connections.

pub mod connection;
pub mod log_limit;
