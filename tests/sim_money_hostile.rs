//! Issue 8, "a hostile neighbour gains nothing", whole nodes on the virtual clock: each test
//! has a neighbour that speaks the protocol perfectly (well-formed, correctly signed channel
//! messages, prices it is free to advertise) and checks what it can take from us, and that
//! every refusal is counted. Also the money parts of unbounded state.

mod sim;

use std::time::Duration;

use bitcloud::money::{Amount, ChannelParams, CreditGrant, Resync, Voucher};
use bitcloud::node::WalletDone;
use bitcloud::session::timers::Timers;
use bitcloud::wire::channel::ChannelMsg;
use bitcloud::wire::outer::Kind;
use sim::{Net, PERFECT, ident, send, view};

/// Node `from` sends channel message `m` to its neighbour `to` over their link.
fn channel_msg(net: &mut Net, from: usize, to: usize, m: ChannelMsg) {
    let mut b = Vec::new();
    m.encode(&mut b);
    let now = net.now;
    assert!(
        net.nodes[from]
            .node
            .send_frame(ident(to).id(), Kind::Channel, &b, now)
    );
}

fn drop_count(net: &Net, i: usize, reason: &str) -> u64 {
    net.nodes[i]
        .node
        .drops()
        .to_map()
        .get(reason)
        .copied()
        .unwrap_or(0)
}

fn cost(bytes: u64, units_per_mib: u128) -> Amount {
    Amount::from_units((u128::from(bytes) * units_per_mib).div_ceil(1 << 20))
}

/// 0 - 1 - 2 with relay 1 charging `fee`, routes settled and an end-to-end session open.
fn line(fee: u64) -> Net {
    let mut net = Net::new(3, &[(0, 1), (1, 2)], PERFECT, Timers::default());
    let now = net.now;
    net.nodes[1].node.set_fee(fee, now);
    net.start();
    net.run(Duration::from_secs(10));
    send(&mut net, 0, 2, 1, 10);
    net.run(Duration::from_secs(1));
    net
}

/// The default `[wallet] max_accepted_window` (0.05 CC).
const MAX_WINDOW: Amount = Amount::from_units(50_000_000);

#[test]
fn hostile_relay_grant_and_resync_cannot_drain_the_payer() {
    let mut net = line(1000);
    send(&mut net, 0, 2, 200, 1000);
    net.run(Duration::from_secs(5));
    let before = view(&net, 0, 1, "outgoing");
    assert_eq!(before.unpaid, Amount::ZERO);
    let ch = before.channel_id;
    // Relay 1 grants a huge window, then claims a huge meter, twice.
    let grant = CreditGrant {
        channel_id: ch,
        nonce: 0,
        credit_window: Amount::from_cc(1_000_000),
        max_cumulative: Amount::from_cc(1_000_000),
    };
    channel_msg(&mut net, 1, 0, ChannelMsg::CreditGrant(grant));
    for _ in 0..2 {
        let r = Resync {
            channel_id: ch,
            latest: None,
            meter_bytes: 1 << 40,
            meter_amount: Amount::from_cc(1_000_000),
        };
        channel_msg(&mut net, 1, 0, ChannelMsg::Resync(r));
        net.run(Duration::from_secs(5));
    }
    let after = view(&net, 0, 1, "outgoing");
    let bound = cost(before.metered_bytes, 1000).saturating_add(MAX_WINDOW);
    assert!(
        after.cumulative_paid <= bound,
        "paid {} for {} bytes metered at 1000/MiB (bound {bound})",
        after.cumulative_paid,
        before.metered_bytes
    );
    assert!(after.credit_window <= MAX_WINDOW, "{after:?}");
    assert!(after.rejected >= 2, "refusals counted: {after:?}");
    // The other channels keep their headroom: 0 can still pay others.
    assert_eq!(after.throttled, Some(false));
}

#[test]
fn next_hop_raising_its_price_to_the_sky_gets_no_traffic_and_no_money() {
    let mut net = line(1000);
    send(&mut net, 0, 2, 100, 1000);
    net.run(Duration::from_secs(5));
    let before = view(&net, 0, 1, "outgoing");
    // The relay, our only way to 2, now asks 2^50 units (about a million CC) per MiB.
    let now = net.now;
    net.nodes[1].node.set_fee(1 << 50, now);
    net.run(Duration::from_secs(5));
    send(&mut net, 0, 2, 100, 1000);
    net.run(Duration::from_secs(5));
    let after = view(&net, 0, 1, "outgoing");
    // Nothing more than the default max price (1e7 units/MiB) could ever be billed.
    let bound = before
        .cumulative_paid
        .saturating_add(cost(after.metered_bytes - before.metered_bytes, 10_000_000));
    assert!(after.cumulative_paid <= bound, "{after:?}");
    assert!(
        drop_count(&net, 0, "price_refused") > 0,
        "{:?}",
        net.nodes[0].node.drops().to_map()
    );
}

#[test]
fn relay_is_paid_only_for_frames_it_forwarded() {
    // 0 - 1 - 2 - 3: relay 1 pays relay 2 for what it forwards.
    let mut net = Net::new(4, &[(0, 1), (1, 2), (2, 3)], PERFECT, Timers::default());
    let now = net.now;
    net.nodes[1].node.set_fee(1000, now);
    net.nodes[2].node.set_fee(1000, now);
    net.start();
    net.run(Duration::from_secs(10));
    send(&mut net, 0, 3, 1, 10);
    net.run(Duration::from_secs(1));
    send(&mut net, 0, 3, 100, 1000);
    net.run(Duration::from_secs(5));
    // Relay 1's wallet reports no headroom left: it throttles itself towards 2 and drops
    // what 0 sends it. (A refused commit of a voucher for no channel carries the figure.)
    let dummy = Voucher::sign(
        &ident(1),
        bitcloud::money::ChannelId([0; 32]),
        1,
        Amount::ZERO,
        0,
        0,
    );
    let now = net.now;
    net.nodes[1].node.wallet_done(
        WalletDone::Outgoing {
            voucher: dummy,
            ok: false,
            headroom: Amount::ZERO,
        },
        now,
    );
    send(&mut net, 0, 3, 2000, 1000);
    net.run(Duration::from_secs(6));
    assert!(drop_count(&net, 1, "self_throttled") > 0);
    let paid = view(&net, 0, 1, "outgoing");
    let carried = view(&net, 1, 0, "incoming");
    let forwarded = view(&net, 1, 2, "outgoing").metered_bytes;
    assert_eq!(
        carried.metered_bytes, forwarded,
        "the relay meters what it forwarded"
    );
    assert!(paid.metered_bytes > forwarded, "0 sent more than 1 carried");
    assert_eq!(paid.cumulative_paid, carried.cumulative_paid);
    // The payer pays what the payee last reported plus what it sent since (docs/payments.md,
    // "Loss"): at most about one report interval (500 ms) of sending, here 50 frames, and a
    // few more in flight. Before the fix it paid for all 2,000 frames.
    let slack = cost(100 * 1045, 2000);
    assert!(
        paid.cumulative_paid <= carried.metered_amount.saturating_add(slack),
        "0 paid {} for {} carried bytes worth {}",
        paid.cumulative_paid,
        carried.metered_bytes,
        carried.metered_amount
    );
}

#[test]
fn a_fee_rise_mid_stream_leaves_no_unpaid_debt() {
    let mut net = line(1000);
    for step in 0..6 {
        if step == 3 {
            let now = net.now;
            net.nodes[1].node.set_fee(5000, now);
        }
        send(&mut net, 0, 2, 300, 1000);
    }
    net.run(Duration::from_secs(8));
    let out = view(&net, 0, 1, "outgoing");
    let inc = view(&net, 1, 0, "incoming");
    assert_eq!(out.metered_bytes, inc.metered_bytes);
    assert_eq!(out.cumulative_paid, inc.cumulative_paid);
    assert_eq!(
        inc.unpaid,
        Amount::ZERO,
        "debt left by the fee change: {inc:?}"
    );
}

#[test]
fn a_fee_rise_from_free_is_accepted_and_paid() {
    // Billing the old (free) fee until the payer signs at the new epoch must not deadlock:
    // the payer pays what it sent since the payee's last report at the price it metered,
    // and that voucher names the new epoch.
    let mut net = line(0);
    send(&mut net, 0, 2, 100, 1000);
    let now = net.now;
    net.nodes[1].node.set_fee(5000, now);
    net.run(Duration::from_secs(5));
    for _ in 0..3 {
        send(&mut net, 0, 2, 300, 1000);
    }
    net.run(Duration::from_secs(8));
    let out = view(&net, 0, 1, "outgoing");
    let inc = view(&net, 1, 0, "incoming");
    assert!(inc.cumulative_paid > Amount::ZERO, "{inc:?}");
    assert_eq!(out.cumulative_paid, inc.cumulative_paid);
    assert_eq!(inc.unpaid, Amount::ZERO, "{inc:?}");
}

#[test]
fn voucher_spam_is_refused_counted_and_never_stored() {
    let mut net = line(1000);
    send(&mut net, 0, 2, 100, 1000);
    net.run(Duration::from_secs(5));
    let ch = ChannelParams {
        payer: ident(0).id(),
        payee: ident(1).id(),
        nonce: 0,
    }
    .id();
    let stored = net.nodes[1].wallet.incoming[&ch];
    // 300 correctly signed vouchers that move nothing, then 300 that creep by one unit.
    let mut bad = Vec::new();
    for k in 1..=300u64 {
        let (a, b) = (stored.cumulative_amount, stored.cumulative_bytes);
        bad.push(Voucher::sign(
            &ident(0),
            ch,
            stored.seq + k,
            a,
            b,
            stored.price_epoch,
        ));
    }
    for k in 301..=600u64 {
        let a = stored
            .cumulative_amount
            .saturating_add(Amount::from_units(u128::from(k)));
        bad.push(Voucher::sign(
            &ident(0),
            ch,
            stored.seq + k,
            a,
            stored.cumulative_bytes,
            stored.price_epoch,
        ));
    }
    for v in bad {
        channel_msg(&mut net, 0, 1, ChannelMsg::Voucher(v));
    }
    net.run(Duration::from_millis(500));
    let inc = view(&net, 1, 0, "incoming");
    let no_progress = inc.rejects.get("no_progress").copied().unwrap_or(0);
    let rate_limited = inc.rejects.get("rate_limited").copied().unwrap_or(0);
    assert_eq!(no_progress, 300, "{:?}", inc.rejects);
    assert!(rate_limited >= 298, "{:?}", inc.rejects);
    let latest = net.nodes[1].wallet.incoming[&ch];
    assert!(
        latest.seq <= stored.seq + 302,
        "at most one voucher per interval was stored"
    );
}

#[test]
fn discovered_neighbour_gets_the_smaller_window() {
    // 3 is not configured on 1: it shows up through discovery.
    let mut net = Net::new(4, &[(0, 1), (1, 2)], PERFECT, Timers::default());
    net.set_link(1, 3, true);
    net.start();
    let now = net.now;
    assert!(
        net.nodes[3]
            .node
            .discovered(ident(1).id(), sim::addr(1), now)
    );
    assert!(
        net.nodes[1]
            .node
            .discovered(ident(3).id(), sim::addr(3), now)
    );
    net.run(Duration::from_secs(10));
    let known = view(&net, 1, 0, "incoming").credit_window;
    let unknown = view(&net, 1, 3, "incoming").credit_window;
    assert_eq!(known, Amount::from_units(10_000_000));
    assert_eq!(
        unknown,
        Amount::from_units(1_000_000),
        "default unknown_credit_window"
    );
    // And 3 is told so in the grant.
    assert_eq!(view(&net, 3, 1, "outgoing").credit_window, unknown);
}

#[test]
fn idle_neighbours_cost_no_wallet_rows_and_checkpoints_write_only_changes() {
    // 1 - 3 is a link that never carries a paid byte.
    let mut net = Net::new(4, &[(0, 1), (1, 2), (1, 3)], PERFECT, Timers::default());
    let now = net.now;
    net.nodes[1].node.set_fee(1000, now);
    net.start();
    net.run(Duration::from_secs(10));
    send(&mut net, 0, 2, 1, 10);
    send(&mut net, 0, 2, 200, 1000);
    net.run(Duration::from_secs(10));
    let w = &net.nodes[1].wallet;
    let with3 = |p: usize, q: usize| {
        ChannelParams {
            payer: ident(p).id(),
            payee: ident(q).id(),
            nonce: 0,
        }
        .id()
    };
    assert!(
        !w.registered.contains(&with3(1, 3)) && !w.registered.contains(&with3(3, 1)),
        "no rows for 3"
    );
    assert!(w.registered.contains(&with3(0, 1)));
    // Once traffic stops, checkpoints stop: nothing moved.
    let n = net.nodes[1].wallet.checkpoints.len();
    net.run(Duration::from_secs(10));
    assert_eq!(
        net.nodes[1].wallet.checkpoints.len(),
        n,
        "unchanged meters are not rewritten"
    );
    assert!(net.nodes[1].wallet.checkpoints.iter().all(|&c| c <= 4));
}

#[test]
fn a_wallet_that_refuses_commits_sends_no_voucher_and_the_payer_throttles() {
    let mut net = line(1_000_000);
    net.nodes[0].wallet.refuse_outgoing = true;
    let committed = net.nodes[0].wallet.outgoing.clone();
    let paid_before = view(&net, 0, 1, "outgoing").cumulative_paid;
    // 12 MiB at 1e6 units/MiB: past the relay's window (10 MiB).
    send(&mut net, 0, 2, 10_000, 1200);
    net.run(Duration::from_secs(3));
    let out = view(&net, 0, 1, "outgoing");
    assert!(net.nodes[0].wallet.refused > 0, "commits were attempted");
    assert_eq!(
        net.nodes[0].wallet.outgoing, committed,
        "nothing more committed"
    );
    assert_eq!(
        out.cumulative_paid, paid_before,
        "nothing uncommitted counts as paid"
    );
    assert_eq!(
        view(&net, 1, 0, "incoming").cumulative_paid,
        paid_before,
        "nor was sent"
    );
    assert_eq!(out.throttled, Some(true), "{out:?}");
    assert!(drop_count(&net, 0, "self_throttled") > 0);
    // The disk recovers: the next commit goes through and service continues.
    net.nodes[0].wallet.refuse_outgoing = false;
    net.run(Duration::from_secs(5));
    let out = view(&net, 0, 1, "outgoing");
    assert!(out.cumulative_paid > paid_before);
    assert_eq!(
        out.cumulative_paid,
        view(&net, 1, 0, "incoming").cumulative_paid
    );
}
