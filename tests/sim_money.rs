//! Paid forwarding in the deterministic simulation: whole nodes on a virtual clock with an
//! in-memory wallet. Pay per forward through a relay, exact agreement of payer and payee,
//! relays paying relays, enforcement of a non-payer, and recovery once it pays.

mod sim;

use std::time::Duration;

use bitcloud::drops::DropReason;
use bitcloud::money::Amount;
use bitcloud::session::timers::Timers;
use sim::{Net, PERFECT, ident, send, view};

#[test]
fn payer_pays_the_relay_exactly_what_both_metered() {
    // 0 - 1 - 2 - 3: relays 1 and 2 charge; 0 sends to 3.
    let mut net = Net::new(4, &[(0, 1), (1, 2), (2, 3)], PERFECT, Timers::default());
    let now = net.now;
    net.nodes[1].node.set_fee(1000, now);
    net.nodes[2].node.set_fee(300, now);
    net.start();
    net.run(Duration::from_secs(10));
    // Open the end-to-end session first, so nothing waits in the staging queue.
    send(&mut net, 0, 3, 1, 10);
    net.run(Duration::from_secs(1));
    send(&mut net, 0, 3, 3000, 1000);
    net.run(Duration::from_millis(100));
    let got = net.nodes[3].delivered.len();
    assert!(
        got > 3000,
        "delivered {got}; drops {:?}",
        net.nodes[0].node.drops().to_map()
    );
    net.run(Duration::from_secs(5));

    let out = view(&net, 0, 1, "outgoing");
    let inc = view(&net, 1, 0, "incoming");
    // No loss: both metered the same bytes, and the payer has paid all of it.
    assert_eq!(out.metered_bytes, inc.metered_bytes);
    assert!(out.metered_bytes > 3000 * 1000);
    assert_eq!(out.unpaid, Amount::ZERO, "{out:?}");
    assert_eq!(out.cumulative_paid, inc.cumulative_paid);
    assert_eq!(out.latest_seq, out.acked_seq);
    // 0 pays 1 its fee plus what 2 charges 1.
    let expected = Amount::from_units((u128::from(out.metered_bytes) * 1300).div_ceil(1 << 20));
    assert_eq!(out.cumulative_paid, expected);
    // 1 pays 2 its fee for the same frames; 2 delivers to 3 for free.
    let out12 = view(&net, 1, 2, "outgoing");
    let inc21 = view(&net, 2, 1, "incoming");
    assert_eq!(out12.cumulative_paid, inc21.cumulative_paid);
    assert_eq!(
        out12.cumulative_paid,
        Amount::from_units((u128::from(out12.metered_bytes) * 300).div_ceil(1 << 20))
    );
    assert_eq!(
        view(&net, 2, 3, "outgoing").metered_bytes,
        0,
        "delivery is free"
    );
    // Same vouchers in both wallets.
    let ch = out.channel_id;
    assert_eq!(
        net.nodes[0].wallet.outgoing.get(&ch),
        net.nodes[1].wallet.incoming.get(&ch)
    );
}

#[test]
fn non_payer_is_shaped_then_cut_and_restored_when_it_pays() {
    let mut net = Net::new(3, &[(0, 1), (1, 2)], PERFECT, Timers::default());
    let now = net.now;
    net.nodes[1].node.set_fee(1_000_000, now);
    net.start();
    net.run(Duration::from_secs(10));
    // Node 0 forwards and never pays (the test-only switch behind `[testing] pay = false`).
    net.nodes[0].node.set_pay(false);
    // Default window 0.01 CC = 10 MiB at 1e6 units/MiB.
    send(&mut net, 0, 2, 12_000, 1200);
    let inc = view(&net, 1, 0, "incoming");
    assert_ne!(inc.enforcement, Some("full"), "{inc:?}");
    // Only what the relay carries is metered: shaped, the debt grows by the free tier alone
    // (16 KiB/s = 0.0000156 CC/s here), so passing 1.25 x the window takes ~160 s of it, and
    // then the grace period.
    send(&mut net, 0, 2, 18_000, 1200);
    net.run(Duration::from_secs(12));
    send(&mut net, 0, 2, 200, 1200);
    let inc = view(&net, 1, 0, "incoming");
    assert_eq!(inc.enforcement, Some("cut"), "{inc:?}");
    let d = net.nodes[1].node.drops();
    assert!(d.get(DropReason::UnpaidShaped) > 0);
    assert!(d.get(DropReason::UnpaidCut) > 0);
    let before = net.nodes[2].delivered.len();
    send(&mut net, 0, 2, 50, 100);
    assert_eq!(
        net.nodes[2].delivered.len(),
        before,
        "nothing gets through while cut"
    );

    // It pays: its channel frames were never blocked, so one voucher restores service.
    net.nodes[0].node.set_pay(true);
    net.run(Duration::from_secs(5));
    let inc = view(&net, 1, 0, "incoming");
    assert_eq!(inc.enforcement, Some("full"), "{inc:?}");
    let before = net.nodes[2].delivered.len();
    send(&mut net, 0, 2, 50, 100);
    net.run(Duration::from_millis(200));
    assert_eq!(net.nodes[2].delivered.len(), before + 50);
}

#[test]
fn payer_at_its_spend_limit_throttles_itself_before_the_relay_shapes_it() {
    let mut net = Net::new(3, &[(0, 1), (1, 2)], PERFECT, Timers::default());
    let now = net.now;
    net.nodes[1].node.set_fee(1_000_000, now);
    // 2 MiB of service at 1e6 units per MiB; the relay's window is 10 MiB.
    net.nodes[0].wallet.spend_limit = Some(Amount::from_units(2_000_000));
    net.start();
    net.run(Duration::from_secs(10));
    send(&mut net, 0, 2, 6000, 1200);
    net.run(Duration::from_secs(3));
    let out = view(&net, 0, 1, "outgoing");
    assert!(
        out.cumulative_paid <= Amount::from_units(2_000_000),
        "{out:?}"
    );
    assert_eq!(out.throttled, Some(true), "{out:?}");
    assert!(net.nodes[0].node.drops().get(DropReason::SelfThrottled) > 0);
    let inc = view(&net, 1, 0, "incoming");
    assert_eq!(
        inc.enforcement,
        Some("full"),
        "the relay never had to act: {inc:?}"
    );
}

#[test]
fn forged_replayed_and_malformed_channel_messages_change_nothing() {
    use bitcloud::identity::Identity;
    use bitcloud::money::{ChannelParams, Voucher};
    use bitcloud::wire::channel::ChannelMsg;
    use bitcloud::wire::outer::Kind;

    let mut net = Net::new(3, &[(0, 1), (1, 2)], PERFECT, Timers::default());
    let now = net.now;
    net.nodes[1].node.set_fee(1000, now);
    net.start();
    net.run(Duration::from_secs(10));
    send(&mut net, 0, 2, 500, 1000);
    net.run(Duration::from_secs(5));
    let before = view(&net, 1, 0, "incoming");
    assert!(before.latest_seq > 0);
    let ch = ChannelParams {
        payer: ident(0).id(),
        payee: ident(1).id(),
        nonce: 0,
    }
    .id();
    let stored = net.nodes[1].wallet.incoming.get(&ch).copied().unwrap();
    let big = Amount::from_units(1 << 40);
    let forger = Identity::from_secret([0x99; 32]);
    let (seq, amt, bytes) = (
        stored.seq,
        stored.cumulative_amount,
        stored.cumulative_bytes,
    );
    let one = Amount::from_units(1);
    let bad = [
        // Signed by someone else.
        Voucher::sign(&forger, ch, seq + 1, big, 1 << 30, 1),
        // The latest seq again with another body.
        Voucher::sign(&ident(0), ch, seq, big, bytes, 1),
        // An older seq (a replayed stale voucher).
        Voucher::sign(&ident(0), ch, 1, amt, 0, 1),
        // Seq 0.
        Voucher::sign(&ident(0), ch, 0, big, 0, 1),
        // Above the channel limit (10 CC).
        Voucher::sign(&ident(0), ch, seq + 1, big, bytes, 1),
        // A newer seq that takes the amount back.
        Voucher::sign(&ident(0), ch, seq + 1, amt.saturating_sub(one), bytes, 1),
        // Far more bytes than were ever metered.
        Voucher::sign(
            &ident(0),
            ch,
            seq + 1,
            amt.saturating_add(one),
            bytes + (1 << 40),
            1,
        ),
    ];
    let now = net.now;
    for v in bad {
        let mut b = Vec::new();
        ChannelMsg::Voucher(v).encode(&mut b);
        assert!(
            net.nodes[0]
                .node
                .send_frame(ident(1).id(), Kind::Channel, &b, now)
        );
    }
    // And bytes that are no channel message at all.
    assert!(
        net.nodes[0]
            .node
            .send_frame(ident(1).id(), Kind::Channel, &[0xff, 1, 2], now)
    );
    net.run(Duration::from_millis(500));
    let d = net.nodes[1].node.drops();
    assert_eq!(d.get(DropReason::ChannelRejected), 7);
    assert_eq!(d.get(DropReason::BadChannelMsg), 1);
    assert_eq!(
        net.nodes[1].wallet.incoming.get(&ch),
        Some(&stored),
        "wallet unchanged"
    );
    let after = view(&net, 1, 0, "incoming");
    assert_eq!(after.cumulative_paid, before.cumulative_paid);
    assert_eq!(after.rejected, 7);
    let expect = [
        ("forged_signature", 1),
        ("stale_seq", 2),
        ("malformed", 1),
        ("over_limit", 1),
        ("non_monotonic", 1),
        ("over_metered", 1),
    ];
    for (reason, n) in expect {
        assert_eq!(
            after.rejects.get(reason),
            Some(&n),
            "{reason}: {:?}",
            after.rejects
        );
    }
}

fn wallet_down() -> bitcloud::node::WalletHealth {
    bitcloud::node::WalletHealth {
        state: bitcloud::node::WalletState::DiskFull,
        error: Some("database or disk is full".into()),
        since_unix_ms: 0,
    }
}

/// A - R - C with R charging, after 500 paid packets from A to C: channels open and paying.
fn paid_chain_in_use() -> Net {
    let mut net = Net::new(3, &[(0, 1), (1, 2)], PERFECT, Timers::default());
    let now = net.now;
    net.nodes[1].node.set_fee(1_000_000, now);
    net.start();
    net.run(Duration::from_secs(10));
    send(&mut net, 0, 2, 1, 10);
    send(&mut net, 0, 1, 1, 10);
    net.run(Duration::from_secs(1));
    send(&mut net, 0, 2, 500, 1200);
    net.run(Duration::from_secs(3));
    net
}

/// docs/wallet-failure.md: a relay whose wallet cannot store pauses paid relaying (its own
/// drop reason, unmetered, the payer never shaped), keeps free traffic, and resumes with
/// payer and payee agreeing to the unit.
#[test]
fn relay_whose_wallet_cannot_store_pauses_paid_relaying_and_resumes() {
    let mut net = paid_chain_in_use();
    let metered = view(&net, 1, 0, "incoming").metered_bytes;

    net.nodes[1].wallet.down = true;
    net.nodes[1].node.set_wallet_health(wallet_down());
    let (at2, at1) = (net.nodes[2].delivered.len(), net.nodes[1].delivered.len());
    send(&mut net, 0, 2, 3000, 1200);
    send(&mut net, 0, 1, 20, 100);
    net.run(Duration::from_secs(12));
    assert_eq!(
        net.nodes[2].delivered.len(),
        at2,
        "paid relaying did not pause"
    );
    assert_eq!(
        net.nodes[1].delivered.len(),
        at1 + 20,
        "free traffic to the relay stopped"
    );
    let d = net.nodes[1].node.drops();
    assert!(d.get(DropReason::WalletUnavailable) > 0);
    assert_eq!(
        d.get(DropReason::UnpaidShaped) + d.get(DropReason::UnpaidCut),
        0
    );
    let inc = view(&net, 1, 0, "incoming");
    assert_eq!(inc.enforcement, Some("full"), "{inc:?}");
    assert_eq!(inc.metered_bytes, metered, "paused frames were metered");

    net.nodes[1].wallet.down = false;
    net.nodes[1].wallet.registered.clear(); // what failed to reach the disk must be redone
    net.nodes[1].node.set_wallet_health(Default::default());
    let at2 = net.nodes[2].delivered.len();
    send(&mut net, 0, 2, 200, 1200);
    net.run(Duration::from_secs(5));
    assert_eq!(net.nodes[2].delivered.len(), at2 + 200);
    let (out, inc) = (view(&net, 0, 1, "outgoing"), view(&net, 1, 0, "incoming"));
    assert_eq!(out.unpaid, Amount::ZERO, "{out:?}");
    assert_eq!(out.cumulative_paid, inc.cumulative_paid);
    assert_eq!(out.latest_seq, out.acked_seq);
    let ch = out.channel_id;
    assert_eq!(
        net.nodes[0].wallet.outgoing.get(&ch),
        net.nodes[1].wallet.incoming.get(&ch),
        "the same voucher in both wallets"
    );
}

/// A payer whose wallet cannot store sends no paid traffic and signs nothing it sends, while
/// traffic to its neighbour itself flows; afterwards it pays exactly what was carried.
#[test]
fn payer_whose_wallet_cannot_store_pauses_paid_sending_and_resumes() {
    let mut net = paid_chain_in_use();
    let paid = view(&net, 1, 0, "incoming").cumulative_paid;

    net.nodes[0].wallet.down = true;
    net.nodes[0].node.set_wallet_health(wallet_down());
    let (at2, at1) = (net.nodes[2].delivered.len(), net.nodes[1].delivered.len());
    send(&mut net, 0, 2, 300, 1200);
    send(&mut net, 0, 1, 20, 100);
    net.run(Duration::from_secs(5));
    assert_eq!(
        net.nodes[2].delivered.len(),
        at2,
        "paid sending did not pause"
    );
    assert_eq!(net.nodes[1].delivered.len(), at1 + 20);
    assert!(net.nodes[0].node.drops().get(DropReason::WalletUnavailable) >= 300);
    assert_eq!(
        view(&net, 1, 0, "incoming").cumulative_paid,
        paid,
        "paid without a commit"
    );

    net.nodes[0].wallet.down = false;
    net.nodes[0].wallet.registered.clear();
    net.nodes[0].node.set_wallet_health(Default::default());
    send(&mut net, 0, 2, 200, 1200);
    net.run(Duration::from_secs(5));
    assert_eq!(net.nodes[2].delivered.len(), at2 + 200);
    let (out, inc) = (view(&net, 0, 1, "outgoing"), view(&net, 1, 0, "incoming"));
    assert_eq!(out.unpaid, Amount::ZERO, "{out:?}");
    assert_eq!(out.cumulative_paid, inc.cumulative_paid);
    assert_eq!(out.metered_bytes, inc.metered_bytes);
}

#[test]
fn payer_with_nothing_locked_on_chain_is_carried_at_the_free_tier_and_no_faster() {
    // Under a ledger with no channel yet (the chain unreachable): the relay credits nothing,
    // so the payer holds its data to the relay's free tier instead of sending nothing.
    use bitcloud::chain::ChainKey;
    use bitcloud::money::ChainAddress;
    let mut net = Net::new(3, &[(0, 1), (1, 2)], PERFECT, Timers::default());
    let now = net.now;
    net.nodes[1].node.set_fee(1_000_000, now);
    for i in 0..3 {
        let id = ident(i);
        let b = ChainKey::derive(&id).binding(&id);
        net.nodes[i].node.enable_chain(ChainAddress {
            address: b.address.into_array(),
            signature: b.signature,
        });
    }
    net.start();
    net.run(Duration::from_secs(10));
    send(&mut net, 0, 2, 1, 10);
    net.run(Duration::from_secs(1));
    let before = net.nodes[2].delivered.len();
    assert!(before > 0, "{:?}", net.nodes[0].node.drops().to_map());
    // Pings flow.
    send(&mut net, 0, 2, 20, 100);
    net.run(Duration::from_millis(200));
    assert_eq!(net.nodes[2].delivered.len(), before + 20);
    // A bulk transfer does not: at most the free burst and rate (64 KiB + 16 KiB/s).
    let t0 = net.now;
    send(&mut net, 0, 2, 3000, 1200);
    net.run(Duration::from_millis(500));
    let secs = (net.now - t0).as_secs_f64() + 1.0;
    let got = net.nodes[2].delivered.len() - before - 20;
    let bound = ((64.0 * 1024.0 + 16384.0 * secs) / 1200.0) as usize;
    assert!(got > 0 && got <= bound, "delivered {got}, bound {bound}");
    assert!(net.nodes[0].node.drops().get(DropReason::SelfThrottled) > 2000);
    let inc = view(&net, 1, 0, "incoming");
    assert_eq!(inc.cumulative_paid, Amount::ZERO, "{inc:?}");
}
