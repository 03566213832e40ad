//! The mesh header and routing message parsers never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bitcloud::wire::mesh::parse(data);
    let _ = bitcloud::wire::routing::decode(data);
    let _ = bitcloud::wire::channel::ChannelMsg::decode(data);
});
