//! The per-packet glue between the batched I/O (`tunio`, `udpio`) and the sans-IO node: a
//! TUN packet in, its sealed datagram queued for a GSO send; a datagram in, its packet queued
//! for the TUN's GRO write or its relayed datagram queued out. Invariant: every packet a read
//! brought is handed to the node (never read and dropped), and nothing here decides anything.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use super::{sealer, tunio, udpio};
use crate::node::{Node, UdpOut};
use crate::session::aead::DefaultAead;
use crate::session::keypair::SealJob;

/// Packets handled per wakeup before other events get a turn.
pub(super) const BATCH: usize = 64;

/// Per-read state of the deferred-seal path, kept across reads so nothing allocates.
#[derive(Default)]
pub(super) struct TunBatch {
    outs: Vec<Option<(Range<usize>, SocketAddr)>>,
    jobs: Vec<Option<(usize, SealJob<DefaultAead>)>>,
}

/// All `k` packets of one TUN read: the node decides and reserves counters for each, the
/// seals run on the pool (split across its threads when the read is large), then the
/// datagrams are queued in read order. `now` is read once per read, not per packet: a batch
/// arrived at one instant, and the clock read was 2.5 % of a relay's CPU.
// The loop's own I/O handles and buffers, borrowed separately; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub(super) async fn on_tun_batch(
    node: &mut Node,
    now: Instant,
    udp: &udpio::Udp,
    udp_out: &mut udpio::UdpWriter,
    tun_in: &mut tunio::TunReader,
    k: usize,
    pool: &mut sealer::Pool,
    b: &mut TunBatch,
) {
    if pool.threads() == 1 {
        // Nothing to lend: seal inline, without a job's key reference per packet.
        for (buf, &len) in tun_in.bufs.iter_mut().zip(&tun_in.sizes).take(k) {
            if let Some((range, dst)) = node.handle_tun(now, buf, len)
                && let Some(d) = buf.get(range)
            {
                udp_out.push(udp, d, dst).await;
            }
        }
        return;
    }
    b.outs.clear();
    b.jobs.clear();
    for (buf, &len) in tun_in.bufs.iter_mut().zip(&tun_in.sizes).take(k) {
        match node.handle_tun_deferred(now, buf, len) {
            Some((range, dst, job)) => {
                b.jobs.push(job.map(|j| (range.start, j)));
                b.outs.push(Some((range, dst)));
            }
            None => {
                b.jobs.push(None);
                b.outs.push(None);
            }
        }
    }
    pool.seal(&mut tun_in.bufs, &mut b.jobs);
    for (buf, out) in tun_in.bufs.iter().zip(&b.outs) {
        if let Some((range, dst)) = out
            && let Some(d) = buf.get(range.clone())
        {
            udp_out.push(udp, d, *dst).await;
        }
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
