//! SASL mechanisms, pure: no I/O, no wire types. `scram` holds SCRAM's
//! credentials and server exchange, `sasl` a connection's authentication
//! (handshake, PLAIN, SCRAM, session lifetimes), `limiter` the failed
//! authentications per source address; the broker keeps the credentials and
//! the connection layer drives the exchanges.

pub mod limiter;
pub mod sasl;
pub mod scram;
