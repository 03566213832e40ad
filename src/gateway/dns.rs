//! The exit's DNS forwarder (issue 9, docs/dns.md): answers DNS on the exit's overlay
//! addresses, UDP and TCP, by relaying each query's bytes unchanged to an upstream resolver and
//! the upstream's answer back. It never parses DNS. Invariants: an answer is relayed only if it
//! came from the upstream the query was sent to (a connected socket) and its first two bytes
//! (the DNS ID) equal the query's; no upstream is in the overlay ranges (forwarding there would
//! loop into the mesh); UDP queries in flight (in total and per client address) and TCP
//! connections (in total and per client address) are bounded, and whatever is over a bound is
//! dropped and counted, never queued.
//!
//! How it is meant to be started (the daemon, on an exit, once its TUN has its addresses):
//!
//! ```ignore
//! let upstreams = match &config.exit.dns {
//!     Some(list) => list.clone(),                      // `[exit] dns = [...]`, port 53
//!     None => host_upstreams(&std::fs::read_to_string("/etc/resolv.conf")?),
//! };
//! let dns = DnsForwarder::start(&[overlay_v4.into(), overlay_v6.into()], DNS_PORT, upstreams)?;
//! // ... dns.stats() for `bitcloud status`; dns.stop().await (or drop) when the exit role ends.
//! ```
//!
//! The sockets are bound with IP_FREEBIND / IPV6_FREEBIND, so the start works while the TUN's
//! IPv6 address is still tentative (duplicate address detection), and IPV6_V6ONLY, so the v6
//! socket never takes v4 traffic meant for the v4 one. `start` needs a tokio runtime; the tasks
//! it spawns end when the handle is dropped or stopped.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;

mod relay;
#[cfg(test)]
mod tests;

/// The DNS port, UDP and TCP.
pub const DNS_PORT: u16 = 53;
/// A DNS header is 12 bytes; anything shorter is not a query and is dropped.
pub const MIN_QUERY_LEN: usize = 12;
/// The longest query relayed. Real queries are a few hundred bytes at most; the bound keeps one
/// query's buffer small.
pub const MAX_QUERY_LEN: usize = 4096;
/// Receive buffer asked for on each UDP listening socket, so a burst of queries waits in the
/// kernel instead of being dropped there (capped by `net.core.rmem_max`).
const UDP_RECV_BUFFER: usize = 1 << 20;
/// Backlog of each TCP listening socket.
const TCP_BACKLOG: i32 = 128;

/// The forwarder's bounds and timers. `Default` gives the production values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsLimits {
    /// UDP queries waiting for an upstream, over all listening sockets.
    pub max_in_flight: usize,
    /// UDP queries waiting for an upstream from one client address (a client has one overlay
    /// address, so this is per client and keeps one client from taking all of `max_in_flight`).
    pub max_in_flight_per_client: usize,
    /// How long one upstream has to answer before the next one is tried.
    pub upstream_timeout: Duration,
    /// TCP connections open at once, over all listening sockets.
    pub max_tcp_connections: usize,
    /// TCP connections open at once from one client address.
    pub max_tcp_connections_per_client: usize,
    /// A TCP connection with no query (or a query arriving no faster) for this long is closed.
    pub tcp_idle_timeout: Duration,
}

impl Default for DnsLimits {
    fn default() -> Self {
        Self {
            max_in_flight: 512,
            max_in_flight_per_client: 64,
            upstream_timeout: Duration::from_secs(2),
            max_tcp_connections: 64,
            max_tcp_connections_per_client: 8,
            tcp_idle_timeout: Duration::from_secs(10),
        }
    }
}

/// A snapshot of the forwarder's counters (since start) and gauges (now).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DnsStats {
    /// Queries received: UDP datagrams and TCP messages, whatever became of them.
    pub queries: u64,
    /// Answers relayed back to the client.
    pub answered: u64,
    /// Queries no upstream answered: each timed out, refused or failed.
    pub timeouts: u64,
    /// Queries (and TCP connections) dropped because a bound was reached.
    pub dropped_busy: u64,
    /// Queries dropped for their length (under a DNS header or over [`MAX_QUERY_LEN`]).
    pub dropped_malformed: u64,
    /// UDP queries waiting for an upstream now.
    pub in_flight: u64,
    /// TCP connections open now.
    pub tcp_connections: u64,
}

/// What went wrong starting the forwarder.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// An upstream is in 100.64.0.0/10 or fd00::/8: queries would go back into the mesh.
    #[error(
        "upstream resolver {0} is in the overlay ranges (100.64.0.0/10, fd00::/8): \
         forwarding there would loop into the mesh"
    )]
    OverlayUpstream(SocketAddr),
    /// No upstream resolver to forward to.
    #[error("no upstream DNS resolvers")]
    NoUpstreams,
    /// No address to listen on.
    #[error("no addresses to answer DNS on")]
    NoListenAddresses,
    /// `start` was called outside a tokio runtime.
    #[error("the DNS forwarder must be started inside a tokio runtime")]
    NoRuntime,
    /// A listening socket could not be made.
    #[error("DNS over {proto} on {addr}: {source}")]
    Bind {
        /// `"udp"` or `"tcp"`.
        proto: &'static str,
        /// The address we tried to bind.
        addr: SocketAddr,
        /// The system's error.
        #[source]
        source: io::Error,
    },
}

/// The running forwarder. Dropping it (or [`DnsForwarder::stop`]) ends all its tasks, which
/// closes its sockets.
#[derive(Debug)]
pub struct DnsForwarder {
    tasks: Vec<JoinHandle<()>>,
    /// Tells the listener tasks to end their queries and connections and return.
    stop: watch::Sender<()>,
    shared: Arc<Shared>,
    udp: Vec<SocketAddr>,
    tcp: Vec<SocketAddr>,
}

impl DnsForwarder {
    /// Answer DNS over UDP and TCP on `port` of each `listen` address (the exit's overlay
    /// addresses, port [`DNS_PORT`]), forwarding to `upstreams` in order, with the default
    /// [`DnsLimits`]. Port 0 lets each socket pick a free port ([`Self::udp_addrs`] and
    /// [`Self::tcp_addrs`] say which); tests use that.
    pub fn start(
        listen: &[IpAddr],
        port: u16,
        upstreams: Vec<SocketAddr>,
    ) -> Result<Self, DnsError> {
        Self::start_with(listen, port, upstreams, DnsLimits::default())
    }

    /// [`Self::start`] with other bounds and timers.
    pub fn start_with(
        listen: &[IpAddr],
        port: u16,
        upstreams: Vec<SocketAddr>,
        limits: DnsLimits,
    ) -> Result<Self, DnsError> {
        check_upstreams(&upstreams)?;
        if listen.is_empty() {
            return Err(DnsError::NoListenAddresses);
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| DnsError::NoRuntime)?;
        // Every socket is bound before any task starts, so a failure leaves nothing running.
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        for ip in listen {
            let addr = SocketAddr::new(*ip, port);
            udp.push(bind_udp(addr).map_err(bind_error("udp", addr))?);
            tcp.push(bind_tcp(addr).map_err(bind_error("tcp", addr))?);
        }
        let shared = Arc::new(Shared {
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            udp_clients: Arc::new(ClientSlots::new(limits.max_in_flight_per_client)),
            tcp_connections: Arc::new(Semaphore::new(limits.max_tcp_connections)),
            tcp_clients: Arc::new(ClientSlots::new(limits.max_tcp_connections_per_client)),
            counters: Counters::default(),
            upstreams,
            limits,
        });
        let (stop, stopped) = watch::channel(());
        let mut this = Self {
            tasks: Vec::new(),
            stop,
            shared: shared.clone(),
            udp: Vec::new(),
            tcp: Vec::new(),
        };
        for (sock, local) in udp {
            this.udp.push(local);
            let task = relay::serve_udp(Arc::new(sock), shared.clone(), stopped.clone());
            this.tasks.push(runtime.spawn(task));
        }
        for (listener, local) in tcp {
            this.tcp.push(local);
            let task = relay::serve_tcp(listener, shared.clone(), stopped.clone());
            this.tasks.push(runtime.spawn(task));
        }
        tracing::info!(udp = ?this.udp, tcp = ?this.tcp, upstreams = ?shared.upstreams, "DNS forwarder started");
        Ok(this)
    }

    /// The UDP addresses answered on.
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp
    }

    /// The TCP addresses answered on.
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp
    }

    /// Where queries go, in the order tried.
    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.shared.upstreams
    }

    /// The counters now.
    pub fn stats(&self) -> DnsStats {
        let c = &self.shared.counters;
        let l = &self.shared.limits;
        let used = |max: usize, s: &Semaphore| (max.saturating_sub(s.available_permits())) as u64;
        DnsStats {
            queries: c.queries.load(Ordering::Relaxed),
            answered: c.answered.load(Ordering::Relaxed),
            timeouts: c.timeouts.load(Ordering::Relaxed),
            dropped_busy: c.dropped_busy.load(Ordering::Relaxed),
            dropped_malformed: c.dropped_malformed.load(Ordering::Relaxed),
            in_flight: used(l.max_in_flight, &self.shared.in_flight),
            tcp_connections: used(l.max_tcp_connections, &self.shared.tcp_connections),
        }
    }

    /// End every task and wait until they are gone, so the sockets are closed and the ports
    /// free when this returns (dropping the handle ends them too, but without waiting).
    pub async fn stop(mut self) {
        self.stop.send_replace(());
        for t in std::mem::take(&mut self.tasks) {
            // A listener returns once its queries and connections are gone; a JoinError
            // (it panicked) leaves nothing more to wait for.
            if let Err(e) = t.await {
                tracing::warn!(error = %e, "DNS forwarder task failed");
            }
        }
        tracing::info!(udp = ?self.udp, "DNS forwarder stopped");
    }
}

impl Drop for DnsForwarder {
    fn drop(&mut self) {
        // Each listener task owns its query and connection tasks (a JoinSet), so aborting the
        // listeners ends those too (soon after, not by the time this returns).
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The upstreams of a host: the `nameserver` lines of its resolver file (resolv.conf(5)), in
/// order, port 53, duplicates once. As glibc reads it, the keyword must start the line, and
/// lines starting with `#` or `;` are comments; anything after the address is ignored. IPv6
/// zones are kept as the scope id (`fe80::1%eth0` by the interface's index, `fe80::1%2` as
/// given); an address with an unknown zone, a zone on IPv4, or a link-local IPv6 address without
/// a zone (unreachable: no link to send it on) is skipped. A stub like systemd-resolved's
/// 127.0.0.53 is fine: the forwarder runs on the host. No nameserver lines give an empty list
/// (glibc would then use 127.0.0.1; the caller decides).
pub fn host_upstreams(resolv_conf: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in resolv_conf.lines() {
        let Some(rest) = line.strip_prefix("nameserver") else {
            continue;
        };
        if !rest.starts_with([' ', '\t']) {
            continue; // `nameservers ...` or a bare keyword
        }
        let Some(word) = rest.split_whitespace().next() else {
            continue;
        };
        match parse_nameserver(word) {
            Some(addr) if !out.contains(&addr) => out.push(addr),
            Some(_) => {}
            None => tracing::debug!(nameserver = word, "resolver address skipped"),
        }
    }
    out
}

fn parse_nameserver(word: &str) -> Option<SocketAddr> {
    let (ip, zone) = match word.split_once('%') {
        Some((ip, zone)) => (ip, Some(zone)),
        None => (word, None),
    };
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => zone.is_none().then(|| SocketAddr::from((a, DNS_PORT))),
        IpAddr::V6(a) => {
            let scope = match zone {
                None => 0,
                Some(z) => z
                    .parse::<u32>()
                    .ok()
                    .or_else(|| nix::net::if_::if_nametoindex(z).ok())?,
            };
            let link_local = a.segments()[0] & 0xffc0 == 0xfe80;
            if link_local && scope == 0 {
                return None;
            }
            Some(SocketAddrV6::new(a, DNS_PORT, 0, scope).into())
        }
    }
}

/// Refuse an empty list and any upstream in the overlay ranges, IPv4-mapped ones included.
fn check_upstreams(upstreams: &[SocketAddr]) -> Result<(), DnsError> {
    if upstreams.is_empty() {
        return Err(DnsError::NoUpstreams);
    }
    for up in upstreams {
        let ip = match up.ip() {
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4),
            v4 => v4,
        };
        if crate::route::is_overlay(ip) {
            return Err(DnsError::OverlayUpstream(*up));
        }
    }
    Ok(())
}

fn bind_error(proto: &'static str, addr: SocketAddr) -> impl FnOnce(io::Error) -> DnsError {
    move |source| DnsError::Bind {
        proto,
        addr,
        source,
    }
}

fn listening_socket(addr: SocketAddr, ty: Type, proto: Protocol) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
        s.set_freebind_v6(true)?;
    } else {
        s.set_freebind_v4(true)?;
    }
    s.set_nonblocking(true)?;
    Ok(s)
}

/// A bound UDP socket and the address it got.
fn bind_udp(addr: SocketAddr) -> io::Result<(UdpSocket, SocketAddr)> {
    let s = listening_socket(addr, Type::DGRAM, Protocol::UDP)?;
    if let Err(e) = s.set_recv_buffer_size(UDP_RECV_BUFFER) {
        tracing::debug!(error = %e, "DNS socket keeps the default receive buffer");
    }
    s.bind(&addr.into())?;
    let sock = UdpSocket::from_std(s.into())?;
    let local = sock.local_addr()?;
    Ok((sock, local))
}

/// A listening TCP socket and the address it got.
fn bind_tcp(addr: SocketAddr) -> io::Result<(TcpListener, SocketAddr)> {
    let s = listening_socket(addr, Type::STREAM, Protocol::TCP)?;
    // A restarted forwarder binds again while the old connections sit in TIME_WAIT.
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(TCP_BACKLOG)?;
    let listener = TcpListener::from_std(s.into())?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// What the listener tasks share.
#[derive(Debug)]
struct Shared {
    upstreams: Vec<SocketAddr>,
    limits: DnsLimits,
    counters: Counters,
    in_flight: Arc<Semaphore>,
    udp_clients: Arc<ClientSlots>,
    tcp_connections: Arc<Semaphore>,
    tcp_clients: Arc<ClientSlots>,
}

#[derive(Debug, Default)]
struct Counters {
    queries: AtomicU64,
    answered: AtomicU64,
    timeouts: AtomicU64,
    dropped_busy: AtomicU64,
    dropped_malformed: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The right to keep one query (or connection) going: a slot of the total bound and one of
/// its client's; both are given back on drop.
#[derive(Debug)]
struct Admission {
    _total: OwnedSemaphorePermit,
    _client: ClientSlot,
}

impl Shared {
    /// Admit a UDP query from `client`, or `None` if a bound is reached.
    fn admit_udp(&self, client: IpAddr) -> Option<Admission> {
        admit(&self.in_flight, &self.udp_clients, client)
    }

    /// Admit a TCP connection from `client`, or `None` if a bound is reached.
    fn admit_tcp(&self, client: IpAddr) -> Option<Admission> {
        admit(&self.tcp_connections, &self.tcp_clients, client)
    }
}

fn admit(total: &Arc<Semaphore>, clients: &Arc<ClientSlots>, ip: IpAddr) -> Option<Admission> {
    let permit = total.clone().try_acquire_owned().ok()?;
    let slot = ClientSlots::take(clients, ip)?;
    Some(Admission {
        _total: permit,
        _client: slot,
    })
}

/// How many slots each client address holds. An entry exists only while its count is above
/// zero, so the map is no larger than the total bound.
#[derive(Debug)]
struct ClientSlots {
    max: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

impl ClientSlots {
    fn new(max: usize) -> Self {
        Self {
            max,
            held: Mutex::new(HashMap::new()),
        }
    }

    fn take(this: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        // The lock is never held across an await or a panic point; a poisoned map is still
        // consistent (every update is one statement).
        let mut held = this.held.lock().unwrap_or_else(PoisonError::into_inner);
        let n = held.entry(ip).or_insert(0);
        if *n >= this.max {
            if *n == 0 {
                held.remove(&ip);
            }
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            slots: this.clone(),
            ip,
        })
    }
}

#[derive(Debug)]
struct ClientSlot {
    slots: Arc<ClientSlots>,
    ip: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut held = self
            .slots
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = held.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.ip);
            }
        }
    }
}
