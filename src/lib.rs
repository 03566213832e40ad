//! Bitcloud: a paid peer-to-peer mesh. The sans-IO protocol core (`wire`, `session`, `node`,
//! `route`, `money`) takes bytes and instants and returns bytes and events; `daemon`, `wallet`
//! and `gateway` do the I/O around it.

pub mod identity;
pub mod route;
pub mod wire;
