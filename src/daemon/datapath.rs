//! The per-packet glue between the batched I/O (`tunio`, `udpio`) and the sans-IO node: a
//! TUN packet in, its sealed datagram queued for a GSO send; a datagram in, its packet queued
//! for the TUN's GRO write or its relayed datagram queued out. Invariant: every packet a read
//! brought is handed to the node (never read and dropped), and nothing here decides anything.

use std::net::SocketAddr;
use std::time::Instant;

use super::{tunio, udpio};
use crate::node::{Node, UdpOut};

/// Packets handled per wakeup before other events get a turn.
pub(super) const BATCH: usize = 64;

/// `now` is read once per receive, not per packet: a batch arrived at one instant, and the
/// clock read was 2.5 % of a relay's CPU.
pub(super) async fn on_tun(
    node: &mut Node,
    now: Instant,
    udp: &udpio::Udp,
    udp_out: &mut udpio::UdpWriter,
    tbuf: &mut [u8],
    n: usize,
) {
    if let Some((range, dst)) = node.handle_tun(now, tbuf, n)
        && let Some(d) = tbuf.get(range)
    {
        udp_out.push(udp, d, dst).await;
    }
}

// The loop's own I/O handles and buffers, borrowed separately; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub(super) async fn on_datagram(
    node: &mut Node,
    now: Instant,
    udp: &udpio::Udp,
    udp_out: &mut udpio::UdpWriter,
    tun: &tun_rs::AsyncDevice,
    tun_out: &mut tunio::TunWriter,
    msg: &mut [u8],
    from: SocketAddr,
) {
    match node.handle_udp(now, from, msg) {
        UdpOut::Tun(range) => {
            if let Some(pkt) = msg.get(range)
                && tun_out.push(pkt)
            {
                tun_out.flush(tun).await;
            }
        }
        UdpOut::Forward(len, dst) => {
            if let Some(d) = msg.get(..len) {
                udp_out.push(udp, d, dst).await;
            }
        }
        UdpOut::None => {}
    }
}

/// Queue the node's control datagrams behind the data already queued, then send them all.
pub(super) async fn flush(node: &mut Node, udp: &udpio::Udp, udp_out: &mut udpio::UdpWriter) {
    while let Some(t) = node.poll_transmit() {
        udp_out.push(udp, &t.data, t.dst).await;
    }
    udp_out.flush(udp).await;
}
