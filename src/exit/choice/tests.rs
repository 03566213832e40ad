//! Exit choice on a virtual clock: selection, hysteresis, failover, retraction, fixed mode,
//! the probe budget, and answers that must change nothing.

use super::*;

fn id(n: u8) -> NodeId {
    NodeId([n; 32])
}

fn offer(n: u8, price: u64) -> Offer {
    Offer {
        id: id(n),
        price_per_mib: price,
        metric: 256,
    }
}

/// Drive `c` for `d` in 100 ms steps; every probe to an exit in `alive` is answered 5 ms later.
fn run(c: &mut ExitChoice, now: &mut Instant, d: Duration, alive: &[u8]) -> Vec<(NodeId, u64)> {
    let end = *now + d;
    let mut sent = Vec::new();
    while *now < end {
        *now += Duration::from_millis(100);
        c.handle_timeout(*now);
        while let Some((to, nonce)) = c.poll_probe(*now) {
            sent.push((to, nonce));
            if alive.iter().any(|&a| id(a) == to) {
                c.on_probe_reply(to, nonce, *now + Duration::from_millis(5));
            }
        }
    }
    sent
}

#[test]
fn auto_picks_the_cheapest_exit_once_it_answers() {
    let mut now = Instant::now();
    let mut c = ExitChoice::new(ChoiceConfig::default(), Mode::Auto);
    c.update_offers(&[offer(1, 2000), offer(2, 1000)], now);
    assert_eq!(
        c.current(),
        None,
        "nothing is healthy before a probe is answered"
    );
    run(&mut c, &mut now, Duration::from_secs(1), &[1, 2]);
    assert_eq!(c.current(), Some(id(2)));
    assert_eq!(c.poll_event(), Some(ExitEvent::Selected(Some(id(2)))));
    assert_eq!(c.switches(), 0, "the first selection is no switch");
    let l = c.list(now);
    assert!(l[0].selected && l[0].healthy && l[0].rtt == Some(Duration::from_millis(5)));
}

#[test]
fn close_prices_do_not_flap_and_a_clear_saving_switches() {
    let mut now = Instant::now();
    let mut c = ExitChoice::new(ChoiceConfig::default(), Mode::Auto);
    c.update_offers(&[offer(1, 1000)], now);
    run(&mut c, &mut now, Duration::from_secs(1), &[1, 2, 3]);
    assert_eq!(c.current(), Some(id(1)));
    // 5 % cheaper: within the 10 % hysteresis, and prices that wobble keep it there.
    for p in [950, 1040, 960, 1000] {
        c.update_offers(&[offer(1, 1000), offer(2, p)], now);
        run(&mut c, &mut now, Duration::from_secs(2), &[1, 2, 3]);
        assert_eq!(c.current(), Some(id(1)), "flapped at {p}");
    }
    c.update_offers(&[offer(1, 1000), offer(2, 850)], now);
    run(&mut c, &mut now, Duration::from_secs(1), &[1, 2, 3]);
    assert_eq!(c.current(), Some(id(2)), "15 % cheaper wins");
    assert_eq!(c.switches(), 1);
}

#[test]
fn a_silent_exit_fails_over_within_10_s() {
    let mut now = Instant::now();
    let mut c = ExitChoice::new(ChoiceConfig::default(), Mode::Auto);
    c.update_offers(&[offer(1, 1000), offer(2, 3000)], now);
    run(&mut c, &mut now, Duration::from_secs(2), &[1, 2]);
    assert_eq!(c.current(), Some(id(1)));
    let died = now;
    while c.current() == Some(id(1)) {
        run(&mut c, &mut now, Duration::from_millis(100), &[2]);
        assert!(now - died < Duration::from_secs(10), "no failover in 10 s");
    }
    assert_eq!(c.current(), Some(id(2)));
    assert!(
        now - died <= Duration::from_secs(4),
        "failover took {:?}",
        now - died
    );
    // It comes back and is cheaper by far: auto returns to it.
    run(&mut c, &mut now, Duration::from_secs(3), &[1, 2]);
    assert_eq!(c.current(), Some(id(1)));
    assert_eq!(c.switches(), 2);
}

#[test]
fn a_retracted_exit_is_left_at_once_and_none_left_means_none() {
    let mut now = Instant::now();
    let mut c = ExitChoice::new(ChoiceConfig::default(), Mode::Auto);
    c.update_offers(&[offer(1, 1000), offer(2, 3000)], now);
    run(&mut c, &mut now, Duration::from_secs(2), &[1, 2]);
    c.update_offers(&[offer(2, 3000)], now);
    assert_eq!(c.current(), Some(id(2)), "switched in the same call");
    c.update_offers(&[], now);
    assert_eq!(c.current(), None);
    while c.poll_event().is_some() {}
    assert!(c.list(now).is_empty());
}

#[test]
fn a_fixed_exit_is_never_replaced() {
    let mut now = Instant::now();
    let mut c = ExitChoice::new(ChoiceConfig::default(), Mode::Fixed(id(2)));
    c.update_offers(&[offer(1, 10), offer(2, 5000)], now);
    let sent = run(&mut c, &mut now, Duration::from_secs(2), &[1, 2]);
    assert!(
        sent.iter().all(|(to, _)| *to == id(2)),
        "only the fixed exit is probed"
    );
    assert_eq!(c.current(), Some(id(2)));
    run(&mut c, &mut now, Duration::from_secs(5), &[1]);
    assert_eq!(c.current(), None, "down: no exit rather than another one");
    run(&mut c, &mut now, Duration::from_secs(2), &[1, 2]);
    assert_eq!(c.current(), Some(id(2)), "back when it answers again");
    c.set_mode(Mode::Off, now);
    assert_eq!(c.current(), None);
    assert!(
        run(&mut c, &mut now, Duration::from_secs(3), &[1, 2]).is_empty(),
        "off probes nothing"
    );
}

#[test]
fn probes_stay_within_budget_and_forged_answers_change_nothing() {
    let mut now = Instant::now();
    let mut c = ExitChoice::new(ChoiceConfig::default(), Mode::Auto);
    let offers: Vec<Offer> = (1..=20).map(|n| offer(n, 1000 + u64::from(n))).collect();
    c.update_offers(&offers, now);
    // An answer nobody asked for, a wrong nonce, an unknown exit: nothing becomes healthy.
    c.on_probe_reply(id(1), 77, now);
    c.on_probe_reply(id(99), 1, now);
    c.handle_timeout(now);
    assert_eq!(c.current(), None);
    let sent = run(&mut c, &mut now, Duration::from_secs(10), &[]);
    let per_sec = sent.len() as f64 / 10.0;
    assert!(per_sec <= 3.0, "{per_sec} probes a second for 20 exits");
    let replayed = sent[0];
    c.on_probe_reply(replayed.0, replayed.1, now);
    c.handle_timeout(now);
    assert_eq!(
        c.current(),
        None,
        "an answer to an old probe does not count"
    );
}

#[test]
fn a_flood_of_minted_exits_is_cut_to_the_cheapest_few() {
    let mut now = Instant::now();
    let mut c = ExitChoice::new(ChoiceConfig::default(), Mode::Auto);
    c.update_offers(&[offer(1, 5000)], now);
    run(&mut c, &mut now, Duration::from_secs(1), &[1]);
    assert_eq!(c.current(), Some(id(1)));
    // 4,000 announced exits, all cheaper than the current one and none answering.
    let mut offers: Vec<Offer> = (0..4000u32)
        .map(|n| {
            let mut b = [0xee; 32];
            b[..4].copy_from_slice(&n.to_be_bytes());
            Offer {
                id: NodeId(b),
                price_per_mib: 100 + u64::from(n),
                metric: 256,
            }
        })
        .collect();
    offers.push(offer(1, 5000));
    c.update_offers(&offers, now);
    let l = c.list(now);
    assert_eq!(
        l.len(),
        MAX_CANDIDATES + 1,
        "the cheapest ones plus the current one"
    );
    assert!(l.iter().any(|e| e.id == id(1) && e.selected));
    run(&mut c, &mut now, Duration::from_secs(2), &[1]);
    assert_eq!(
        c.current(),
        Some(id(1)),
        "silent minted exits take nothing over"
    );
}
