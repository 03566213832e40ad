//! LAN discovery I/O (DESIGN.md §4, docs/discovery.md): sends a signed beacon to
//! [`BEACON_GROUP`] on each configured interface at start and every interval, and reports
//! verified senders as [`Discovered`]. Invariants: one socket per interface, bound to that
//! interface by index, TTL 1, multicast loop off; a sender is reported only after its beacon's
//! signature checks and only if its counter is newer than the last one accepted for its id;
//! our own id is never reported; a missing interface or one without IPv4 is logged and retried
//! every interval, never fatal. Which beacons to report is decided by the socket-free
//! [`Tracker`]; this module's `run` only moves datagrams and instants.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::num::NonZeroU32;
use std::task::Poll;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::config::DiscoveryConfig;
use crate::identity::{Identity, NodeId};
use crate::wire::discovery::Beacon;
pub use crate::wire::discovery::{BEACON_GROUP, BEACON_PORT};

mod tracker;
pub use tracker::{
    Discovered, FORGET_AFTER, Ignored, MAX_NEIGHBOURS_TRACKED, MAX_TRACKED, NEIGHBOUR_FORGET_AFTER,
    REPORT_REFRESH, Tracker,
};

/// Receive buffer: longer than a beacon, so oversized datagrams are seen as such.
const RECV_BUF: usize = 512;

/// The next beacon counter: milliseconds since the Unix epoch, but always above `prev`.
pub fn next_counter(prev: u64, unix_millis: u64) -> u64 {
    prev.saturating_add(1).max(unix_millis)
}

/// One configured interface and, while it is usable, its beacon socket.
struct Link {
    name: String,
    open: Option<Open>,
    /// The last problem logged, so each is warned about once, not every interval.
    problem: Option<String>,
}

struct Open {
    ifindex: u32,
    addr: Ipv4Addr,
    socket: UdpSocket,
}

impl Link {
    fn trouble(&mut self, what: String) {
        if self.problem.as_deref() != Some(what.as_str()) {
            tracing::warn!(interface = %self.name, "discovery: {what}; retrying every interval");
            self.problem = Some(what);
        }
    }

    fn fine(&mut self) {
        if self.problem.take().is_some()
            && let Some(o) = &self.open
        {
            tracing::info!(interface = %self.name, addr = %o.addr, "discovery: beaconing");
        }
    }
}

/// What the kernel says about an interface: its index, whether it is up, its first IPv4.
struct IfState {
    ifindex: u32,
    up: bool,
    addr: Option<Ipv4Addr>,
}

/// Interfaces of the calling thread's network namespace (netlink via getifaddrs). Not
/// `/sys/class/net`: that shows the namespace sysfs was mounted in, which differs from the
/// thread's after `setns`.
fn scan() -> nix::Result<HashMap<String, IfState>> {
    let mut out: HashMap<String, IfState> = HashMap::new();
    for a in nix::ifaddrs::getifaddrs()? {
        let e = out.entry(a.interface_name.clone()).or_insert(IfState {
            ifindex: 0,
            up: false,
            addr: None,
        });
        e.up |= a.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP);
        let Some(sa) = a.address else { continue };
        if let Some(link) = sa.as_link_addr() {
            e.ifindex = u32::try_from(link.ifindex()).unwrap_or(0);
        } else if let Some(v4) = sa.as_sockaddr_in()
            && e.addr.is_none()
        {
            e.addr = Some(v4.ip());
        }
    }
    Ok(out)
}

/// A beacon socket on one interface: bound to it by index and to the group, joined, TTL 1,
/// loop off, sending from `addr`.
fn open_socket(ifindex: u32, addr: Ipv4Addr, port: u16) -> std::io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    // Beacons are the daemon's own traffic: they pass the kill switch even with allow_lan off.
    let _ = s.set_mark(crate::gateway::FWMARK);
    s.bind_device_by_index_v4(NonZeroU32::new(ifindex))?;
    // Bound to the group address: unicast datagrams to this port are not delivered here.
    s.bind(&SocketAddrV4::new(BEACON_GROUP, port).into())?;
    s.join_multicast_v4_n(&BEACON_GROUP, &InterfaceIndexOrAddress::Index(ifindex))?;
    s.set_multicast_all_v4(false)?;
    s.set_multicast_if_v4(&addr)?;
    s.set_multicast_ttl_v4(1)?;
    s.set_multicast_loop_v4(false)?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

/// Bring each link's socket in line with the interface as it is now.
fn refresh(links: &mut [Link], port: u16) {
    let ifs = match scan() {
        Ok(ifs) => ifs,
        Err(e) => {
            tracing::warn!("discovery: listing interfaces: {e}");
            return;
        }
    };
    for l in links {
        let Some(st) = ifs.get(&l.name) else {
            l.open = None;
            l.trouble("interface does not exist".into());
            continue;
        };
        let Some(addr) = st.addr else {
            l.open = None;
            l.trouble("interface has no IPv4 address".into());
            continue;
        };
        if !st.up {
            l.open = None;
            l.trouble("interface is down".into());
            continue;
        }
        if st.ifindex == 0 {
            // Index 0 would mean "no device" to SO_BINDTOIFINDEX: never bind unscoped.
            l.open = None;
            l.trouble("interface index unknown".into());
            continue;
        }
        if l.open
            .as_ref()
            .is_some_and(|o| o.ifindex == st.ifindex && o.addr == addr)
        {
            continue;
        }
        match open_socket(st.ifindex, addr, port) {
            Ok(socket) => {
                tracing::info!(interface = %l.name, %addr, ifindex = st.ifindex, "discovery: beaconing");
                l.open = Some(Open {
                    ifindex: st.ifindex,
                    addr,
                    socket,
                });
                l.problem = None;
            }
            Err(e) => {
                l.open = None;
                l.trouble(format!("opening beacon socket: {e}"));
            }
        }
    }
}

/// Wait for a datagram on any open link: (link index, length, source).
async fn recv_any(
    links: &[Link],
    buf: &mut [u8],
    start: usize,
) -> (usize, usize, SocketAddr, std::io::Result<()>) {
    std::future::poll_fn(|cx| {
        let n = links.len();
        for k in 0..n {
            let i = (start + k) % n;
            let Some(o) = links.get(i).and_then(|l| l.open.as_ref()) else {
                continue;
            };
            let mut rb = ReadBuf::new(buf);
            match o.socket.poll_recv_from(cx, &mut rb) {
                Poll::Ready(Ok(src)) => return Poll::Ready((i, rb.filled().len(), src, Ok(()))),
                Poll::Ready(Err(e)) => {
                    return Poll::Ready((i, 0, SocketAddr::from(([0, 0, 0, 0], 0)), Err(e)));
                }
                Poll::Pending => {}
            }
        }
        Poll::Pending
    })
    .await
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Run LAN discovery until `tx` is closed: beacon that this node (`identity`) listens on UDP
/// `listen_port`, and send every neighbour found to `tx`. `configured` are the `[[peer]]` ids
/// (used when `accept = "configured"`). Returns at once if `cfg.enabled` is false. Spawn it
/// (`tokio::spawn`); it runs on the caller's runtime and never blocks a thread. Errors only on
/// arguments no valid config produces.
pub async fn run(
    cfg: DiscoveryConfig,
    identity: Identity,
    listen_port: u16,
    configured: Vec<NodeId>,
    tx: mpsc::Sender<Discovered>,
) -> anyhow::Result<()> {
    // Nobody reports verified neighbours: the sender stays alive so `recv` just waits.
    let (_keep, verified) = mpsc::channel(1);
    run_with(cfg, identity, listen_port, configured, tx, verified).await
}

/// [`run`], also told by the node which ids completed a handshake (`verified`): their beacon
/// counters are kept apart from strangers' and cannot be evicted by a flood of fake ids.
pub async fn run_with(
    cfg: DiscoveryConfig,
    identity: Identity,
    listen_port: u16,
    configured: Vec<NodeId>,
    tx: mpsc::Sender<Discovered>,
    mut verified: mpsc::Receiver<NodeId>,
) -> anyhow::Result<()> {
    if !cfg.enabled {
        return Ok(());
    }
    anyhow::ensure!(
        listen_port != 0,
        "discovery: listen port 0 cannot be advertised"
    );
    anyhow::ensure!(cfg.port != 0, "discovery: beacon port 0");
    anyhow::ensure!(!cfg.interval.is_zero(), "discovery: zero interval");
    let mut links: Vec<Link> = cfg
        .interfaces
        .iter()
        .map(|name| Link {
            name: name.clone(),
            open: None,
            problem: None,
        })
        .collect();
    let mut tracker = Tracker::new(identity.id(), cfg.accept, configured);
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut counter = 0u64;
    let mut buf = [0u8; RECV_BUF];
    let mut start = 0usize;
    tracing::info!(id = %identity.id(), port = cfg.port, interval = ?cfg.interval, interfaces = ?cfg.interfaces, "discovery: started");
    loop {
        tokio::select! {
            _ = tx.closed() => return Ok(()),
            _ = tick.tick() => {
                refresh(&mut links, cfg.port);
                counter = next_counter(counter, unix_millis());
                let beacon = Beacon::sign(&identity, listen_port, counter).encode();
                let dst = SocketAddrV4::new(BEACON_GROUP, cfg.port);
                for l in &mut links {
                    let Some(o) = &l.open else { continue };
                    match o.socket.send_to(&beacon, dst).await {
                        Ok(_) => l.fine(),
                        Err(e) => l.trouble(format!("sending beacon: {e}")),
                    }
                }
                tracker.expire(Instant::now());
            }
            Some(id) = verified.recv() => {
                if !tracker.protect(id, Instant::now()) {
                    tracing::debug!(%id, "discovery: neighbour counters full; not protected");
                }
            }
            (i, n, src, r) = recv_any(&links, &mut buf, start) => {
                start = i.wrapping_add(1);
                let name = links.get(i).map_or("?", |l| l.name.as_str());
                if let Err(e) = r {
                    tracing::debug!(interface = %name, "discovery: receive: {e}");
                    continue;
                }
                let SocketAddr::V4(src) = src else { continue };
                let data = buf.get(..n).unwrap_or_default();
                match tracker.on_datagram(data, src, name, Instant::now()) {
                    Ok(Some(d)) => {
                        tracing::debug!(id = %d.id, endpoint = %d.endpoint, interface = %d.interface, "discovery: neighbour");
                        if tx.send(d).await.is_err() {
                            return Ok(());
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::trace!(%src, interface = %name, "discovery: ignored: {e}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
