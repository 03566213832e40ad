//! The forwarder's tasks: one per listening socket, each owning (in a `JoinSet`) the tasks of
//! its queries or connections, so aborting a listener ends everything it started, and a
//! listener told to stop returns only once those are gone (they hold its socket). Invariants:
//! a query is relayed as the bytes received and an answer as the bytes received, never looked
//! into beyond its first two bytes (the DNS ID, which must equal the query's); an answer is
//! read only from a socket connected to the upstream it was sent to; every query and
//! connection holds an [`Admission`](super::Admission) for as long as it lives.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::timeout;

use super::{Counters, MAX_QUERY_LEN, MIN_QUERY_LEN, Shared};

/// The largest DNS message: UDP answers can be this large with EDNS, TCP ones by framing.
const MAX_ANSWER_LEN: usize = 65535;
/// Pause after an error from `recv_from` or `accept` (out of descriptors, say), so a lasting
/// error does not spin the task.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

fn well_formed(len: usize) -> bool {
    (MIN_QUERY_LEN..=MAX_QUERY_LEN).contains(&len)
}

/// Answer UDP queries on `sock` until aborted or told to stop (a change on `stop`, or its
/// sender gone).
pub(super) async fn serve_udp(
    sock: Arc<UdpSocket>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<()>,
) {
    // One byte more than a query may have, so an over-long one is seen as such.
    let mut buf = vec![0u8; MAX_QUERY_LEN + 1];
    let mut queries = JoinSet::new();
    loop {
        while queries.try_join_next().is_some() {}
        let received = tokio::select! {
            _ = stop.changed() => {
                queries.shutdown().await;
                return;
            }
            r = sock.recv_from(&mut buf) => r,
        };
        let (n, client) = match received {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "DNS receive failed");
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        let c = &shared.counters;
        Counters::bump(&c.queries);
        let Some(query) = buf.get(..n).filter(|q| well_formed(q.len())) else {
            tracing::trace!(%client, len = n, "DNS query of a bad length dropped");
            Counters::bump(&c.dropped_malformed);
            continue;
        };
        let Some(admission) = shared.admit_udp(client.ip()) else {
            tracing::trace!(%client, "DNS query over the in-flight bound dropped");
            Counters::bump(&c.dropped_busy);
            continue;
        };
        let query = query.to_vec();
        let (sock, shared) = (sock.clone(), shared.clone());
        queries.spawn(async move {
            let _admission = admission;
            let c = &shared.counters;
            let Some(answer) = relay_udp(&shared, &query).await else {
                Counters::bump(&c.timeouts);
                return;
            };
            // The answer leaves from the socket the query came in on, so from the address the
            // client asked.
            match sock.send_to(&answer, client).await {
                Ok(_) => Counters::bump(&c.answered),
                Err(e) => tracing::debug!(%client, error = %e, "DNS answer not sent"),
            }
        });
    }
}

/// Ask each upstream in turn until one answers.
async fn relay_udp(shared: &Shared, query: &[u8]) -> Option<Vec<u8>> {
    for &upstream in &shared.upstreams {
        match timeout(shared.limits.upstream_timeout, ask_udp(upstream, query)).await {
            Ok(Ok(answer)) => return Some(answer),
            Ok(Err(e)) => tracing::debug!(%upstream, error = %e, "DNS upstream failed"),
            Err(_) => tracing::debug!(%upstream, "DNS upstream timed out"),
        }
    }
    None
}

/// One query to one upstream over a fresh socket, connected to it: the kernel then delivers
/// only datagrams from that address and port, and picks a random source port, which with the
/// ID is what keeps an off-path forger out. Answers with another ID are ignored.
async fn ask_udp(upstream: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
    let any: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(any).await?;
    sock.connect(upstream).await?;
    sock.send(query).await?;
    // Allocated once the socket is readable, so a query waiting on a silent upstream holds no
    // answer buffer.
    let mut buf = Vec::new();
    loop {
        sock.readable().await?;
        buf.resize(MAX_ANSWER_LEN, 0);
        let n = match sock.try_recv(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        if same_id(buf.get(..n).unwrap_or_default(), query) {
            buf.truncate(n);
            buf.shrink_to_fit();
            return Ok(buf);
        }
        tracing::debug!(%upstream, "DNS answer with another ID ignored");
    }
}

fn same_id(answer: &[u8], query: &[u8]) -> bool {
    matches!((answer.get(..2), query.get(..2)), (Some(a), Some(q)) if a == q)
}

/// Accept TCP connections on `listener` until aborted or told to stop.
pub(super) async fn serve_tcp(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            _ = stop.changed() => {
                connections.shutdown().await;
                return;
            }
            r = listener.accept() => r,
        };
        let (stream, client) = match accepted {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "DNS accept failed");
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        let Some(admission) = shared.admit_tcp(client.ip()) else {
            tracing::trace!(%client, "DNS TCP connection over the bound closed");
            Counters::bump(&shared.counters.dropped_busy);
            continue; // dropping the stream closes it
        };
        let shared = shared.clone();
        connections.spawn(async move {
            let _admission = admission;
            serve_connection(stream, &shared).await;
            tracing::trace!(%client, "DNS TCP connection closed");
        });
    }
}

/// Read length-prefixed queries (RFC 7766) one at a time, relay each, write its answer back.
/// The connection closes at end of stream, on an error, when idle for the idle timeout, on a
/// query of a bad length, and when no upstream answered (so the client retries at once rather
/// than waiting for an answer that will not come).
async fn serve_connection(mut stream: TcpStream, shared: &Shared) {
    let idle = shared.limits.tcp_idle_timeout;
    let c = &shared.counters;
    loop {
        let mut len = [0u8; 2];
        if !matches!(timeout(idle, stream.read_exact(&mut len)).await, Ok(Ok(_))) {
            return;
        }
        let len = usize::from(u16::from_be_bytes(len));
        Counters::bump(&c.queries);
        if !well_formed(len) {
            Counters::bump(&c.dropped_malformed);
            return;
        }
        let mut query = vec![0u8; len];
        if !matches!(
            timeout(idle, stream.read_exact(&mut query)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let Some(answer) = relay_tcp(shared, &query).await else {
            Counters::bump(&c.timeouts);
            return;
        };
        if !matches!(timeout(idle, stream.write_all(&answer)).await, Ok(Ok(()))) {
            return;
        }
        Counters::bump(&c.answered);
    }
}

/// Ask each upstream in turn over TCP until one answers; the answer comes back framed.
async fn relay_tcp(shared: &Shared, query: &[u8]) -> Option<Vec<u8>> {
    for &upstream in &shared.upstreams {
        match timeout(shared.limits.upstream_timeout, ask_tcp(upstream, query)).await {
            Ok(Ok(answer)) => return Some(answer),
            Ok(Err(e)) => tracing::debug!(%upstream, error = %e, "DNS upstream (TCP) failed"),
            Err(_) => tracing::debug!(%upstream, "DNS upstream (TCP) timed out"),
        }
    }
    None
}

/// One query to one upstream over a new TCP connection. Returns the answer with its 2-byte
/// length prefix, ready to write back; answers with another ID are skipped.
async fn ask_tcp(upstream: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    let len = u16::try_from(query.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
    let mut framed = Vec::with_capacity(2 + query.len());
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    loop {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await?;
        let n = usize::from(u16::from_be_bytes(len));
        let mut answer = vec![0u8; 2 + n];
        let (prefix, body) = answer.split_at_mut(2);
        prefix.copy_from_slice(&len);
        stream.read_exact(body).await?;
        if same_id(body, query) {
            return Ok(answer);
        }
        tracing::debug!(%upstream, "DNS answer (TCP) with another ID ignored");
    }
}
