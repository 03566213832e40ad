//! Hostile exits and clients (docs/payments.md, "Exit fees"): an exit quoting above the fee it
//! announces is paid the announced fee; a client that never pays is shaped, then cut, for its
//! internet traffic only; a client claiming loss saves at most the tolerance, and honest loss
//! within it is never shaped; a client at its spend limit throttles itself.

use super::*;

#[test]
fn hostile_exit_quoting_above_its_announced_fee_is_paid_the_announced_fee() {
    const FEE: u64 = 5000;
    let mut net = chain(FEE);
    // The exit announces FEE in routing but bills (and quotes) twice that.
    net.nodes[2].node.set_exit_fee_billed(Some(2 * FEE));
    let (up, down) = traffic(&mut net, 1000, 1000, 1000);
    net.run(Duration::from_secs(6));
    let out = exit_view(&net, 0, 2, "outgoing");
    let inc = exit_view(&net, 2, 0, "incoming");
    assert!(
        out.rejects.get("price_refused").copied().unwrap_or(0) >= 1,
        "{out:?}"
    );
    assert_eq!(out.metered_bytes, up + down);
    assert_eq!(
        out.cumulative_paid,
        cost(up + down, FEE),
        "paid the announced fee only"
    );
    assert_eq!(inc.cumulative_paid, out.cumulative_paid);
    assert_eq!(inc.metered_amount, cost(up + down, 2 * FEE));
}

#[test]
fn a_client_that_never_pays_the_exit_is_shaped_then_cut_for_internet_traffic_only() {
    // 0.001 CC per MiB: the exit's window for strangers (0.001 CC) is one MiB of traffic.
    const FEE: u64 = 1_000_000;
    let mut net = chain(FEE);
    net.nodes[0].node.set_pay(false);
    let client = ident(0).id().ipv4();
    let p = v4(client, INTERNET, 1200);
    for _ in 0..3000 {
        net.tun(0, &p);
        net.step();
    }
    let inc = exit_view(&net, 2, 0, "incoming");
    assert_ne!(inc.enforcement, Some("full"), "{inc:?}");
    assert!(net.nodes[2].node.drops().get(DropReason::UnpaidShaped) > 0);
    // Past the grace period at more than 1.25 windows: cut.
    for _ in 0..400 {
        net.tun(0, &p);
        net.tun(0, &p);
        net.run(Duration::from_millis(100));
    }
    let inc = exit_view(&net, 2, 0, "incoming");
    assert_eq!(inc.enforcement, Some("cut"), "{inc:?}");
    assert!(net.nodes[2].node.drops().get(DropReason::UnpaidCut) > 0);
    // Its debt is bounded: 1.25 windows plus the free tier over the grace period, about.
    let window = Amount::from_units(1_000_000);
    let free = cost(16 * 1024 * 10 + 64 * 1024 + 1500, FEE);
    assert!(
        inc.unpaid <= window.mul_ratio(5, 4).saturating_add(free),
        "{inc:?}"
    );
    // The replies are cut too.
    let before = net.nodes[0].delivered.len();
    net.tun(2, &v4(INTERNET, client, 100));
    net.run(Duration::from_millis(200));
    assert_eq!(net.nodes[0].delivered.len(), before);
    // Frames for the exit node itself still pass (and so could its vouchers).
    let before = net.nodes[2].delivered.len();
    net.tun(0, &sim::packet_with(&ident(0), &ident(2), &[1u8; 100]));
    net.run(Duration::from_millis(200));
    assert_eq!(net.nodes[2].delivered.len(), before + 1);
    // Paying restores service.
    net.nodes[0].node.set_pay(true);
    net.run(Duration::from_secs(5));
    let inc = exit_view(&net, 2, 0, "incoming");
    assert_eq!(inc.enforcement, Some("full"), "{inc:?}");
    let before = net.nodes[2].delivered.len();
    net.tun(0, &p);
    net.run(Duration::from_millis(200));
    assert_eq!(net.nodes[2].delivered.len(), before + 1);
    // It paid for what the exit carried, not for what the exit dropped: the exit kept
    // reporting its count while it shaped and cut (what it dropped in the last report
    // interval, 0.5 s at 20 packets a second, may still be paid, as on links).
    net.run(Duration::from_secs(3));
    let out = exit_view(&net, 0, 2, "outgoing");
    let inc = exit_view(&net, 2, 0, "incoming");
    assert_eq!(inc.unpaid, Amount::ZERO, "{inc:?}");
    let over = out.cumulative_paid.saturating_sub(inc.metered_amount);
    assert!(over <= cost(10 * p.len() as u64, FEE), "{out:?} {inc:?}");
    assert!(
        out.metered_amount > out.cumulative_paid.saturating_add(cost(MIB as u64, FEE)),
        "it paid for the dropped packets: {out:?} {inc:?}"
    );
}

#[test]
fn a_client_claiming_huge_download_loss_saves_at_most_the_tolerance() {
    const FEE: u64 = 1_000_000;
    let mut net = chain(FEE);
    // The client meters only half of what it receives: it claims 50 % loss.
    net.nodes[0].node.set_exit_download_metering(50);
    let client = ident(0).id().ipv4();
    net.tun(0, &v4(client, INTERNET, 100));
    net.run(Duration::from_secs(1));
    let p = v4(INTERNET, client, 1200);
    for _ in 0..4000 {
        net.tun(2, &p);
        net.step();
    }
    net.run(Duration::from_secs(15));
    for _ in 0..50 {
        net.tun(2, &p);
        net.run(Duration::from_millis(100));
    }
    let inc = exit_view(&net, 2, 0, "incoming");
    assert_ne!(inc.enforcement, Some("full"), "{inc:?}");
    assert!(net.nodes[2].node.drops().get(DropReason::UnpaidShaped) > 0);
    // What it got unpaid is bounded by the loss tolerance on what it received, plus the
    // ladder's 1.25 windows and the free tier.
    let received: u64 = net.nodes[0].delivered.iter().map(|p| p.len() as u64).sum();
    let tolerance = cost(received * bitcloud::node::DOWNLOAD_LOSS_PERCENT / 100, FEE);
    let window = Amount::from_units(1_000_000);
    let free = cost(16 * 1024 * 10 + 64 * 1024 + 1500, FEE);
    let bound = tolerance
        .saturating_add(window.mul_ratio(5, 4))
        .saturating_add(free);
    assert!(
        inc.unpaid <= bound,
        "unpaid {:?} > bound {bound:?}",
        inc.unpaid
    );
    // The exit's count is what it sent; it bills no more than that.
    assert_eq!(inc.metered_amount, cost(inc.metered_bytes, FEE));
}

#[test]
fn honest_small_download_loss_is_tolerated() {
    const FEE: u64 = 1_000_000;
    let mut net = chain(FEE);
    // 4 % of the replies never reach the client (the tolerance is 5 %), over ~30 MiB: the
    // gap is beyond the credit window, but not beyond window + tolerance.
    net.nodes[0].node.set_exit_download_metering(96);
    let client = ident(0).id().ipv4();
    net.tun(0, &v4(client, INTERNET, 100));
    net.run(Duration::from_secs(1));
    let p = v4(INTERNET, client, 1200);
    for _ in 0..2_500 {
        for _ in 0..10 {
            net.tun(2, &p);
        }
        net.step();
    }
    net.run(Duration::from_secs(15));
    let inc = exit_view(&net, 2, 0, "incoming");
    assert_eq!(
        net.nodes[0].delivered.len(),
        25_000,
        "nothing shaped: {:?} {inc:?}",
        net.nodes[2].node.drops().to_map()
    );
    assert_eq!(inc.enforcement, Some("full"), "{inc:?}");
    assert!(
        inc.unpaid > inc.credit_window,
        "the gap is owed, not forgiven: {inc:?}"
    );
}

#[test]
fn a_client_never_signs_past_its_spend_limit_for_exit_fees() {
    const FEE: u64 = 1_000_000;
    let mut net = chain(FEE);
    let limit = Amount::from_units(2_000_000); // 0.002 CC: about 2 MiB at the exit's fee
    net.nodes[0].wallet.spend_limit = Some(limit);
    let client = ident(0).id().ipv4();
    let p = v4(client, INTERNET, 1200);
    for _ in 0..1000 {
        for _ in 0..4 {
            net.tun(0, &p);
        }
        net.step();
    }
    net.run(Duration::from_secs(5));
    let w = &net.nodes[0].wallet;
    let spent = w
        .outgoing
        .values()
        .fold(Amount::ZERO, |a, v| a.saturating_add(v.cumulative_amount));
    assert!(spent <= limit, "signed {spent:?} past the limit {limit:?}");
    assert!(net.nodes[0].node.drops().get(DropReason::SelfThrottled) > 0);
    let out = exit_view(&net, 0, 2, "outgoing");
    assert_eq!(out.throttled, Some(true), "{out:?}");
    // It throttled itself before the exit had to shape it.
    assert_eq!(net.nodes[2].node.drops().get(DropReason::UnpaidShaped), 0);
}
