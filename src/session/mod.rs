//! Link sessions: handshake, its flood defence (cookies, rate limits), transport keys, replay
//! window and WireGuard timers, all sans-IO.

pub mod aead;
pub mod cookie;
pub mod guard;
pub mod handshake;
pub mod keypair;
pub mod peer;
pub mod ratelimit;
pub mod replay;
pub mod timers;
