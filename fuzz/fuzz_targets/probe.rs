//! The exit probe parser and the control API's request parser must never panic; a probe it
//! accepts re-encodes exactly, and a request it accepts round-trips through its wire form.
#![no_main]

use bitcloud::api::Request;
use bitcloud::wire::probe::Probe;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Probe::decode(data) {
        assert_eq!(&p.encode()[..], data);
    }
    if let Ok(r) = serde_json::from_slice::<Request>(data) {
        let text = serde_json::to_string(&r).expect("a parsed request serialises");
        assert_eq!(serde_json::from_str::<Request>(&text).ok(), Some(r));
    }
});
