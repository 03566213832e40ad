//! The discovery beacon parser must never panic, and what it accepts must re-encode exactly.
#![no_main]

use bitcloud::wire::discovery::Beacon;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = Beacon::decode(data) {
        assert_eq!(&b.encode()[..], data);
        assert_ne!(b.port, 0);
        let _ = b.verify();
    }
});
