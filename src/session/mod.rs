//! Link sessions: handshake, transport keys, replay window and WireGuard timers, all sans-IO.

pub mod aead;
pub mod handshake;
pub mod keypair;
pub mod peer;
pub mod replay;
pub mod timers;
