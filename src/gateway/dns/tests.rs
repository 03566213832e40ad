//! Tests of the DNS forwarder on loopback (127.0.0.0/8 and ::1, random ports, no root): fake
//! upstreams that answer with the query's ID and a marker, another ID, or never; and the
//! resolver-file parser. Every wait is bounded by a tokio timeout.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};

use super::*;

const LO4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const LO6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);
/// What a test waits for an answer at most.
const WAIT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy)]
enum Upstream {
    /// Answers with the query's ID, then the marker, then the rest of the query.
    Answer(&'static [u8]),
    /// Answers with the query's ID flipped.
    WrongId,
    /// Never answers.
    Silent,
}

fn answer_for(mode: Upstream, query: &[u8]) -> Option<Vec<u8>> {
    let id = query.get(..2)?;
    match mode {
        Upstream::Answer(marker) => Some([id, marker, query.get(2..)?].concat()),
        Upstream::WrongId => Some([&[!id[0], !id[1]][..], b"forged"].concat()),
        Upstream::Silent => None,
    }
}

/// A fake upstream on `ip`, UDP and TCP on one port; the task ends with the test's runtime.
async fn upstream(ip: IpAddr, mode: Upstream) -> (SocketAddr, JoinHandle<()>, JoinHandle<()>) {
    let udp = UdpSocket::bind((ip, 0)).await.expect("upstream udp");
    let addr = udp.local_addr().expect("addr");
    let tcp = TcpListener::bind(addr).await.expect("upstream tcp");
    let u = tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        while let Ok((n, from)) = udp.recv_from(&mut buf).await {
            if let Some(a) = answer_for(mode, &buf[..n]) {
                let _ = udp.send_to(&a, from).await;
            }
        }
    });
    let t = tokio::spawn(async move {
        while let Ok((mut s, _)) = tcp.accept().await {
            tokio::spawn(async move {
                let mut len = [0u8; 2];
                while s.read_exact(&mut len).await.is_ok() {
                    let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if s.read_exact(&mut q).await.is_err() {
                        return;
                    }
                    if let Some(a) = answer_for(mode, &q) {
                        let l = u16::try_from(a.len()).expect("len").to_be_bytes();
                        let _ = s.write_all(&[&l[..], &a].concat()).await;
                    }
                }
            });
        }
    });
    (addr, u, t)
}

/// A 12-byte header with this ID and a question-ish tail.
fn query(id: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    q.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
    q
}

fn fast() -> DnsLimits {
    DnsLimits {
        upstream_timeout: Duration::from_millis(300),
        ..DnsLimits::default()
    }
}

async fn ask(from: IpAddr, to: SocketAddr, q: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let s = UdpSocket::bind((from, 0)).await.expect("client");
    s.connect(to).await.expect("connect");
    s.send(q).await.expect("send");
    let mut buf = vec![0u8; 65535];
    let n = timeout(wait, s.recv(&mut buf)).await.ok()?.ok()?;
    buf.truncate(n);
    Some(buf)
}

/// Wait (bounded) until the stats satisfy `ok`.
async fn stats_until(f: &DnsForwarder, ok: impl Fn(&DnsStats) -> bool) -> DnsStats {
    let r = timeout(WAIT, async {
        loop {
            let s = f.stats();
            if ok(&s) {
                return s;
            }
            sleep(Duration::from_millis(10)).await;
        }
    });
    match r.await {
        Ok(s) => s,
        Err(_) => panic!("stats never got there: {:?}", f.stats()),
    }
}

#[tokio::test]
async fn udp_answer_relayed_v4_and_v6() {
    let (up4, ..) = upstream(LO4, Upstream::Answer(b"M4")).await;
    let (up6, ..) = upstream(LO6, Upstream::Answer(b"M6")).await;
    let f = DnsForwarder::start_with(&[LO4, LO6], 0, vec![up4], fast()).expect("start");
    let q = query(0x1234);
    let a = ask(LO4, f.udp_addrs()[0], &q, WAIT).await.expect("answer");
    assert_eq!(a, [&q[..2], b"M4", &q[2..]].concat());
    let a = ask(LO6, f.udp_addrs()[1], &q, WAIT)
        .await
        .expect("answer over v6");
    assert_eq!(&a[..4], &[0x12, 0x34, b'M', b'4']);
    drop(f);
    // An IPv6 upstream works too.
    let f = DnsForwarder::start_with(&[LO6], 0, vec![up6], fast()).expect("start");
    let a = ask(LO6, f.udp_addrs()[0], &q, WAIT).await.expect("answer");
    assert_eq!(&a[2..4], b"M6");
    let s = stats_until(&f, |s| s.answered == 1).await;
    assert_eq!((s.queries, s.timeouts, s.in_flight), (1, 0, 0));
}

#[tokio::test]
async fn tcp_answer_relayed_on_one_connection() {
    let (up, ..) = upstream(LO4, Upstream::Answer(b"TCP")).await;
    let f = DnsForwarder::start_with(&[LO4], 0, vec![up], fast()).expect("start");
    let mut s = timeout(WAIT, TcpStream::connect(f.tcp_addrs()[0]))
        .await
        .expect("connect in time")
        .expect("connect");
    for id in [7u16, 8] {
        let q = query(id);
        let len = u16::try_from(q.len()).expect("len").to_be_bytes();
        s.write_all(&[&len[..], &q].concat()).await.expect("write");
        let mut len = [0u8; 2];
        timeout(WAIT, s.read_exact(&mut len))
            .await
            .expect("in time")
            .expect("len");
        let mut a = vec![0u8; usize::from(u16::from_be_bytes(len))];
        timeout(WAIT, s.read_exact(&mut a))
            .await
            .expect("in time")
            .expect("body");
        assert_eq!(a, [&q[..2], b"TCP", &q[2..]].concat());
    }
    let st = stats_until(&f, |s| s.answered == 2).await;
    assert_eq!((st.queries, st.tcp_connections), (2, 1));
}

#[tokio::test]
async fn answer_with_another_id_is_not_relayed() {
    let (up, ..) = upstream(LO4, Upstream::WrongId).await;
    let f = DnsForwarder::start_with(&[LO4], 0, vec![up], fast()).expect("start");
    let a = ask(
        LO4,
        f.udp_addrs()[0],
        &query(99),
        Duration::from_millis(800),
    )
    .await;
    assert_eq!(a, None);
    let s = stats_until(&f, |s| s.timeouts == 1).await;
    assert_eq!(s.answered, 0);
}

#[tokio::test]
async fn silent_first_upstream_then_second_answers() {
    let (silent, ..) = upstream(LO4, Upstream::Silent).await;
    let (good, ..) = upstream(LO4, Upstream::Answer(b"2nd")).await;
    let f = DnsForwarder::start_with(&[LO4], 0, vec![silent, good], fast()).expect("start");
    let q = query(5);
    let a = ask(LO4, f.udp_addrs()[0], &q, WAIT).await.expect("answer");
    assert_eq!(&a[2..5], b"2nd");
    // TCP falls over the same way.
    let mut s = TcpStream::connect(f.tcp_addrs()[0]).await.expect("connect");
    let len = u16::try_from(q.len()).expect("len").to_be_bytes();
    s.write_all(&[&len[..], &q].concat()).await.expect("write");
    let mut a = vec![0u8; 2 + 2 + 3];
    timeout(WAIT, s.read_exact(&mut a))
        .await
        .expect("in time")
        .expect("read");
    assert_eq!(&a[4..], b"2nd");
    let st = stats_until(&f, |s| s.answered == 2).await;
    assert_eq!(st.timeouts, 0);
}

#[tokio::test]
async fn bad_lengths_dropped_and_counted() {
    let (up, ..) = upstream(LO4, Upstream::Answer(b"x")).await;
    let f = DnsForwarder::start_with(&[LO4], 0, vec![up], fast()).expect("start");
    let to = f.udp_addrs()[0];
    let short = &query(1)[..11];
    let long = vec![0u8; MAX_QUERY_LEN + 1];
    for q in [short, &long[..], &[][..]] {
        assert_eq!(ask(LO4, to, q, Duration::from_millis(200)).await, None);
    }
    // A query of exactly the largest length still goes through.
    let mut max = query(2);
    max.resize(MAX_QUERY_LEN, 0);
    assert!(ask(LO4, to, &max, WAIT).await.is_some());
    // Over TCP a bad length closes the connection.
    let mut s = TcpStream::connect(f.tcp_addrs()[0]).await.expect("connect");
    s.write_all(&[0, 5, 1, 2, 3, 4, 5]).await.expect("write");
    let mut b = [0u8; 1];
    let r = timeout(WAIT, s.read(&mut b)).await.expect("closed in time");
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    let st = stats_until(&f, |s| s.dropped_malformed == 4).await;
    assert_eq!((st.queries, st.answered), (5, 1));
}

/// Send `n` queries from `from` without waiting for answers; the sockets are returned so
/// they stay open.
async fn flood(from: IpAddr, to: SocketAddr, n: u16) -> UdpSocket {
    let s = UdpSocket::bind((from, 0)).await.expect("client");
    for id in 0..n {
        s.send_to(&query(id), to).await.expect("send");
        if id % 32 == 31 {
            // Paced so the listener's socket buffer never overflows: every datagram must be
            // counted by the forwarder for the arithmetic below.
            sleep(Duration::from_millis(2)).await;
        }
    }
    s
}

#[tokio::test]
async fn in_flight_bounds_per_client_and_in_total() {
    let (silent, ..) = upstream(LO4, Upstream::Silent).await;
    let limits = DnsLimits {
        upstream_timeout: Duration::from_secs(3),
        ..DnsLimits::default()
    };
    let f = DnsForwarder::start_with(&[LO4], 0, vec![silent], limits).expect("start");
    let to = f.udp_addrs()[0];
    // One client: 64 in flight, the rest dropped.
    let _one = flood(LO4, to, 100).await;
    let s = stats_until(&f, |s| {
        s.queries == 100 && s.in_flight + s.dropped_busy == 100
    })
    .await;
    assert_eq!((s.in_flight, s.dropped_busy), (64, 36));
    // Nine more clients (127.0.0.2..=10), 60 each: 512 in flight in total, never more.
    let mut clients = Vec::new();
    for i in 2..=10 {
        clients.push(flood(IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)), to, 60).await);
    }
    let n = 100 + 9 * 60;
    let s = stats_until(&f, |s| s.queries == n && s.in_flight + s.dropped_busy == n).await;
    assert_eq!(s.in_flight, 512);
    assert_eq!(s.dropped_busy, 36 + (64 + 9 * 60 - 512));
    // 64 + 7 * 60 = 484: the ninth new client got 28 slots, the tenth none, so it has no entry.
    assert_eq!(f.shared.udp_clients.held.lock().expect("lock").len(), 9);
    // When the upstream times out everything is given back.
    let s = stats_until(&f, |s| s.in_flight == 0).await;
    assert_eq!(s.timeouts, 512);
    assert!(f.shared.udp_clients.held.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn tcp_connection_bound() {
    let (up, ..) = upstream(LO4, Upstream::Answer(b"x")).await;
    let limits = DnsLimits {
        max_tcp_connections_per_client: 2,
        ..fast()
    };
    let f = DnsForwarder::start_with(&[LO4], 0, vec![up], limits).expect("start");
    let to = f.tcp_addrs()[0];
    let _a = TcpStream::connect(to).await.expect("a");
    let _b = TcpStream::connect(to).await.expect("b");
    stats_until(&f, |s| s.tcp_connections == 2).await;
    let mut c = TcpStream::connect(to)
        .await
        .expect("c is accepted, then closed");
    let mut b = [0u8; 1];
    let r = timeout(WAIT, c.read(&mut b)).await.expect("closed in time");
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    let s = stats_until(&f, |s| s.dropped_busy == 1).await;
    assert_eq!(s.tcp_connections, 2);
}

#[tokio::test]
async fn idle_tcp_connection_closed() {
    let (up, ..) = upstream(LO4, Upstream::Answer(b"x")).await;
    let limits = DnsLimits {
        tcp_idle_timeout: Duration::from_millis(200),
        ..fast()
    };
    let f = DnsForwarder::start_with(&[LO4], 0, vec![up], limits).expect("start");
    let mut s = TcpStream::connect(f.tcp_addrs()[0]).await.expect("connect");
    let mut b = [0u8; 1];
    let r = timeout(WAIT, s.read(&mut b)).await.expect("closed in time");
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    stats_until(&f, |s| s.tcp_connections == 0).await;
}

#[tokio::test]
async fn stop_frees_the_ports_and_start_refuses_bad_input() {
    let (up, ..) = upstream(LO4, Upstream::Answer(b"x")).await;
    let (silent, ..) = upstream(LO4, Upstream::Silent).await;
    let f = DnsForwarder::start(&[LO4], 0, vec![silent]).expect("start");
    let (u, t) = (f.udp_addrs()[0], f.tcp_addrs()[0]);
    // A query in flight and a connection open (both hold the forwarder's sockets) when it stops.
    let _client = flood(LO4, u, 1).await;
    let _conn = TcpStream::connect(t).await.expect("connect");
    stats_until(&f, |s| s.in_flight == 1 && s.tcp_connections == 1).await;
    timeout(WAIT, f.stop()).await.expect("stopped in time");
    drop(std::net::UdpSocket::bind(u).expect("UDP port free again"));
    drop(std::net::TcpListener::bind(t).expect("TCP port free again"));
    let again = DnsForwarder::start(&[LO4], u.port(), vec![up]).expect("port free again");
    // With a port given, UDP and TCP share it (port 0 lets each pick its own).
    assert_eq!((again.udp_addrs()[0], again.tcp_addrs()[0]), (u, u));
    // The port is ours while it runs.
    let busy = DnsForwarder::start(&[LO4], u.port(), vec![up]);
    assert!(
        matches!(busy, Err(DnsError::Bind { proto: "udp", .. })),
        "{busy:?}"
    );

    for bad in [
        "100.64.0.1:53",
        "100.127.255.255:53",
        "[fd12::1]:53",
        "[::ffff:100.100.1.1]:53",
    ] {
        let bad: SocketAddr = bad.parse().expect("addr");
        let r = DnsForwarder::start(&[LO4], 0, vec![up, bad]);
        assert!(
            matches!(r, Err(DnsError::OverlayUpstream(a)) if a == bad),
            "{r:?}"
        );
        assert!(
            r.expect_err("refused")
                .to_string()
                .contains(&bad.to_string())
        );
    }
    let ok: SocketAddr = "100.128.0.1:53".parse().expect("addr"); // just outside /10
    assert!(DnsForwarder::start(&[LO4], 0, vec![ok]).is_ok());
    assert!(matches!(
        DnsForwarder::start(&[LO4], 0, vec![]),
        Err(DnsError::NoUpstreams)
    ));
    let r = DnsForwarder::start(&[], 0, vec![up]);
    assert!(matches!(r, Err(DnsError::NoListenAddresses)));
}

#[test]
fn start_outside_a_runtime_is_an_error() {
    let up: SocketAddr = "127.0.0.1:53".parse().expect("addr");
    let r = DnsForwarder::start(&[LO4], 0, vec![up]);
    assert!(matches!(r, Err(DnsError::NoRuntime)), "{r:?}");
}

#[test]
fn host_upstreams_reads_nameserver_lines() {
    let lo = nix::net::if_::if_nametoindex("lo").expect("lo exists");
    let text = "\
# Generated by NetworkManager
; another comment: nameserver 9.9.9.9
search example.org
nameserver 127.0.0.53
nameserver\t1.1.1.1   # trailing words are ignored
nameserver 2001:db8::53
nameserver fe80::1%lo
nameserver fe80::2%7
nameserver fe80::3
nameserver fe80::4%no-such-interface0
nameserver 1.1.1.1
nameserver 10.0.0.1%eth0
nameserver not-an-address
nameserver
nameservers 8.8.8.8
  nameserver 8.8.4.4
#nameserver 8.8.8.8
options edns0 trust-ad
nameserver 192.0.2.1";
    let want: Vec<SocketAddr> = vec![
        "127.0.0.53:53".parse().expect("a"),
        "1.1.1.1:53".parse().expect("a"),
        "[2001:db8::53]:53".parse().expect("a"),
        SocketAddrV6::new("fe80::1".parse().expect("a"), 53, 0, lo).into(),
        SocketAddrV6::new("fe80::2".parse().expect("a"), 53, 0, 7).into(),
        "192.0.2.1:53".parse().expect("a"),
    ];
    assert_eq!(host_upstreams(text), want);
    assert_eq!(host_upstreams(""), Vec::<SocketAddr>::new());
    assert_eq!(
        host_upstreams("# nothing\nsearch lan\n"),
        Vec::<SocketAddr>::new()
    );
    // Windows line ends, as a copied file may have.
    assert_eq!(
        host_upstreams("nameserver 9.9.9.9\r\n"),
        vec!["9.9.9.9:53".parse::<SocketAddr>().expect("a")]
    );
}
