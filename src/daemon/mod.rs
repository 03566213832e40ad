//! The I/O shell around the sans-IO `Node`: TUN device, UDP socket, timers, control socket
//! and signals on tokio. Invariant: no protocol decision is made here; this module only
//! moves bytes and instants between the OS and the node.

mod answer;
mod clock;
pub mod control;
mod datapath;
pub mod discovery;
mod exit_api;
pub mod gateway;
mod ledger;
mod metrics;
mod notify;
mod reload;
pub mod sealer;
mod share;
mod tunio;
mod udpio;
pub mod wallet;

use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::identity::Identity;
use crate::node::{MoneyConfig, Node, NodeConfig, PeerConfig, Restored};
use crate::route::RouterConfig;
use datapath::{BATCH, TunBatch, flush, on_datagram, on_tun_batch};

/// How often the event loop runs node timers (handshake retries, keepalives, expiry).
const TICK: Duration = Duration::from_millis(100);
/// A pass that wrote at most this many packets to the TUN yields the CPU afterwards (see the
/// loop): small writes are interactive traffic whose reader waits on us; bulk passes write
/// more, and yielding there only reorders a busy host's pipeline.
const YIELD_MAX_PACKETS: usize = 4;

/// Run the daemon until SIGINT or SIGTERM.
pub async fn run(mut cfg: Config) -> anyhow::Result<()> {
    let identity = Identity::load(&cfg.key_file)?;
    let id = identity.id();
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data_dir {}", cfg.data_dir.display()))?;

    let udp = udpio::bind(cfg.listen)?;
    let tun = tunio::build(|| {
        tun_rs::DeviceBuilder::new()
            .name(&cfg.tun)
            .mtu(cfg.mtu)
            .ipv4(id.ipv4(), 10, None)
            .ipv6(id.ipv6(), 8)
    })
    .with_context(|| format!("creating TUN device {} (needs CAP_NET_ADMIN)", cfg.tun))?;
    // Best effort: a TUN with a link-local address only sends chatter the mesh drops.
    match crate::gateway::policy::connect() {
        Ok(h) => {
            if let Err(e) = crate::gateway::tun::drop_link_local(&h, &cfg.tun).await {
                tracing::warn!("removing the TUN's link-local address: {e}");
            }
        }
        Err(e) => tracing::warn!("netlink: {e}"),
    }
    let listener = control::bind(&cfg.control_socket)?;
    let (ctl_tx, mut ctl_rx) = mpsc::channel(16);
    let ctl_task = tokio::spawn(control::serve(listener, ctl_tx));

    let peers = peer_configs(&cfg);
    let started = Instant::now();
    let mut clock = clock::StartClock::start(&cfg.data_dir, started);
    let unix_nanos = clock.unix_nanos;
    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed).context("OS random number generator")?;
    let wallet_path = cfg.data_dir.join(WALLET_FILE);
    let wallet_cfg = crate::wallet::WalletConfig {
        spend_limit: cfg.wallet.spend_limit,
    };
    // A fresh price epoch every run: the fee may have changed in the config, and a payer must
    // never see two prices under one epoch. A wallet that cannot store starts degraded (paid
    // relaying paused until the actor makes a fresh epoch durable) instead of failing
    // (docs/wallet-failure.md).
    let mut opened = wallet::open(&wallet_path, wallet_cfg).await?;
    let (epoch, headroom) = (opened.epoch, opened.headroom);
    let channels = std::mem::take(&mut opened.channels);
    let mut router = router_config(&seed, &cfg.pricing);
    router.price_epoch = epoch;
    router.max_routes_per_neighbour = cfg.routing.max_routes_per_neighbour;
    router.max_routes = cfg.routing.max_routes;
    if unix_nanos > 0 {
        // Seqnos start at the wall clock in seconds (mod 2^32): with at most one bump a second,
        // a restarted node starts above every seqno it signed before (docs/routing.md).
        router.initial_seqno = (unix_nanos / 1_000_000_000) as u32;
    }
    if !cfg.testing.pay {
        tracing::warn!("[testing] pay = false: this node forwards but never pays (tests only)");
    }
    let node_cfg = NodeConfig {
        timers: cfg.timers,
        router,
        mtu: cfg.mtu,
        accept_discovered: true,
        ciphers: cfg.ciphers,
        money: MoneyConfig {
            payer: cfg.wallet.payer(cfg.pricing.max_price_per_mib),
            payee: cfg.wallet.payee(),
            pay: cfg.testing.pay,
            headroom,
            unknown_credit_window: cfg.wallet.unknown_credit_window,
            ..MoneyConfig::default()
        },
    };
    let mut node: Node = Node::new(
        &identity,
        &peers,
        node_cfg,
        started,
        unix_nanos,
        u64::from_le_bytes(seed),
    )?;
    node.set_wallet_health(opened.health.clone());
    for c in channels {
        node.restore_channel(
            c.id,
            Restored {
                latest: c.latest,
                meter: c.meter,
            },
        );
    }
    let mut ledger_link = ledger::spawn(&cfg, &identity, &mut node)
        .await
        .context("starting the on-chain ledger ([ledger] kind = \"evm\")")?;
    node.start(started);
    let mut gw = gateway::Gateway::new(&cfg, started);
    gw.start(
        &mut node,
        crate::gateway::cleanup::start_mode(&cfg),
        started,
    )
    .await
    .context("setting up the exit role or the client's exit routes")?;
    let mut shared = share::Share::new(&cfg, started);
    shared.start()?;
    let (wal_tx, wal_rx) = mpsc::unbounded_channel();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let wallet_task = tokio::spawn(wallet::run(
        opened,
        wallet_path,
        wallet_cfg,
        wal_rx,
        done_tx,
    ));
    let crypto_threads = cfg.crypto_threads.unwrap_or_else(|| {
        sealer::auto_threads(std::thread::available_parallelism().map_or(1, |n| n.get()))
    });
    tracing::info!(%id, ipv6 = %id.ipv6(), ipv4 = %id.ipv4(), listen = %cfg.listen, tun = %cfg.tun, tun_offload = tunio::offload(&tun), udp_offload = ?udp.offload(), crypto_threads, peers = peers.len(), "bitcloud up");

    let (mut disc_task, mut disc_rx, mut verified_tx) = spawn_discovery(&cfg, &identity);
    let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let (fee_tx, mut fee_rx) = mpsc::unbounded_channel::<FeeDone>();
    let (scrape_tx, mut scrape_rx) = mpsc::channel::<tokio::sync::oneshot::Sender<String>>(4);
    let metrics_task = match cfg.metrics {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding [metrics] listen {addr}"))?;
            tracing::info!(%addr, "Prometheus metrics at /metrics");
            Some(tokio::spawn(metrics::serve(l, scrape_tx)))
        }
        None => None,
    };
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut notifier = notify::Notifier::new(Instant::now());
    notifier.ready(&status_line(&node));
    let mut tun_in = tunio::TunReader::default();
    let mut tun_out = tunio::TunWriter::default();
    let mut udp_in = udpio::UdpReader::default();
    let mut udp_out = udpio::UdpWriter::default();
    let mut tun_batch = TunBatch::default();
    let mut seal_pool = sealer::Pool::start(crypto_threads)
        .with_context(|| format!("starting {crypto_threads} crypto threads"))?;
    flush(&mut node, &udp, &mut udp_out).await;
    loop {
        tokio::select! {
            r = tun_in.recv(&tun) => {
                // Drain what is already queued before going back to the poller: one wakeup,
                // many packets. With offload one read holds up to 64 KB of segments, so the
                // budget counts packets, and a read is made only while budget is left (a read
                // made and not handled would drop its packets).
                let mut r = r;
                let mut handled = 0;
                loop {
                    match r {
                        Ok(k) => {
                            let now = Instant::now();
                            on_tun_batch(&mut node, now, &udp, &mut udp_out, &mut tun_in, k, &mut seal_pool, &mut tun_batch).await;
                            handled += k.max(1);
                        }
                        Err(e) if tunio::is_packet_error(&e) => {
                            tracing::debug!("TUN read: {e}");
                            handled += 1;
                        }
                        Err(e) => return Err(e).context("reading TUN"),
                    }
                    if handled >= BATCH {
                        break;
                    }
                    r = tun_in.try_recv(&tun);
                    if matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
                        break;
                    }
                }
            }
            r = udp_in.recv(&udp) => {
                // As for the TUN: a receive is made only while budget is left, since every
                // datagram it brings must be handled. One message can be a GRO list.
                let mut r = r;
                let mut handled = 0;
                loop {
                    match r {
                        Ok(msgs) => {
                            let now = Instant::now();
                            for i in 0..msgs {
                                let Some((from, buf, stride)) = udp_in.message(i) else { break };
                                for d in buf.chunks_mut(stride) {
                                    on_datagram(&mut node, now, &udp, &mut udp_out, &tun, &mut tun_out, d, from).await;
                                    handled += 1;
                                }
                            }
                        }
                        // ICMP errors surface here as ECONNREFUSED etc.; they are not fatal.
                        Err(e) => {
                            tracing::trace!("UDP receive: {e}");
                            handled += 1;
                        }
                    }
                    if handled >= BATCH {
                        break;
                    }
                    r = udp_in.try_recv(&udp);
                    if matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
                        break;
                    }
                }
                // One batch for the TUN, so tun-rs can coalesce each flow's segments (GRO).
                tun_out.flush(&tun).await;
            }
            _ = tick.tick() => {
                let now = Instant::now();
                if node.poll_timeout().is_some_and(|t| t <= now) {
                    node.handle_timeout(now);
                }
                gw.repair(now).await;
                shared.repair(now);
                gw.watch_uplink(&mut node, now);
                notifier.tick(now, || status_line(&node));
                clock.tick(now);
                if let Some(l) = &mut ledger_link {
                    l.tick(&mut node, now);
                }
            }
            Some(o) = ledger::LedgerLink::recv(&mut ledger_link) => {
                ledger::LedgerLink::apply(&mut node, o, Instant::now());
                flush(&mut node, &udp, &mut udp_out).await;
            }
            Some(d) = disc_rx.recv() => {
                shared.discovered(&d, Instant::now());
                if node.discovered(d.id, d.endpoint, Instant::now()) {
                    tracing::info!(peer = %d.id, endpoint = %d.endpoint, interface = %d.interface, "discovered neighbour");
                }
            }
            Some(d) = done_rx.recv() => {
                let now = Instant::now();
                node.wallet_done(d, now);
                while let Ok(d) = done_rx.try_recv() {
                    node.wallet_done(d, now);
                }
            }
            Some(req) = ctl_rx.recv() => {
                use crate::api::Request;
                match &req.request {
                    Request::Wallet { what, .. } => {
                        let live = node.channel_views(Instant::now());
                        let body = serde_json::to_value(&req.request).unwrap_or_default();
                        let reply = match (&ledger_link, what.as_str()) {
                            (Some(l), "balance") => {
                                let (wtx, wrx) = tokio::sync::oneshot::channel();
                                l.balance(&node, wrx, req.reply);
                                wtx
                            }
                            _ => req.reply,
                        };
                        let _ = wal_tx.send(wallet::Req::Query { body, live, reply });
                        continue;
                    }
                    Request::Ledger { action, peer } => {
                        ledger::LedgerLink::request(&ledger_link, &node, action, peer.as_deref(), req.reply);
                        continue;
                    }
                    Request::Exit { mode } => {
                        let answer = exit_cmd(&cfg, &mut node, &mut gw, mode.as_deref()).await;
                        let _ = req.reply.send(answer);
                        flush(&mut node, &udp, &mut udp_out).await;
                        continue;
                    }
                    Request::Price { set: Some(fee) } => {
                        // The new epoch is made durable first, without the loop waiting on it.
                        request_fee(&wal_tx, &fee_tx, *fee, Some(req.reply));
                        continue;
                    }
                    Request::Share { off } => {
                        let _ = req.reply.send(shared.answer(*off, &cfg, &node, Instant::now()));
                        continue;
                    }
                    Request::Reload => {
                        let _ = req.reply.send(serde_json::json!({ "error": "reload: send SIGHUP (systemctl reload bitcloud)" }));
                        continue;
                    }
                    _ => {}
                }
                let mut answer = answer::answer(&cfg, &node, started, &req.request);
                if req.request == Request::Status
                    && let Some(o) = answer.as_object_mut()
                {
                    o.insert("exit".into(), exit_api::status(&node, &gw));
                    o.insert("crypto".into(), seal_pool.status());
                }
                let _ = req.reply.send(answer);
            }
            Some(done) = fee_rx.recv() => {
                let answer = match done.epoch {
                    Ok(epoch) => {
                        node.set_fee_epoch(done.fee, epoch, Instant::now());
                        tracing::info!(fee_per_mib = done.fee, epoch, "forwarding fee changed");
                        answer::answer(&cfg, &node, started, &crate::api::Request::Price { set: None })
                    }
                    Err(e) => serde_json::json!({ "error": e }),
                };
                if let Some(reply) = done.reply {
                    let _ = reply.send(answer);
                }
            }
            Some(reply) = scrape_rx.recv() => {
                let _ = reply.send(metrics::render(&node, Instant::now()));
            }
            _ = sighup.recv() => {
                notify::Notifier::reloading();
                let out = reload::reload(&mut cfg, &mut node, &mut gw).await;
                if out.apply_share {
                    shared.update(&cfg);
                }
                if let Some(fee) = out.fee {
                    request_fee(&wal_tx, &fee_tx, fee, None);
                }
                if out.discovery_changed {
                    disc_task.abort();
                    (disc_task, disc_rx, verified_tx) = spawn_discovery(&cfg, &identity);
                }
                notifier.ready(&status_line(&node));
            }
            _ = sigint.recv() => { tracing::info!("SIGINT: shutting down"); break; }
            _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
        }
        while let Some(crate::exit::ExitEvent::Selected(sel)) = node.poll_exit_event() {
            if let Err(e) = gw.exit_changed(sel).await {
                tracing::warn!("applying the exit change: {e:#}");
            }
        }
        flush(&mut node, &udp, &mut udp_out).await;
        while let Some(p) = node.poll_tun() {
            if tun_out.push(&p) {
                tun_out.flush(&tun).await;
            }
        }
        tun_out.flush(&tun).await;
        if (1..=YIELD_MAX_PACKETS).contains(&tun_out.take_written()) {
            // What we wrote to the TUN woke its readers (an application's socket, ping), and
            // the kernel tends to queue such a wakee on our CPU, behind us: it would wait out
            // the rest of this pass and our next `epoll_wait`. Yielding lets it run now; when
            // nothing else is runnable here this returns at once. Ping RTT median 0.207 ->
            // 0.159 ms on the 2-vCPU bench host (boringtun 0.140), throughput unchanged
            // (docs/profile.md, "Yielding after small TUN writes").
            std::thread::yield_now();
        }
        while let Some(op) = node.poll_wallet() {
            let _ = wal_tx.send(wallet::Req::Op(op));
        }
        // Best effort: a full channel only loses the protection of one neighbour's counter.
        while let Some(id) = node.poll_verified() {
            let _ = verified_tx.try_send(id);
        }
    }
    notify::Notifier::stopping();
    ctl_task.abort();
    if let Some(l) = ledger_link.take() {
        l.stop();
    }
    disc_task.abort();
    if let Some(t) = metrics_task {
        t.abort();
    }
    // Retract the default routes (an exit) and remove routes, kill switch and DNS settings
    // (a client) while the socket can still tell the neighbours.
    gw.shutdown(&mut node, Instant::now()).await;
    flush(&mut node, &udp, &mut udp_out).await;
    // Keep what was metered since the last checkpoint, then let the wallet close cleanly.
    node.checkpoint_now();
    while let Some(op) = node.poll_wallet() {
        let _ = wal_tx.send(wallet::Req::Op(op));
    }
    drop(wal_tx);
    if let Err(e) = wallet_task.await {
        tracing::warn!("wallet task: {e}");
    }
    let _ = std::fs::remove_file(&cfg.control_socket);
    Ok(())
}

/// The node's view of the config's `[[peer]]` list.
fn peer_configs(cfg: &Config) -> Vec<PeerConfig> {
    cfg.peers
        .iter()
        .map(|p| PeerConfig {
            id: p.id,
            endpoint: p.endpoint,
        })
        .collect()
}

type Discovery = (
    tokio::task::JoinHandle<anyhow::Result<()>>,
    mpsc::Receiver<discovery::Discovered>,
    mpsc::Sender<crate::identity::NodeId>,
);

/// Start LAN discovery for `cfg` (again after a reload that changed it).
fn spawn_discovery(cfg: &Config, identity: &Identity) -> Discovery {
    let (disc_tx, disc_rx) = mpsc::channel(64);
    let (verified_tx, verified_rx) = mpsc::channel(256);
    let task = tokio::spawn(discovery::run_with(
        cfg.discovery.clone(),
        Identity::from_secret(identity.secret()),
        cfg.listen.port(),
        cfg.peers.iter().map(|p| p.id).collect(),
        disc_tx,
        verified_rx,
    ));
    (task, disc_rx, verified_tx)
}

/// systemd's STATUS= line: neighbours, routes, the exit in use.
fn status_line(node: &Node) -> String {
    let now = Instant::now();
    let up = node
        .peer_status(now)
        .iter()
        .filter(|p| p.last_handshake_secs.is_some())
        .count();
    let exit = match node.exit_in_use() {
        Some(x) => format!("exit {}", &x.to_string()[..16]),
        None if node.router().config().exit => "serving as an exit".to_string(),
        None => "no exit".to_string(),
    };
    format!(
        "{up} neighbours up, {} routed nodes, {exit}",
        node.router().routed_nodes()
    )
}

/// `exit use MODE` or `exit list`.
async fn exit_cmd(
    cfg: &Config,
    node: &mut Node,
    gw: &mut gateway::Gateway,
    mode: Option<&str>,
) -> serde_json::Value {
    let now = Instant::now();
    if let Some(m) = mode {
        let mode = match crate::config::parse_mode(m) {
            Ok(mode) => mode,
            Err(e) => return serde_json::json!({ "error": e }),
        };
        if let Err(e) = gw.set_mode(node, mode, now).await {
            return serde_json::json!({ "error": format!("{e:#}") });
        }
        if let Err(e) = crate::gateway::cleanup::save_mode(&cfg.data_dir, mode) {
            tracing::warn!("saving the exit mode: {e}");
        }
        tracing::info!(mode = m, "exit mode changed");
    }
    exit_api::list(node, now)
}

/// The wallet database inside `data_dir`.
pub use crate::api::wallet::WALLET_FILE;

/// A fee change whose new price epoch the wallet has (or has failed to) make durable.
struct FeeDone {
    fee: u64,
    epoch: Result<u32, String>,
    reply: Option<tokio::sync::oneshot::Sender<serde_json::Value>>,
}

/// Ask the wallet for a durable new price epoch for `fee`; the answer comes back on `done`,
/// so the event loop never waits on the wallet's fsync.
fn request_fee(
    wal: &mpsc::UnboundedSender<wallet::Req>,
    done: &mpsc::UnboundedSender<FeeDone>,
    fee: u64,
    reply: Option<tokio::sync::oneshot::Sender<serde_json::Value>>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let stopped = || Err("wallet task stopped".to_string());
    if wal.send(wallet::Req::BumpEpoch(tx)).is_err() {
        let _ = done.send(FeeDone {
            fee,
            epoch: stopped(),
            reply,
        });
        return;
    }
    let done = done.clone();
    tokio::spawn(async move {
        let epoch = rx.await.unwrap_or_else(|_| stopped());
        let _ = done.send(FeeDone { fee, epoch, reply });
    });
}

/// Routing timers for a daemon: faster than RFC 8966's wireless-oriented defaults, so a dead
/// link is noticed in about 3 s (three missed hellos) and failover stays well under 10 s.
fn router_config(seed: &[u8; 8], pricing: &crate::config::Pricing) -> RouterConfig {
    RouterConfig {
        fee_per_mib: pricing.fee_per_mib,
        policy: crate::route::SelectionPolicy {
            price_weight_milli: pricing.price_weight_milli,
            max_price_per_mib: pricing.max_price_per_mib,
            ..Default::default()
        },
        hello_interval: Duration::from_secs(1),
        update_interval: Duration::from_secs(4),
        route_expiry: Duration::from_secs(14),
        request_timeout: Duration::from_secs(1),
        // Without a wall clock, a random seqno, so a restarted node's announcements are
        // unlikely to be ignored.
        initial_seqno: u32::from_le_bytes([seed[0], seed[1], seed[2], seed[3]]),
        ..RouterConfig::default()
    }
}
