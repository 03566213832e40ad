//! Exit traffic through the sans-IO nodes (issue 9, the node's part): a client's packet for an
//! internet address travels end to end to the exit its default route chooses and reaches the
//! exit's TUN (for the kernel to forward); the exit's reply from the internet address reaches
//! the client; and nobody else can use either exception.

mod sim;

use std::net::Ipv4Addr;
use std::time::Duration;

use bitcloud::drops::DropReason;
use bitcloud::node::{HEADROOM, Node, PeerConfig, TAILROOM};
use bitcloud::session::timers::Timers;
use sim::{Net, PERFECT, addr, ident, node_cfg};

const INTERNET: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);

fn v4(src: Ipv4Addr, dst: Ipv4Addr, seq: u32) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ipv4(src.octets(), dst.octets(), 64).udp(1000, 2000);
    let mut out = Vec::new();
    b.write(&mut out, &seq.to_be_bytes()).unwrap();
    out
}

/// client 0 - relay 1 - exit 2, with node 2 announcing the default routes.
fn chain_with_exit() -> Net {
    let mut net = Net::new(3, &[(0, 1), (1, 2)], PERFECT, Timers::default());
    let mut cfg = node_cfg(Timers::default());
    cfg.router.exit = true;
    let peers = [PeerConfig {
        id: ident(1).id(),
        endpoint: Some(addr(1)),
    }];
    net.nodes[2].node = Node::new(
        &ident(2),
        &peers,
        cfg,
        net.now,
        1_700_000_000_000_000_000,
        44,
    )
    .unwrap();
    net.start();
    net.run(Duration::from_secs(10));
    let exit = ident(2).id();
    assert_eq!(
        net.nodes[0].node.router().default_route().map(|(e, _)| e),
        Some(exit),
        "the client's routing knows the exit"
    );
    net.nodes[0].node.set_exit_in_use(Some(exit));
    net
}

#[test]
fn internet_traffic_goes_to_the_exit_and_its_replies_come_back() {
    let mut net = chain_with_exit();
    let client = ident(0).id();
    for seq in 0..5 {
        net.tun(0, &v4(client.ipv4(), INTERNET, seq));
        net.run(Duration::from_millis(50));
    }
    // The host's own multicast on the TUN (mDNS here) is no internet traffic: it stays home.
    net.tun(0, &v4(client.ipv4(), Ipv4Addr::new(224, 0, 0, 251), 99));
    net.run(Duration::from_millis(50));
    assert_eq!(net.nodes[0].node.drops().get(DropReason::NoRoute), 1);
    assert_eq!(net.nodes[0].node.drops().get(DropReason::NoExit), 0);
    let out: Vec<_> = net.nodes[2].delivered.drain(..).collect();
    assert_eq!(out.len(), 5, "the exit handed every packet to its kernel");
    assert!(out.iter().all(|p| p[16..20] == INTERNET.octets()));
    assert!(
        net.nodes[1].delivered.is_empty(),
        "the relay delivered nothing"
    );
    // The internet answers; the exit's kernel hands the (de-NATed) reply to the TUN.
    for seq in 0..5 {
        net.tun(2, &v4(INTERNET, client.ipv4(), 100 + seq));
        net.run(Duration::from_millis(50));
    }
    let back = &net.nodes[0].delivered;
    assert_eq!(back.len(), 5, "the client got every reply");
    assert!(back.iter().all(|p| p[12..16] == INTERNET.octets()));
}

#[test]
fn only_the_chosen_exit_speaks_for_the_internet_and_only_exits_forward() {
    let mut net = chain_with_exit();
    let client = ident(0).id();
    net.tun(0, &v4(client.ipv4(), INTERNET, 1));
    net.run(Duration::from_millis(200));
    // The relay is no exit, but sends the client a packet from an internet address end to end.
    let p = v4(INTERNET, client.ipv4(), 2);
    let mut buf = vec![0u8; HEADROOM + p.len() + TAILROOM];
    buf[HEADROOM..HEADROOM + p.len()].copy_from_slice(&p);
    net.send_via(1, client, &mut buf, p.len());
    net.run(Duration::from_millis(200));
    assert!(
        net.nodes[0].delivered.is_empty(),
        "a non-exit spoke for the internet"
    );
    assert_eq!(net.nodes[0].node.drops().get(DropReason::SpoofedSource), 1);
    // The client tries to use the relay (no exit) as one: it refuses to forward.
    let p = v4(client.ipv4(), INTERNET, 3);
    let mut buf = vec![0u8; HEADROOM + p.len() + TAILROOM];
    buf[HEADROOM..HEADROOM + p.len()].copy_from_slice(&p);
    net.send_via(0, ident(1).id(), &mut buf, p.len());
    net.run(Duration::from_millis(200));
    assert!(net.nodes[1].delivered.is_empty());
    assert_eq!(net.nodes[1].node.drops().get(DropReason::NotForUs), 1);
    // Even an exit forwards only to the internet: not to another node's overlay address, not
    // to loopback or link-local, and not for a source other than the sender's own.
    let exit = ident(2).id();
    let relay_v4 = ident(1).id().ipv4();
    let before = net.nodes[2].delivered.len();
    for (src, dst) in [
        (client.ipv4(), relay_v4),
        (client.ipv4(), Ipv4Addr::LOCALHOST),
        (client.ipv4(), Ipv4Addr::new(169, 254, 1, 1)),
        (Ipv4Addr::new(198, 19, 0, 9), INTERNET),
    ] {
        let p = v4(src, dst, 4);
        let mut buf = vec![0u8; HEADROOM + p.len() + TAILROOM];
        buf[HEADROOM..HEADROOM + p.len()].copy_from_slice(&p);
        net.send_via(0, exit, &mut buf, p.len());
    }
    net.run(Duration::from_millis(200));
    assert_eq!(
        net.nodes[2].delivered.len(),
        before,
        "the exit forwarded a refused packet"
    );
    let d = net.nodes[2].node.drops();
    assert_eq!(d.get(DropReason::NotForUs), 3);
    assert_eq!(d.get(DropReason::SpoofedSource), 1);
}

#[test]
fn with_no_exit_in_use_nothing_goes_out_and_no_exit_is_believed() {
    let mut net = chain_with_exit();
    let client = ident(0).id();
    net.nodes[0].node.set_exit_in_use(None);
    net.tun(0, &v4(client.ipv4(), INTERNET, 1));
    net.run(Duration::from_millis(200));
    assert!(
        net.nodes[2].delivered.is_empty(),
        "internet traffic left without an exit"
    );
    assert_eq!(net.nodes[0].node.drops().get(DropReason::NoExit), 1);
    // The exit (known to routing, but not in use) cannot speak for the internet either.
    net.nodes[2].node.set_exit_in_use(None);
    let p = v4(INTERNET, client.ipv4(), 2);
    let mut buf = vec![0u8; HEADROOM + p.len() + TAILROOM];
    buf[HEADROOM..HEADROOM + p.len()].copy_from_slice(&p);
    net.send_via(2, client, &mut buf, p.len());
    net.run(Duration::from_millis(200));
    assert!(net.nodes[0].delivered.is_empty());
    assert_eq!(net.nodes[0].node.drops().get(DropReason::SpoofedSource), 1);
}
