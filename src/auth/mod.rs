//! Authentication and authorization, pure: no I/O, no wire types. `acl`
//! holds Kafka's authorizer model and decisions. `scram` holds SCRAM's
//! credentials and server exchange, `sasl` a connection's authentication
//! (handshake, PLAIN, SCRAM, session lifetimes), `limiter` the failed
//! authentications per source address; the broker keeps the credentials and
//! the connection layer drives the exchanges.

pub mod acl;
pub mod limiter;
pub mod oauth;
pub mod sasl;
pub mod scram;
