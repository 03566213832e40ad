//! The exit's nftables table (src/gateway/exit.rs) on real namespaces: raw client packets are
//! written into a real TUN on the exit as the daemon will write them, and what the kernel does
//! with them is checked at a test "internet" (198.19.0.1, 2001:db8::1), at the exit's LAN and
//! back out of the TUN: masquerade both families, replies only to flows clients opened, no way
//! into the exit's LAN, the overlay or the exit host, SMTP refused, MSS clamped.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bitcloud::gateway::{self, exit::ExitRules};
use common::{Lab, in_netns, root_or_skip, sh};
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice};

const CLIENT4: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 7);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 7);
const MSS: u16 = 1331;

fn udp4(dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let IpAddr::V4(d) = dst.ip() else { panic!() };
    let mut v = Vec::new();
    PacketBuilder::ipv4(CLIENT4.octets(), d.octets(), 64)
        .udp(5000, dst.port())
        .write(&mut v, payload)
        .unwrap();
    v
}

fn udp6(dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let IpAddr::V6(d) = dst.ip() else { panic!() };
    let mut v = Vec::new();
    PacketBuilder::ipv6(CLIENT6.octets(), d.octets(), 64)
        .udp(5000, dst.port())
        .write(&mut v, payload)
        .unwrap();
    v
}

fn syn4(dst: SocketAddr) -> Vec<u8> {
    let IpAddr::V4(d) = dst.ip() else { panic!() };
    let mut v = Vec::new();
    PacketBuilder::ipv4(CLIENT4.octets(), d.octets(), 64)
        .tcp(40000, dst.port(), 1000, 64000)
        .syn()
        .options(&[TcpOptionElement::MaximumSegmentSize(1460)])
        .unwrap()
        .write(&mut v, &[])
        .unwrap();
    v
}

/// A UDP listener in `ns` at `at`: the source of the first datagram, answered with "reply".
fn listen_udp(ns: &str, at: SocketAddr) -> std::thread::JoinHandle<Option<SocketAddr>> {
    in_netns(ns, move || {
        let s = UdpSocket::bind(at).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        let mut b = [0u8; 64];
        let (_, from) = s.recv_from(&mut b).ok()?;
        s.send_to(b"reply", from).unwrap();
        Some(from)
    })
}

#[test]
fn exit_forwards_only_to_the_internet_masqueraded_and_refuses_the_rest() {
    if !root_or_skip("exit_forwards_only_to_the_internet_masqueraded_and_refuses_the_rest") {
        return;
    }
    let mut lab = Lab::new();
    let (e, i, l) = (lab.ns("e"), lab.ns("i"), lab.ns("l"));
    let (uplink, _) = lab.link(&e, "198.18.0.9/30", &i, "198.18.0.10/30");
    lab.link(&e, "198.18.0.13/30", &l, "198.18.0.14/30");
    for (ns, a) in [(&i, "198.19.0.1/32"), (&i, "2001:db8::1/128")] {
        sh(&["ip", "-n", ns, "addr", "add", a, "dev", "lo"]);
    }
    sh(&[
        "ip",
        "-n",
        &e,
        "-6",
        "addr",
        "add",
        "2001:db8:ffff::1/64",
        "dev",
        &uplink,
        "nodad",
    ]);
    let i_if = format!("{}v1b", lab.prefix);
    sh(&[
        "ip",
        "-n",
        &i,
        "-6",
        "addr",
        "add",
        "2001:db8:ffff::2/64",
        "dev",
        &i_if,
        "nodad",
    ]);
    sh(&[
        "ip",
        "-n",
        &e,
        "route",
        "add",
        "default",
        "via",
        "198.18.0.10",
    ]);
    sh(&[
        "ip",
        "-n",
        &e,
        "-6",
        "route",
        "add",
        "default",
        "via",
        "2001:db8:ffff::2",
    ]);
    let nft_before = sh(&["ip", "netns", "exec", &e, "nft", "list", "ruleset"]);

    let inet4: SocketAddr = "198.19.0.1:9999".parse().unwrap();
    let inet6: SocketAddr = "[2001:db8::1]:9999".parse().unwrap();
    let lan: SocketAddr = "198.18.0.14:9999".parse().unwrap();
    let uplink_gw: SocketAddr = "198.18.0.10:9998".parse().unwrap();
    let got4 = listen_udp(&i, inet4);
    let got6 = listen_udp(&i, inet6);
    let got_lan = listen_udp(&l, lan);
    let got_gw = listen_udp(&i, uplink_gw);
    let smtp = in_netns(&i, || std::net::TcpListener::bind("198.19.0.1:25").unwrap());
    let web = in_netns(&i, || {
        std::net::TcpListener::bind("198.19.0.1:8080").unwrap()
    });
    let (_smtp, _web) = (smtp.join().unwrap(), web.join().unwrap());
    std::thread::sleep(Duration::from_millis(100));

    let up = uplink.clone();
    let seen = in_netns(&e, move || {
        let tun = tun_rs::DeviceBuilder::new()
            .name("bce0")
            .mtu(1420)
            .ipv4(Ipv4Addr::new(100, 64, 0, 1), 10, None)
            .ipv6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1), 8)
            .build_sync()
            .expect("tun");
        tun.set_nonblocking(true).unwrap();
        let rules = ExitRules {
            tun: "bce0".into(),
            uplink: up.clone(),
            own_v4: Ipv4Addr::new(100, 64, 0, 1),
            own_v6: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1),
            lan: gateway::lan::connected_prefixes(&["bce0"]),
            blocked_ports: gateway::exit::DEFAULT_BLOCKED_PORTS.to_vec(),
            mss_v4: MSS,
        };
        rules.apply().expect("exit rules");
        let fwd = gateway::exit::enable_forwarding(&up).expect("forwarding");
        // The exit host itself: reachable from the mesh only at its overlay address.
        let own = UdpSocket::bind("100.64.0.1:9996").unwrap();
        let host = UdpSocket::bind("198.18.0.9:9997").unwrap();
        for sock in [&own, &host] {
            sock.set_nonblocking(true).unwrap();
        }
        // The host-bound datagrams and the refused SYN go first: the kernel rate-limits ICMP
        // errors per host, and the overlay-bound datagram below earns an ICMP redirect (the
        // route points back into the TUN; the node never hands the kernel such packets).
        for p in [
            udp4("100.64.0.1:9996".parse().unwrap(), b"own"),
            udp4("198.18.0.9:9997".parse().unwrap(), b"host"),
            syn4("198.19.0.1:25".parse().unwrap()),
            udp4(inet4, b"hello"),
            udp6(inet6, b"hello"),
            udp4(lan, b"lan"),
            udp4(uplink_gw, b"gw"),
            udp4("100.64.0.9:9999".parse().unwrap(), b"overlay"),
            syn4("198.19.0.1:8080".parse().unwrap()),
        ] {
            tun.send(&p).unwrap();
        }
        // Everything that comes back out of the TUN within 2 s.
        let mut back = Vec::new();
        let t0 = Instant::now();
        let mut buf = [0u8; 2048];
        while t0.elapsed() < Duration::from_secs(2) {
            match tun.recv(&mut buf) {
                Ok(k) => back.push(buf[..k].to_vec()),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        gateway::exit::restore_forwarding(&fwd).unwrap();
        let mut b = [0u8; 16];
        assert!(
            own.recv_from(&mut b).is_ok(),
            "the exit's overlay address answers"
        );
        assert!(
            host.recv_from(&mut b).is_err(),
            "the exit host's other address was reached"
        );
        back
    })
    .join()
    .unwrap();

    let from4 = got4
        .join()
        .unwrap()
        .expect("the internet got the IPv4 datagram");
    assert_eq!(
        from4.ip(),
        "198.18.0.9".parse::<IpAddr>().unwrap(),
        "masqueraded"
    );
    let from6 = got6
        .join()
        .unwrap()
        .expect("the internet got the IPv6 datagram");
    assert_eq!(
        from6.ip(),
        "2001:db8:ffff::1".parse::<IpAddr>().unwrap(),
        "masqueraded"
    );
    assert!(
        got_lan.join().unwrap().is_none(),
        "the exit's LAN was reached"
    );
    assert!(
        got_gw.join().unwrap().is_none(),
        "the uplink's own subnet was reached"
    );

    let mut replies = 0;
    let (mut smtp_refused, mut syn_ack_mss) = (false, None);
    for p in &seen {
        let Ok(s) = SlicedPacket::from_ip(p) else {
            continue;
        };
        let (src, dst): (IpAddr, IpAddr) = match &s.net {
            Some(NetSlice::Ipv4(h)) => (
                h.header().source_addr().into(),
                h.header().destination_addr().into(),
            ),
            Some(NetSlice::Ipv6(h)) => (
                h.header().source_addr().into(),
                h.header().destination_addr().into(),
            ),
            _ => continue,
        };
        if dst.is_multicast() {
            continue; // the exit host's own router solicitations on the new TUN
        }
        assert!(
            dst == IpAddr::V4(CLIENT4) || dst == IpAddr::V6(CLIENT6),
            "only replies to the client: {src} -> {dst}"
        );
        match s.transport {
            Some(TransportSlice::Udp(u)) if u.payload() == b"reply" => replies += 1,
            Some(TransportSlice::Icmpv4(ic)) if ic.type_u8() == 3 => smtp_refused = true,
            Some(TransportSlice::Tcp(t)) if t.syn() && t.ack() => {
                assert_eq!(t.source_port(), 8080, "no SYN-ACK from port 25");
                syn_ack_mss = t.options_iterator().find_map(|o| match o {
                    Ok(TcpOptionElement::MaximumSegmentSize(m)) => Some(m),
                    _ => None,
                });
            }
            _ => {}
        }
    }
    assert_eq!(
        replies, 2,
        "both replies came back through the TUN: {seen:?}"
    );
    assert!(smtp_refused, "SMTP got an ICMP refusal");
    assert_eq!(
        syn_ack_mss,
        Some(MSS),
        "the server's MSS was clamped on the way back"
    );
    assert!(
        in_netns(&e, || gateway::exit::remove().unwrap())
            .join()
            .unwrap()
    );
    assert_eq!(
        sh(&["ip", "netns", "exec", &e, "nft", "list", "ruleset"]),
        nft_before,
        "nothing of ours is left"
    );
}
