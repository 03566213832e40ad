//! The I/O shell around the sans-IO `Node`: TUN device, UDP socket, timers, control socket
//! and signals on tokio. Invariant: no protocol decision is made here; this module only
//! moves bytes and instants between the OS and the node.

pub mod control;
pub mod discovery;

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::json;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::identity::Identity;
use crate::node::{HEADROOM, Node, PeerConfig, TAILROOM};

/// How often the event loop runs node timers (handshake retries, keepalives, expiry).
const TICK: Duration = Duration::from_millis(100);
/// Datagram and packet buffers: the largest UDP payload.
const BUF_LEN: usize = 65536;
/// Socket buffer size asked of the kernel, so bursts are not dropped before we read them.
const SOCKET_BUFFER: usize = 4 << 20;

/// Run the daemon until SIGINT or SIGTERM.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let identity = Identity::load(&cfg.key_file)?;
    let id = identity.id();
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data_dir {}", cfg.data_dir.display()))?;

    let udp = bind_udp(cfg.listen)?;
    let tun = tun_rs::DeviceBuilder::new()
        .name(&cfg.tun)
        .mtu(cfg.mtu)
        .ipv4(id.ipv4(), 10, None)
        .ipv6(id.ipv6(), 8)
        .build_async()
        .with_context(|| format!("creating TUN device {} (needs CAP_NET_ADMIN)", cfg.tun))?;
    let listener = control::bind(&cfg.control_socket)?;
    let (ctl_tx, mut ctl_rx) = mpsc::channel(16);
    let ctl_task = tokio::spawn(control::serve(listener, ctl_tx));

    let peers: Vec<PeerConfig> = cfg
        .peers
        .iter()
        .map(|p| PeerConfig {
            id: p.id,
            endpoint: p.endpoint,
        })
        .collect();
    let started = Instant::now();
    let unix_nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed).context("OS random number generator")?;
    let mut node: Node = Node::new(
        &identity,
        &peers,
        cfg.timers,
        started,
        unix_nanos,
        u64::from_le_bytes(seed),
    )?;
    node.start(started);
    tracing::info!(%id, ipv6 = %id.ipv6(), ipv4 = %id.ipv4(), listen = %cfg.listen, tun = %cfg.tun, peers = peers.len(), "bitcloud up");

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tbuf = vec![0u8; BUF_LEN + HEADROOM + TAILROOM];
    let mut ubuf = vec![0u8; BUF_LEN];
    flush(&mut node, &udp).await;
    loop {
        tokio::select! {
            r = tun.recv(&mut tbuf[HEADROOM..HEADROOM + BUF_LEN]) => {
                let n = r.context("reading TUN")?;
                if let Some((len, dst)) = node.handle_tun(Instant::now(), &mut tbuf, n) {
                    send(&udp, &tbuf[..len], dst).await;
                }
            }
            r = udp.recv_from(&mut ubuf) => {
                match r {
                    Ok((n, from)) => {
                        let Some(msg) = ubuf.get_mut(..n) else { continue };
                        if let Some(range) = node.handle_udp(Instant::now(), from, msg)
                            && let Some(pkt) = msg.get(range)
                            && let Err(e) = tun.send(pkt).await {
                            tracing::debug!("TUN write: {e}");
                        }
                    }
                    // ICMP errors surface here as ECONNREFUSED etc.; they are not fatal.
                    Err(e) => tracing::trace!("UDP receive: {e}"),
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                if node.poll_timeout().is_some_and(|t| t <= now) {
                    node.handle_timeout(now);
                }
            }
            Some(req) = ctl_rx.recv() => {
                let answer = answer(&cfg, &node, started, &req.body);
                let _ = req.reply.send(answer);
            }
            _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: shutting down"); break; }
            _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
        }
        flush(&mut node, &udp).await;
    }
    ctl_task.abort();
    let _ = std::fs::remove_file(&cfg.control_socket);
    Ok(())
}

fn bind_udp(listen: SocketAddr) -> anyhow::Result<UdpSocket> {
    let s = std::net::UdpSocket::bind(listen).with_context(|| format!("binding UDP {listen}"))?;
    s.set_nonblocking(true)?;
    let sock = socket2::SockRef::from(&s);
    // Best effort: the kernel caps these at net.core.[rw]mem_max.
    let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
    Ok(UdpSocket::from_std(s)?)
}

async fn send(udp: &UdpSocket, data: &[u8], dst: SocketAddr) {
    if let Err(e) = udp.send_to(data, dst).await {
        tracing::trace!(%dst, "UDP send: {e}");
    }
}

async fn flush(node: &mut Node, udp: &UdpSocket) {
    while let Some(t) = node.poll_transmit() {
        send(udp, &t.data, t.dst).await;
    }
}

fn answer(
    cfg: &Config,
    node: &Node,
    started: Instant,
    req: &serde_json::Value,
) -> serde_json::Value {
    let now = Instant::now();
    match req.get("cmd").and_then(|c| c.as_str()) {
        Some("status") => {
            let id = node.id();
            json!({
                "id": id,
                "ipv6": id.ipv6(),
                "ipv4": id.ipv4(),
                "listen": cfg.listen,
                "listen_port": cfg.listen.port(),
                "tun": cfg.tun,
                "mtu": cfg.mtu,
                "uptime_secs": now.saturating_duration_since(started).as_secs(),
                "peers": node.peer_status(now),
                "drops": node.drops().to_map(),
            })
        }
        Some(other) => json!({"error": format!("unknown command {other:?}")}),
        None => json!({"error": "request needs a \"cmd\""}),
    }
}
