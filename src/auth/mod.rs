//! SASL mechanisms, pure: no I/O, no wire types. `scram` holds SCRAM's
//! credentials and server exchange, `sasl` a connection's authentication
//! (handshake, PLAIN, SCRAM); the broker keeps the credentials and the
//! connection layer drives the exchanges.

pub mod sasl;
pub mod scram;
