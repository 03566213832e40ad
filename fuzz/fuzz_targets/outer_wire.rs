//! The outer UDP message parser must never panic, and what it accepts must be self-consistent.
#![no_main]

use bitcloud::wire::outer::{self, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match outer::parse(data) {
        Ok(Message::Transport(h)) => assert!(data.len() >= outer::TRANSPORT_MIN_LEN && h.kind == data[1]),
        Ok(Message::Init(i)) => assert_eq!(i.mac1_input.len() + 2 * outer::MAC_LEN, data.len()),
        Ok(Message::Resp(r)) => assert_eq!(r.mac1_input.len() + 2 * outer::MAC_LEN, data.len()),
        Ok(Message::Cookie(c)) => assert_eq!(8 + c.nonce.len() + c.sealed.len(), outer::COOKIE_REPLY_LEN),
        Err(_) => {}
    }
});
