//! Batched TUN I/O with kernel offload (issue 11): the TUN is opened with IFF_VNET_HDR and
//! TSO/GRO (tun-rs `offload(true)`), so one read brings up to 64 KB of TCP segments that tun-rs
//! splits into MTU-sized packets, and the packets we write in one batch are coalesced back
//! into large segments (tun-rs's GRO table) before they reach the kernel's TCP stack. Where
//! the kernel refuses offload, the device is plain and the same calls move one packet each.
//! Invariants: every packet the node sees is at most the TUN MTU (tun-rs segments before we
//! look); nothing here allocates per packet once the buffers have grown to their working size.

use std::io;

use tun_rs::{AsyncDevice, DeviceBuilder, GROTable, IDEAL_BATCH_SIZE, VIRTIO_NET_HDR_LEN};

use crate::node::{HEADROOM, TAILROOM};

/// The largest IP packet (and GSO super-packet) the TUN can hand us.
const MAX_PACKET: usize = 65535;
/// Where a packet starts in a write buffer: room for the virtio header tun-rs writes in front.
const WRITE_OFFSET: usize = 16;
const _: () = assert!(WRITE_OFFSET >= VIRTIO_NET_HDR_LEN);

/// Build the TUN with offload, or without it when the kernel refuses (no IFF_VNET_HDR or
/// no TUNSETOFFLOAD): the data path then works one packet per syscall as before.
pub fn build(make: impl Fn() -> DeviceBuilder) -> io::Result<AsyncDevice> {
    match make().offload(true).build_async() {
        Ok(dev) => Ok(dev),
        Err(e) => {
            tracing::warn!("TUN offload unavailable ({e}); one packet per read and write");
            make().build_async()
        }
    }
}

/// Whether the TUN was opened with TSO/GRO (for the log line and `status`).
pub fn offload(tun: &AsyncDevice) -> bool {
    tun.tcp_gso()
}

/// A read error that leaves the device usable: a malformed offload packet tun-rs could not
/// split (no OS error code), as opposed to the device going away.
pub fn is_packet_error(e: &io::Error) -> bool {
    e.raw_os_error().is_none() && e.kind() != io::ErrorKind::WouldBlock
}

/// Read side: one read, up to `IDEAL_BATCH_SIZE` packets, each at `HEADROOM` in its buffer
/// with `TAILROOM` after it, ready for `Node::handle_tun`.
pub struct TunReader {
    raw: Vec<u8>,
    /// Packet buffers: packet `i` is `bufs[i][HEADROOM..HEADROOM + sizes[i]]`.
    pub bufs: Vec<Vec<u8>>,
    /// Packet lengths.
    pub sizes: Vec<usize>,
}

impl Default for TunReader {
    fn default() -> Self {
        TunReader {
            raw: vec![0; VIRTIO_NET_HDR_LEN + MAX_PACKET],
            bufs: (0..IDEAL_BATCH_SIZE)
                .map(|_| vec![0; HEADROOM + MAX_PACKET + TAILROOM])
                .collect(),
            sizes: vec![0; IDEAL_BATCH_SIZE],
        }
    }
}

impl TunReader {
    /// Wait for the next read; returns how many packets it held.
    pub async fn recv(&mut self, tun: &AsyncDevice) -> io::Result<usize> {
        tun.recv_multiple(&mut self.raw, &mut self.bufs, &mut self.sizes, HEADROOM)
            .await
    }

    /// The next read if one is queued (`WouldBlock` otherwise).
    pub fn try_recv(&mut self, tun: &AsyncDevice) -> io::Result<usize> {
        tun.try_recv_multiple(&mut self.raw, &mut self.bufs, &mut self.sizes, HEADROOM)
    }
}

/// Write side: packets for the TUN collected during one wakeup, written together so tun-rs
/// can coalesce a flow's segments (GRO) into one write.
pub struct TunWriter {
    bufs: Vec<Vec<u8>>,
    len: usize,
    gro: GROTable,
    /// Packets written since the last [`TunWriter::take_written`].
    written: usize,
}

impl Default for TunWriter {
    fn default() -> Self {
        TunWriter {
            bufs: Vec::with_capacity(IDEAL_BATCH_SIZE),
            len: 0,
            gro: GROTable::new(),
            written: 0,
        }
    }
}

impl TunWriter {
    /// Queue a copy of `pkt` (one copy: the packet sits in the datagram buffer, which the
    /// next receive reuses). Returns true when the batch is full and should be flushed.
    pub fn push(&mut self, pkt: &[u8]) -> bool {
        if self.len == self.bufs.len() {
            // Full capacity up front: tun-rs coalesces a flow's segments into the first
            // one's buffer only when it has room for 64 KB, and never reallocates to make it.
            self.bufs
                .push(Vec::with_capacity(2 * WRITE_OFFSET + MAX_PACKET));
        }
        if let Some(b) = self.bufs.get_mut(self.len) {
            b.clear();
            b.resize(WRITE_OFFSET, 0);
            b.extend_from_slice(pkt);
            self.len += 1;
        }
        self.len >= IDEAL_BATCH_SIZE
    }

    /// Write what is queued. Errors are per packet (a full queue, a packet the kernel
    /// refuses) and logged; the batch is emptied either way.
    pub async fn flush(&mut self, tun: &AsyncDevice) {
        if self.len == 0 {
            return;
        }
        let n = std::mem::take(&mut self.len);
        self.written += n;
        if let Some(bufs) = self.bufs.get_mut(..n)
            && let Err(e) = tun.send_multiple(&mut self.gro, bufs, WRITE_OFFSET).await
        {
            tracing::debug!("TUN write: {e}");
        }
    }

    /// How many packets were written since the last call (and forget it).
    pub fn take_written(&mut self) -> usize {
        std::mem::take(&mut self.written)
    }
}
