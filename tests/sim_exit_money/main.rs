//! Exit fees in the deterministic simulation (issue 9, "Billing"; docs/payments.md, "Exit
//! fees"): a client pays its exit's fee end to end for the inner IP bytes both ways, pays the
//! relay on the path hop by hop, and the exit pays the relay for the replies. In a lossless
//! sim the books balance to the unit; hostile exits and clients gain nothing beyond the bounds
//! (`hostile.rs`).

#[path = "../sim/mod.rs"]
mod sim;

mod backed;
mod hostile;

use std::net::Ipv4Addr;
use std::time::Duration;

use bitcloud::drops::DropReason;
use bitcloud::identity::NodeId;
use bitcloud::money::{Amount, ChannelParams, EXIT_CHANNEL_NONCE};
use bitcloud::node::{ChannelView, Node, PeerConfig};
use bitcloud::session::timers::Timers;
use sim::{Net, PERFECT, addr, ident, node_cfg, view};

const INTERNET: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
const RELAY_FEE: u64 = 1000;
const MIB: u128 = 1 << 20;

fn v4(src: Ipv4Addr, dst: Ipv4Addr, payload: usize) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ipv4(src.octets(), dst.octets(), 64).udp(1000, 2000);
    let mut out = Vec::new();
    b.write(&mut out, &vec![7u8; payload]).unwrap();
    out
}

/// What the Price code bills for `bytes` at `fee` per MiB: rounded up once, on the total.
fn cost(bytes: u64, fee: u64) -> Amount {
    Amount::from_units((u128::from(bytes) * u128::from(fee)).div_ceil(MIB))
}

/// The exit's price epoch: not 0, as on a real node (the daemon bumps it at every start), so
/// the client's first packets, metered before the exit's quote arrives, land in another bucket.
const EXIT_EPOCH: u32 = 2;

/// client 0 - relay 1 (fee 1000) - exit 2 (exit fee `exit_fee`), the client using the exit.
fn chain(exit_fee: u64) -> Net {
    let mut net = Net::new(3, &[(0, 1), (1, 2)], PERFECT, Timers::default());
    let mut cfg = node_cfg(Timers::default());
    cfg.router.exit = true;
    cfg.router.exit_fee_per_mib = exit_fee;
    let peers = [PeerConfig {
        id: ident(1).id(),
        endpoint: Some(addr(1)),
    }];
    net.nodes[2].node = Node::new(
        &ident(2),
        &peers,
        cfg,
        net.now,
        1_700_000_000_000_000_000,
        44,
    )
    .unwrap();
    let now = net.now;
    net.nodes[1].node.set_fee(RELAY_FEE, now);
    net.nodes[2].node.set_fee_epoch(0, EXIT_EPOCH, now);
    net.start();
    net.run(Duration::from_secs(10));
    let exit = ident(2).id();
    let routes = net.nodes[0].node.router().exit_routes();
    let r = routes.iter().find(|r| r.id == exit).expect("exit routed");
    assert_eq!(r.exit_fee_per_mib(), exit_fee);
    assert_eq!(r.path_price_per_mib, RELAY_FEE);
    net.nodes[0].node.set_exit_in_use(Some(exit));
    net
}

/// Node i's exit channel with node `peer` in `direction`.
fn exit_view(net: &Net, i: usize, peer: usize, direction: &str) -> ChannelView {
    net.nodes[i]
        .node
        .channel_views(net.now)
        .into_iter()
        .find(|c| c.peer == ident(peer).id() && c.direction == direction && c.kind == "exit")
        .unwrap_or_else(|| panic!("node {i} has no {direction} exit channel with {peer}"))
}

fn exit_channel(client: NodeId, exit: NodeId) -> bitcloud::money::ChannelId {
    ChannelParams {
        payer: client,
        payee: exit,
        nonce: EXIT_CHANNEL_NONCE,
    }
    .id()
}

/// `up` packets client -> internet and `down` replies internet -> client, interleaved, one
/// per step each; returns the inner bytes the exit's TUN got and the client's TUN got.
fn traffic(net: &mut Net, up: usize, down: usize, size: usize) -> (u64, u64) {
    let client = ident(0).id().ipv4();
    let (pu, pd) = (v4(client, INTERNET, size), v4(INTERNET, client, size + 300));
    for i in 0..up.max(down) {
        if i < up {
            net.tun(0, &pu);
        }
        if i < down {
            net.tun(2, &pd);
        }
        net.step();
    }
    net.run(Duration::from_millis(200));
    let sum = |d: &[Vec<u8>]| d.iter().map(|p| p.len() as u64).sum::<u64>();
    (sum(&net.nodes[2].delivered), sum(&net.nodes[0].delivered))
}

#[test]
fn client_spend_is_relay_earnings_plus_exit_earnings_exactly() {
    const FEE: u64 = 5000;
    let mut net = chain(FEE);
    let (up, down) = traffic(&mut net, 3000, 2000, 1000);
    assert_eq!(
        net.nodes[2].delivered.len(),
        3000,
        "every packet reached the exit's TUN"
    );
    assert_eq!(
        net.nodes[0].delivered.len(),
        2000,
        "every reply reached the client"
    );
    net.run(Duration::from_secs(6));

    // The exit channel: both ends metered the same inner bytes, both ways, and it is paid.
    let out = exit_view(&net, 0, 2, "outgoing");
    let inc = exit_view(&net, 2, 0, "incoming");
    assert_eq!(out.channel_id, exit_channel(ident(0).id(), ident(2).id()));
    assert_eq!(out.metered_bytes, up + down, "{out:?}");
    assert_eq!(inc.metered_bytes, up + down, "{inc:?}");
    assert_eq!(out.unpaid, Amount::ZERO, "{out:?}");
    assert_eq!(inc.unpaid, Amount::ZERO, "{inc:?}");
    assert_eq!(out.cumulative_paid, inc.cumulative_paid);
    // The client's first packets went out before the exit's quote (epoch 2) arrived, metered
    // at the announced fee under epoch 0: at most one unit of rounding more on its meter,
    // which it does not pay (it pays the lower of both counts).
    let extra = out.metered_amount.saturating_sub(inc.metered_amount);
    assert!(extra <= Amount::from_units(1), "{out:?} {inc:?}");
    let exit_earned = inc.cumulative_paid;
    assert_eq!(
        exit_earned,
        cost(up + down, FEE),
        "exit fee x (up + down) / MiB"
    );
    assert_eq!(out.rejected + inc.rejected, 0, "{out:?} {inc:?}");
    assert_eq!(inc.enforcement, Some("full"));
    let ch = out.channel_id;
    assert_eq!(
        net.nodes[0].wallet.outgoing.get(&ch),
        net.nodes[2].wallet.incoming.get(&ch),
        "one voucher in both wallets"
    );

    // The relay: paid its fee by the client (frames to the exit) and by the exit (replies).
    let c_r = view(&net, 0, 1, "outgoing");
    let r_c = view(&net, 1, 0, "incoming");
    let x_r = view(&net, 2, 1, "outgoing");
    let r_x = view(&net, 1, 2, "incoming");
    assert_eq!(c_r.kind, "link");
    for (payer, payee) in [(&c_r, &r_c), (&x_r, &r_x)] {
        assert_eq!(payer.metered_bytes, payee.metered_bytes);
        assert_eq!(payer.unpaid, Amount::ZERO, "{payer:?}");
        assert_eq!(payer.cumulative_paid, payee.cumulative_paid);
        assert_eq!(
            payer.cumulative_paid,
            cost(payer.metered_bytes, RELAY_FEE),
            "relay fee x frame bytes / MiB"
        );
    }
    // Frames carry the inner packets plus the end-to-end and mesh overhead (and channel
    // messages): the relay carried more than the inner bytes each way.
    assert!(c_r.metered_bytes > up && x_r.metered_bytes > down);

    // The books: client spend = relay earnings + exit net earnings, to the unit.
    let spend = c_r.cumulative_paid.saturating_add(out.cumulative_paid);
    let relay = r_c.cumulative_paid.saturating_add(r_x.cumulative_paid);
    let exit_net = exit_earned.saturating_sub(x_r.cumulative_paid);
    assert!(
        exit_earned > x_r.cumulative_paid,
        "the exit's fee covers its relay bill"
    );
    assert_eq!(spend, relay.saturating_add(exit_net));

    // Money stats count the exit-fee bytes on both ends.
    let (cs, xs) = (
        net.nodes[0].node.money_stats(),
        net.nodes[2].node.money_stats(),
    );
    assert_eq!((cs.exit_fee_bytes_up, cs.exit_fee_bytes_down), (up, down));
    assert_eq!(
        (xs.exit_billed_bytes_up, xs.exit_billed_bytes_down),
        (up, down)
    );
    assert!(cs.exit_frames_sent > 0 && xs.exit_frames_sent > 0);
    // Channel messages never reached a TUN: both TUNs got exactly the data packets.
    assert_eq!(net.nodes[1].delivered.len(), 0);
    println!(
        "up {up} B, down {down} B; client spent {spend:?} = relay {relay:?} + exit net \
         {exit_net:?} (exit earned {exit_earned:?}, paid the relay {:?})",
        x_r.cumulative_paid
    );
}

#[test]
fn frames_for_the_exit_node_itself_cost_no_exit_fee() {
    let mut net = chain(5000);
    let (client, exit) = (ident(0), ident(2));
    for _ in 0..50 {
        net.tun(0, &sim::packet_with(&client, &exit, &[1u8; 500]));
        net.step();
    }
    net.run(Duration::from_secs(3));
    assert_eq!(net.nodes[2].delivered.len(), 50);
    assert!(
        !net.nodes[0]
            .node
            .channel_views(net.now)
            .iter()
            .any(|c| c.kind == "exit" && c.metered_bytes > 0),
        "overlay traffic to the exit node was billed as exit traffic"
    );
    assert_eq!(net.nodes[2].node.money_stats().exit_billed_bytes_up, 0);
}

#[test]
fn a_client_with_no_exit_in_use_is_billable_by_nobody() {
    let mut net = chain(5000);
    net.nodes[0].node.set_exit_in_use(None);
    let client = ident(0).id().ipv4();
    // The exit pushes internet packets at the client anyway.
    for _ in 0..100 {
        net.tun(2, &v4(INTERNET, client, 1000));
        net.step();
    }
    net.run(Duration::from_secs(5));
    assert!(net.nodes[0].delivered.is_empty());
    assert_eq!(
        net.nodes[0].node.drops().get(DropReason::SpoofedSource),
        100
    );
    let me = ident(0).id();
    let views = net.nodes[0].node.channel_views(net.now);
    assert!(
        !views.iter().any(|c| c.kind == "exit"),
        "an exit channel opened without an exit in use: {views:?}"
    );
    assert!(
        net.nodes[0]
            .wallet
            .outgoing
            .keys()
            .all(|id| *id != exit_channel(me, ident(2).id()))
    );
}

#[test]
fn an_exit_fee_rise_applies_under_a_new_epoch_once_the_client_accepts_it() {
    const FEE: u64 = 5000;
    let mut net = chain(FEE);
    let (up1, down1) = traffic(&mut net, 500, 500, 1000);
    net.run(Duration::from_secs(3));
    let now = net.now;
    net.nodes[2]
        .node
        .set_exit_fee_epoch(true, 2 * FEE, EXIT_EPOCH + 1, now);
    net.run(Duration::from_secs(3));
    let routes = net.nodes[0].node.router().exit_routes();
    assert_eq!(routes[0].exit_fee_per_mib(), 2 * FEE, "the rise is routed");
    for i in [0, 2] {
        net.nodes[i].delivered.clear();
    }
    let (up2, down2) = traffic(&mut net, 1500, 1500, 1000);
    net.run(Duration::from_secs(6));
    let out = exit_view(&net, 0, 2, "outgoing");
    let inc = exit_view(&net, 2, 0, "incoming");
    let (before, after) = (up1 + down1, up2 + down2);
    assert_eq!(inc.metered_bytes, before + after);
    assert_eq!(out.metered_bytes, before + after);
    assert_eq!(out.cumulative_paid, inc.cumulative_paid);
    assert_eq!(inc.unpaid, Amount::ZERO, "{inc:?}");
    assert_eq!(out.unpaid, Amount::ZERO, "{out:?}");
    // Billed at the old fee until a voucher named the new epoch, at the new one after: never
    // more than the new fee for the bytes after the rise.
    let earned = inc.cumulative_paid;
    let low = cost(before, FEE).saturating_add(cost(after, FEE));
    let high = cost(before, FEE)
        .saturating_add(cost(after, 2 * FEE))
        .saturating_add(Amount::from_units(2));
    assert!(
        earned > low && earned <= high,
        "{earned:?} not in ({low:?}, {high:?}]"
    );
    assert!(!out.rejects.contains_key("malformed"), "{out:?}");
    println!("fee rise: earned {earned:?}, old fee throughout {low:?}, new fee at once {high:?}");
}

#[test]
fn a_restarted_client_continues_its_exit_channel_from_the_wallet() {
    const FEE: u64 = 5000;
    let mut net = chain(FEE);
    let (up1, down1) = traffic(&mut net, 500, 500, 1000);
    net.run(Duration::from_secs(6));
    let old = exit_view(&net, 0, 2, "outgoing");
    assert_eq!(old.unpaid, Amount::ZERO);
    // The client restarts: a new node restored from its wallet (vouchers; no meter
    // checkpoints in the model wallet, so meters restart at the latest voucher).
    let now = net.now;
    let mut node = sim::make_node(0, &[1], Timers::default(), now);
    let w = &net.nodes[0].wallet;
    for (id, v) in w.outgoing.iter().chain(w.incoming.iter()) {
        node.restore_channel(
            *id,
            bitcloud::node::Restored {
                latest: Some(*v),
                meter: Default::default(),
            },
        );
    }
    node.start(now);
    net.nodes[0].node = node;
    net.run(Duration::from_secs(10));
    net.nodes[0].node.set_exit_in_use(Some(ident(2).id()));
    for i in [0, 2] {
        net.nodes[i].delivered.clear();
    }
    // The client speaks first (as it does: replies follow requests), so the exit's replies go
    // out on the new end-to-end session, not the one the restart killed.
    net.tun(0, &v4(ident(0).id().ipv4(), INTERNET, 10));
    net.run(Duration::from_secs(1));
    let (up2, down2) = traffic(&mut net, 500, 500, 1000);
    net.run(Duration::from_secs(6));
    let out = exit_view(&net, 0, 2, "outgoing");
    let inc = exit_view(&net, 2, 0, "incoming");
    let total = up1 + down1 + up2 + down2;
    assert!(out.latest_seq > old.latest_seq, "seq continues: {out:?}");
    assert_eq!(out.cumulative_paid, inc.cumulative_paid);
    assert_eq!(inc.metered_bytes, total);
    assert_eq!(inc.unpaid, Amount::ZERO, "{inc:?}");
    assert_eq!(
        inc.cumulative_paid,
        cost(total, FEE),
        "nothing paid twice, nothing lost"
    );
    assert_eq!(inc.rejected, 0, "{inc:?}");
}

#[test]
fn with_loss_the_client_pays_what_arrived_and_the_books_still_balance() {
    const FEE: u64 = 5000;
    let mut net = chain(FEE);
    // 2 % of datagrams lost on every link, both ways, from now on.
    net.link = sim::Link {
        loss: 0.02,
        ..PERFECT
    };
    let (up, down) = traffic(&mut net, 3000, 3000, 1000);
    net.link = PERFECT;
    net.run(Duration::from_secs(8));
    let out = exit_view(&net, 0, 2, "outgoing");
    let inc = exit_view(&net, 2, 0, "incoming");
    let stats = net.nodes[0].node.money_stats();
    let sent_up = stats.exit_fee_bytes_up;
    assert!(up < sent_up, "some uploads were lost: {up} of {sent_up}");
    assert_eq!(out.cumulative_paid, inc.cumulative_paid, "{out:?} {inc:?}");
    // What the exit counted: the uploads it got and every reply it sent.
    let sent_down = net.nodes[2].node.money_stats().exit_billed_bytes_down;
    assert_eq!(inc.metered_bytes, up + sent_down);
    assert!(down < sent_down);
    // The client paid for what arrived, both ways, give or take what crossed in each
    // direction (uploads it paid whose loss was offset by replies it did not get).
    let earned = inc.cumulative_paid;
    let lower = cost(up + down, FEE);
    let upper = cost(up + down + (sent_up - up).min(sent_down - down), FEE);
    assert!(
        earned >= lower && earned <= upper,
        "{earned:?} not in [{lower:?}, {upper:?}]"
    );
    // The download gap stays owed but within the tolerance: full service.
    assert_eq!(inc.enforcement, Some("full"), "{inc:?}");
    // The relay and the books, exactly.
    let c_r = view(&net, 0, 1, "outgoing");
    let r_c = view(&net, 1, 0, "incoming");
    let x_r = view(&net, 2, 1, "outgoing");
    let r_x = view(&net, 1, 2, "incoming");
    assert_eq!(c_r.cumulative_paid, r_c.cumulative_paid);
    assert_eq!(x_r.cumulative_paid, r_x.cumulative_paid);
    let spend = c_r.cumulative_paid.saturating_add(out.cumulative_paid);
    let relay = r_c.cumulative_paid.saturating_add(r_x.cumulative_paid);
    let exit_net = earned.saturating_sub(x_r.cumulative_paid);
    assert_eq!(spend, relay.saturating_add(exit_net));
    println!(
        "lossy: up {up}/{sent_up} B, down {down}/{sent_down} B, exit earned {earned:?} in \
         [{lower:?}, {upper:?}], exit unpaid {:?}",
        inc.unpaid
    );
}

#[test]
fn a_restarted_exit_continues_its_clients_channel_from_the_wallet() {
    const FEE: u64 = 5000;
    let mut net = chain(FEE);
    let (up1, down1) = traffic(&mut net, 500, 500, 1000);
    net.run(Duration::from_secs(6));
    // The exit restarts from its wallet (vouchers only: its meter restarts at zero and the
    // client's resync, on the first handshake, catches it up).
    let now = net.now;
    let mut cfg = node_cfg(Timers::default());
    cfg.router.exit = true;
    cfg.router.exit_fee_per_mib = FEE;
    let peers = [PeerConfig {
        id: ident(1).id(),
        endpoint: Some(addr(1)),
    }];
    let mut node = Node::new(&ident(2), &peers, cfg, now, 1_700_000_100_000_000_000, 45).unwrap();
    node.set_fee_epoch(0, EXIT_EPOCH + 1, now);
    let w = &net.nodes[2].wallet;
    for (id, v) in w.outgoing.iter().chain(w.incoming.iter()) {
        let latest = Some(*v);
        let meter = Default::default();
        node.restore_channel(*id, bitcloud::node::Restored { latest, meter });
    }
    node.start(now);
    net.nodes[2].node = node;
    net.run(Duration::from_secs(10));
    for i in [0, 2] {
        net.nodes[i].delivered.clear();
    }
    net.tun(0, &v4(ident(0).id().ipv4(), INTERNET, 10));
    net.run(Duration::from_secs(1));
    let (up2, down2) = traffic(&mut net, 500, 500, 1000);
    net.run(Duration::from_secs(6));
    let out = exit_view(&net, 0, 2, "outgoing");
    let inc = exit_view(&net, 2, 0, "incoming");
    let total = up1 + down1 + up2 + down2;
    // The client's first uploads after the restart went out on the session the restart
    // killed, until the exit's first reply brought a new one: counted by the client. The
    // restarted exit caught its meter up to the client's resync (it lost its own count), so
    // those sent before the client's resync are paid, as after a link restart (at most one
    // window, docs/money.md).
    let lost = out.metered_bytes - total;
    assert!(lost > 0 && lost < 10 * 1100, "{out:?}");
    assert!(
        inc.metered_bytes >= total && inc.metered_bytes <= out.metered_bytes,
        "caught up by the client's resync: {inc:?} {out:?}"
    );
    assert_eq!(out.cumulative_paid, inc.cumulative_paid);
    assert_eq!(inc.unpaid, Amount::ZERO, "{inc:?}");
    // The exit's meter: the base caught up from the resync, then a bucket at its new epoch:
    // at most a unit of rounding each.
    let exact = cost(inc.metered_bytes, FEE);
    assert!(
        inc.cumulative_paid >= exact
            && inc.cumulative_paid <= exact.saturating_add(Amount::from_units(2)),
        "{inc:?} vs {exact:?}"
    );
    assert_eq!(inc.rejected + out.rejected, 0, "{inc:?} {out:?}");
}

#[test]
fn a_neighbour_exit_is_paid_on_its_own_channel_not_the_link_one() {
    const FEE: u64 = 5000;
    // client 0 - exit 1, direct neighbours.
    let mut net = Net::new(2, &[(0, 1)], PERFECT, Timers::default());
    let mut cfg = node_cfg(Timers::default());
    cfg.router.exit = true;
    cfg.router.exit_fee_per_mib = FEE;
    let peers = [PeerConfig {
        id: ident(0).id(),
        endpoint: Some(addr(0)),
    }];
    net.nodes[1].node = Node::new(
        &ident(1),
        &peers,
        cfg,
        net.now,
        1_700_000_000_000_000_000,
        43,
    )
    .unwrap();
    net.start();
    net.run(Duration::from_secs(10));
    net.nodes[0].node.set_exit_in_use(Some(ident(1).id()));
    let client = ident(0).id().ipv4();
    let (pu, pd) = (v4(client, INTERNET, 1000), v4(INTERNET, client, 1000));
    for _ in 0..1000 {
        net.tun(0, &pu);
        net.tun(1, &pd);
        net.step();
    }
    net.run(Duration::from_secs(6));
    let sum = |d: &[Vec<u8>]| d.iter().map(|p| p.len() as u64).sum::<u64>();
    let (up, down) = (sum(&net.nodes[1].delivered), sum(&net.nodes[0].delivered));
    assert_eq!((up, down), (1000 * 1028, 1000 * 1028));
    let out = exit_view(&net, 0, 1, "outgoing");
    let inc = exit_view(&net, 1, 0, "incoming");
    assert_eq!(inc.cumulative_paid, cost(up + down, FEE));
    assert_eq!(out.cumulative_paid, inc.cumulative_paid);
    // The link channel between them is another channel, and carries nothing: delivering to
    // a neighbour is free.
    let link = view(&net, 0, 1, "outgoing");
    assert_eq!(link.kind, "link");
    assert_ne!(link.channel_id, out.channel_id);
    assert_eq!(link.metered_bytes, 0);
    assert_eq!(link.cumulative_paid, Amount::ZERO);
}
