//! Bitcloud: a paid peer-to-peer mesh. The sans-IO protocol core (`wire`, `session`, `node`,
//! `route`, `money`) takes bytes and instants and returns bytes and events; `daemon`, `wallet`
//! and `gateway` do the I/O around it.

pub mod api;
pub mod chain;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod drops;
pub mod evm;
pub mod exit;
pub mod gateway;
pub mod icmp;
pub mod identity;
pub mod money;
pub mod node;
pub mod route;
pub mod session;
pub mod wallet;
pub mod wire;
