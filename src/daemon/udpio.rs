//! Batched UDP I/O through `quinn-udp` (issue 11): `recvmmsg` with UDP GRO on the way in
//! (one syscall, many datagrams, each GRO message split by its stride), and UDP GSO on the
//! way out (consecutive datagrams to one destination of one size leave in one `sendmsg` with
//! `UDP_SEGMENT`). Support is probed by quinn-udp when the socket is wrapped, and GSO is
//! switched off by it on the first send the kernel or NIC refuses (EIO/EINVAL), so the same
//! code degrades to one datagram per syscall. Invariants: datagrams leave in the order they
//! were queued; a GSO batch holds only same-size datagrams for one destination, except a
//! shorter last one (what UDP_SEGMENT allows); nothing allocates per datagram.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Messages per `recvmmsg`; each may hold a GRO list of up to 64 datagrams.
const RX_MSGS: usize = 8;
/// Bytes per receive buffer: the largest GRO list (64 KB, the kernel's limit) or datagram.
const RX_BUF: usize = 1 << 16;
/// Socket buffer size asked of the kernel, so bursts are not dropped before we read them.
const SOCKET_BUFFER: usize = 4 << 20;
/// The most bytes one GSO send carries (a UDP payload is at most 65,507 bytes over IPv4).
const GSO_MAX_BYTES: usize = 65_000;

/// Bind the daemon's socket: marked so our datagrams bypass the exit route and pass the kill
/// switch (docs/gateway.md), with large buffers, wrapped for batched I/O.
pub fn bind(listen: SocketAddr) -> anyhow::Result<Udp> {
    use anyhow::Context;
    let s = std::net::UdpSocket::bind(listen).with_context(|| format!("binding UDP {listen}"))?;
    s.set_nonblocking(true)?;
    let sock = socket2::SockRef::from(&s);
    if let Err(e) = sock.set_mark(crate::gateway::FWMARK) {
        tracing::warn!("SO_MARK on the UDP socket: {e} (using an exit would loop)");
    }
    // Best effort: the kernel caps these at net.core.[rw]mem_max.
    let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
    Ok(Udp::new(s)?)
}

/// The socket and what quinn-udp learned about it.
pub struct Udp {
    sock: UdpSocket,
    state: UdpSocketState,
}

impl Udp {
    /// Wrap a bound, non-blocking socket (quinn-udp turns on UDP_GRO, packet info, and
    /// IP_PMTUDISC_PROBE: the DF bit is set and the kernel never fragments our datagrams).
    pub fn new(sock: std::net::UdpSocket) -> io::Result<Self> {
        let state = UdpSocketState::new((&sock).into())?;
        Ok(Udp {
            sock: UdpSocket::from_std(sock)?,
            state,
        })
    }

    /// (datagrams per GSO send, datagrams per GRO receive) the kernel allows; 1 = none.
    pub fn offload(&self) -> (usize, usize) {
        (self.state.max_gso_segments(), self.state.gro_segments())
    }
}

/// Receive side: the messages of one `recvmmsg`.
pub struct UdpReader {
    bufs: Vec<Vec<u8>>,
    meta: [RecvMeta; RX_MSGS],
}

impl Default for UdpReader {
    fn default() -> Self {
        UdpReader {
            bufs: (0..RX_MSGS).map(|_| vec![0; RX_BUF]).collect(),
            meta: [RecvMeta::default(); RX_MSGS],
        }
    }
}

impl UdpReader {
    fn recv_now(&mut self, udp: &Udp) -> io::Result<usize> {
        let mut iovs: [IoSliceMut<'_>; RX_MSGS] = {
            let mut it = self.bufs.iter_mut();
            std::array::from_fn(|_| IoSliceMut::new(it.next().map_or(&mut [][..], |b| &mut b[..])))
        };
        udp.state
            .recv((&udp.sock).into(), &mut iovs, &mut self.meta)
    }

    /// Wait for datagrams; returns how many messages arrived (see [`UdpReader::message`]).
    pub async fn recv(&mut self, udp: &Udp) -> io::Result<usize> {
        udp.sock
            .async_io(Interest::READABLE, || self.recv_now(udp))
            .await
    }

    /// Datagrams already queued (`WouldBlock` otherwise).
    pub fn try_recv(&mut self, udp: &Udp) -> io::Result<usize> {
        udp.sock.try_io(Interest::READABLE, || self.recv_now(udp))
    }

    /// Message `i` of the last receive: its sender, its bytes and the stride that splits it
    /// into datagrams (the length itself when it is one datagram).
    pub fn message(&mut self, i: usize) -> Option<(SocketAddr, &mut [u8], usize)> {
        let m = self.meta.get(i)?;
        let buf = self.bufs.get_mut(i)?.get_mut(..m.len)?;
        Some((m.addr, buf, m.stride.max(1)))
    }
}

/// Send side: datagrams queued during one wakeup, grouped into GSO batches.
pub struct UdpWriter {
    buf: Vec<u8>,
    dst: Option<SocketAddr>,
    /// Size of every datagram in the batch but the last.
    seg: usize,
    count: usize,
    /// A shorter datagram ended the batch: UDP_SEGMENT allows only the last to be short.
    closed: bool,
}

impl Default for UdpWriter {
    fn default() -> Self {
        UdpWriter {
            buf: Vec::with_capacity(GSO_MAX_BYTES + RX_BUF),
            dst: None,
            seg: 0,
            count: 0,
            closed: false,
        }
    }
}

impl UdpWriter {
    /// Queue a copy of `d` for `dst`, sending the batch first when `d` cannot join it.
    pub async fn push(&mut self, udp: &Udp, d: &[u8], dst: SocketAddr) {
        let joins = self.count > 0
            && self.dst == Some(dst)
            && !self.closed
            && d.len() <= self.seg
            && self.count < udp.state.max_gso_segments()
            && self.buf.len() + d.len() <= GSO_MAX_BYTES;
        if !joins {
            self.flush(udp).await;
            self.dst = Some(dst);
            self.seg = d.len();
        }
        self.buf.extend_from_slice(d);
        self.count += 1;
        self.closed = d.len() < self.seg;
    }

    /// Send the queued batch. Send errors (unreachable, refused, a full buffer after the
    /// wait) lose the batch, as a lost datagram would; they are logged at trace level.
    pub async fn flush(&mut self, udp: &Udp) {
        let Some(dst) = self.dst.take() else { return };
        if self.count > 0 {
            let t = Transmit {
                destination: dst,
                ecn: None,
                contents: &self.buf,
                segment_size: (self.count > 1).then_some(self.seg),
                src_ip: None,
            };
            let sent = udp
                .sock
                .async_io(Interest::WRITABLE, || {
                    udp.state.try_send((&udp.sock).into(), &t)
                })
                .await;
            if let Err(e) = sent {
                tracing::trace!(%dst, datagrams = self.count, "UDP send: {e}");
            }
        }
        self.buf.clear();
        self.count = 0;
        self.closed = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn bound() -> std::net::UdpSocket {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_nonblocking(true).unwrap();
        s
    }

    /// Every datagram `Udp` receives, in order, split at the GRO stride.
    async fn drain(r: &mut UdpReader, udp: &Udp, want: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        while got.len() < want {
            let n = tokio::time::timeout(Duration::from_secs(2), r.recv(udp))
                .await
                .expect("datagrams arrive")
                .unwrap();
            for i in 0..n {
                let (_, buf, stride) = r.message(i).unwrap();
                got.extend(buf.chunks(stride).map(<[u8]>::to_vec));
            }
        }
        got
    }

    #[tokio::test]
    async fn batches_keep_order_sizes_and_destinations() {
        let tx = Udp::new(bound()).unwrap();
        let (rx1, rx2) = (Udp::new(bound()).unwrap(), Udp::new(bound()).unwrap());
        let (d1, d2) = (
            rx1.sock.local_addr().unwrap(),
            rx2.sock.local_addr().unwrap(),
        );
        let mut w = UdpWriter::default();
        // Same size, a short one (ends the batch), a full one again, then another peer, then
        // a bigger one (cannot join a batch of smaller ones).
        let plan: [(usize, SocketAddr); 8] = [
            (1000, d1),
            (1000, d1),
            (1000, d1),
            (400, d1),
            (1000, d1),
            (1000, d2),
            (1000, d1),
            (1400, d1),
        ];
        for (seq, (len, dst)) in plan.iter().enumerate() {
            let d = vec![seq as u8; *len];
            w.push(&tx, &d, *dst).await;
        }
        w.flush(&tx).await;
        let expect = |dst: SocketAddr| -> Vec<Vec<u8>> {
            plan.iter()
                .enumerate()
                .filter(|(_, (_, d))| *d == dst)
                .map(|(seq, (len, _))| vec![seq as u8; *len])
                .collect()
        };
        let (mut r1, mut r2) = (UdpReader::default(), UdpReader::default());
        assert_eq!(drain(&mut r1, &rx1, 7).await, expect(d1));
        assert_eq!(drain(&mut r2, &rx2, 1).await, expect(d2));
    }
}
