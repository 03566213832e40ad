//! Every byte format Bitcloud puts on the wire. Parsers here check every length before
//! reading and never panic on any input.

pub mod channel;
pub mod discovery;
pub mod mesh;
pub mod outer;
pub mod probe;
pub mod routing;
