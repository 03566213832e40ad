//! The mesh header and routing message parsers never panic, nor does the link's choice of
//! what a `MeshSealed` frame authenticates (docs/relay-crypto.md), for any length.
#![no_main]

use bitcloud::wire::outer::{Kind, LINK_AAD_MAX, encrypted_len, link_associated_data};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bitcloud::wire::mesh::parse(data);
    let _ = bitcloud::wire::routing::decode(data);
    let _ = bitcloud::wire::channel::ChannelMsg::decode(data);
    let _ = bitcloud::wire::mesh::layout(true, data.len());
    let mut scratch = [0u8; LINK_AAD_MAX];
    for kind in [Kind::Mesh as u8, Kind::MeshSealed as u8] {
        let _ = encrypted_len(kind, data.len());
        let _ = link_associated_data(kind, data, &mut scratch);
    }
});
