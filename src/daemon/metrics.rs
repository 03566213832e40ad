//! Prometheus metrics (`[metrics] listen`, off by default): `GET /metrics` in the OpenMetrics
//! text format of `prometheus-client`, rendered by the event loop from the node's state at
//! each scrape. Invariants: labels come only from what the node holds now (neighbours in its
//! bounded table, fixed drop reasons), so label sets stay bounded however many neighbours come
//! and go; the HTTP side is bounded (16 connections, 8 KiB requests, 5 s to send one) and
//! can only stall itself; amounts are integer base units.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::node::Node;

type Labels = Vec<(&'static str, String)>;
type U64Gauge = Gauge<u64, std::sync::atomic::AtomicU64>;

const MAX_CONNECTIONS: usize = 16;
const MAX_REQUEST: usize = 8192;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

fn counter(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let f = Family::<Labels, Counter>::default();
    reg.register(name, help, f.clone());
    f
}

fn gauge(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, U64Gauge> {
    let f = Family::<Labels, U64Gauge>::default();
    reg.register(name, help, f.clone());
    f
}

fn units(a: crate::money::Amount) -> u64 {
    u64::try_from(a.units()).unwrap_or(u64::MAX)
}

/// The metrics text for the node as it is now.
pub fn render(node: &Node, now: Instant) -> String {
    let mut reg = Registry::with_prefix("bitcloud");
    let rx = counter(
        &mut reg,
        "peer_rx_bytes",
        "Bytes received from a neighbour (inner).",
    );
    let tx = counter(
        &mut reg,
        "peer_tx_bytes",
        "Bytes sent to a neighbour (inner).",
    );
    let hs = counter(
        &mut reg,
        "peer_handshakes",
        "Completed handshakes with a neighbour.",
    );
    let up = gauge(&mut reg, "peer_up", "1 while the neighbour has a session.");
    for p in node.peer_status(now) {
        let l = vec![("peer", p.id.to_string())];
        rx.get_or_create(&l).inc_by(p.stats.rx_bytes);
        tx.get_or_create(&l).inc_by(p.stats.tx_bytes);
        hs.get_or_create(&l).inc_by(p.stats.handshakes);
        up.get_or_create(&l).set(u64::from(p.connected));
    }
    let drops = counter(&mut reg, "drops", "Packets dropped, by reason.");
    for (reason, n) in node.drops().to_map() {
        drops
            .get_or_create(&vec![("reason", reason.to_string())])
            .inc_by(n);
    }
    let g = gauge(
        &mut reg,
        "node",
        "Node-wide gauges: sessions, routes, neighbours.",
    );
    g.get_or_create(&vec![("what", "e2e_sessions".into())])
        .set(node.session_status(now).len() as u64);
    g.get_or_create(&vec![("what", "routed_nodes".into())])
        .set(node.router().routed_nodes() as u64);
    g.get_or_create(&vec![("what", "neighbours".into())])
        .set(node.peer_status(now).len() as u64);
    let money = gauge(
        &mut reg,
        "money_units",
        "Paid and unpaid amounts over the live channels, in base units (1 CC = 10^9).",
    );
    let (mut earned, mut spent, mut owed_us, mut we_owe) = (0u64, 0u64, 0u64, 0u64);
    for c in node.channel_views(now) {
        if c.direction == "incoming" {
            earned = earned.saturating_add(units(c.cumulative_paid));
            owed_us = owed_us.saturating_add(units(c.unpaid));
        } else {
            spent = spent.saturating_add(units(c.cumulative_paid));
            we_owe = we_owe.saturating_add(units(c.unpaid));
        }
    }
    for (what, v) in [
        ("earned", earned),
        ("spent", spent),
        ("unpaid_owed_to_us", owed_us),
        ("unpaid_we_owe", we_owe),
    ] {
        money.get_or_create(&vec![("what", what.into())]).set(v);
    }
    // One series per state, 1 for the current one (docs/wallet-failure.md).
    let wallet = gauge(
        &mut reg,
        "wallet_state",
        "1 for the wallet's condition: ok, disk_full, read_only or error.",
    );
    let h = node.wallet_health();
    for s in [
        crate::node::WalletState::Ok,
        crate::node::WalletState::DiskFull,
        crate::node::WalletState::ReadOnly,
        crate::node::WalletState::Error,
    ] {
        wallet
            .get_or_create(&vec![("state", s.as_str().into())])
            .set(u64::from(h.state == s));
    }
    let exit = gauge(
        &mut reg,
        "exit_in_use",
        "1 for the exit internet traffic goes to.",
    );
    if let Some(x) = node.exit_in_use() {
        exit.get_or_create(&vec![("exit", x.to_string())]).set(1);
    }
    let mut out = String::new();
    if encode(&mut out, &reg).is_err() {
        out.clear();
    }
    out
}

/// Serve `GET /metrics` on `listener`; each scrape asks the event loop for the text.
pub async fn serve(listener: TcpListener, ask: mpsc::Sender<oneshot::Sender<String>>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue; // over the bound: the connection is dropped
        };
        let ask = ask.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, ask)).await;
            drop(permit);
        });
    }
}

async fn answer(
    mut s: TcpStream,
    ask: mpsc::Sender<oneshot::Sender<String>>,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut chunk).await?;
        if n == 0 || buf.len() + n > MAX_REQUEST {
            return Ok(());
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    let (status, ctype, body) = if buf.starts_with(b"GET /metrics ") {
        let (tx, rx) = oneshot::channel();
        let text = match ask.send(tx).await {
            Ok(()) => rx.await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            text,
        )
    } else {
        ("404 Not Found", "text/plain", "try /metrics\n".to_string())
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body.as_bytes()).await?;
    s.shutdown().await
}
