//! SASL mechanisms, pure: no I/O, no wire types. `scram` holds SCRAM's
//! credentials and server exchange; the broker keeps the credentials and the
//! connection layer drives the exchanges.

pub mod scram;
