//! A whole node fed arbitrary datagrams: never panics, never delivers anything to the TUN
//! or relays anything (nothing unauthenticated may get through).
#![no_main]

use std::time::Instant;

use bitcloud::identity::Identity;
use bitcloud::node::{Node, NodeConfig, PeerConfig, UdpOut};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let me = Identity::from_secret([1; 32]);
    let peer = Identity::from_secret([2; 32]).id();
    let now = Instant::now();
    let peers = [PeerConfig { id: peer, endpoint: Some("198.18.0.2:51820".parse().unwrap()) }];
    let mut node: Node = Node::new(&me, &peers, NodeConfig::default(), now, 0, 1).unwrap();
    node.start(now);
    for chunk in data.split(|b| *b == 0xff) {
        let mut d = chunk.to_vec();
        assert_eq!(node.handle_udp(now, "198.18.0.2:51820".parse().unwrap(), &mut d), UdpOut::None);
    }
});
