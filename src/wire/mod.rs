//! Every byte format Bitcloud puts on the wire. Invariant: parsers check every length before
//! reading and never panic on any input.

pub mod routing;
