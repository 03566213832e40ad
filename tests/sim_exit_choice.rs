//! The client's exit choice inside the node (issue 9, "Failover"), on a virtual clock: `auto`
//! picks the cheapest exit that answers its end-to-end probes, fails over within 10 s when
//! that exit stops answering or retracts its default routes, and a fixed exit is never swapped
//! for another. (A candidate that never answers is never chosen: src/exit/choice/tests.rs.)

mod sim;

use std::time::Duration;

use bitcloud::drops::DropReason;
use bitcloud::exit::{ExitEvent, Mode};
use bitcloud::identity::NodeId;
use bitcloud::session::timers::Timers;
use sim::{Net, PERFECT, ident};

/// client 0 - relay 1 - exits 2 (fee 1000) and 3 (fee 5000).
fn two_exits() -> Net {
    let mut net = Net::new(4, &[(0, 1), (1, 2), (1, 3)], PERFECT, Timers::default());
    let now = net.now;
    net.nodes[2].node.set_exit_role(true, 1000, now);
    net.nodes[3].node.set_exit_role(true, 5000, now);
    net.start();
    net.run(Duration::from_secs(8));
    net
}

fn in_use(net: &Net) -> Option<NodeId> {
    net.nodes[0].node.exit_in_use()
}

fn events(net: &mut Net) -> Vec<Option<NodeId>> {
    std::iter::from_fn(|| net.nodes[0].node.poll_exit_event())
        .map(|ExitEvent::Selected(s)| s)
        .collect()
}

#[test]
fn auto_takes_the_cheapest_answering_exit_and_fails_over_within_10_s() {
    let mut net = two_exits();
    let (cheap, dear) = (ident(2).id(), ident(3).id());
    assert_eq!(in_use(&net), None, "off by default");
    let now = net.now;
    net.nodes[0].node.set_exit_mode(Mode::Auto, now);
    net.run(Duration::from_secs(4));
    assert_eq!(in_use(&net), Some(cheap));
    assert_eq!(
        events(&mut net),
        vec![Some(cheap)],
        "one change, told to the driver"
    );
    let list = net.nodes[0].node.exit_list(net.now);
    assert_eq!(list.len(), 2);
    assert!(
        list.iter().all(|e| e.healthy && e.rtt.is_some()),
        "{list:?}"
    );
    assert_eq!(list[0].id, cheap);
    assert!(list[0].selected && !list[1].selected);
    assert_eq!((list[0].price_per_mib, list[1].price_per_mib), (1000, 5000));

    // The cheap exit's host vanishes (its link drops, no retraction): probes go unanswered.
    net.set_link(1, 2, false);
    let mut waited = Duration::ZERO;
    while in_use(&net) != Some(dear) && waited < Duration::from_secs(10) {
        net.run(Duration::from_millis(100));
        waited += Duration::from_millis(100);
    }
    assert_eq!(in_use(&net), Some(dear), "no failover within 10 s");
    assert!(waited <= Duration::from_secs(5), "failover took {waited:?}");
    assert_eq!(net.nodes[0].node.exit_switches(), 1, "one failover");

    // It comes back: auto returns to it (much cheaper than the hysteresis margin).
    net.set_link(1, 2, true);
    net.run(Duration::from_secs(15));
    assert_eq!(in_use(&net), Some(cheap));

    // It stops selling: its default routes are retracted and the client moves at once.
    let now = net.now;
    net.nodes[2].node.set_exit_role(false, 1000, now);
    net.run(Duration::from_secs(2));
    assert_eq!(in_use(&net), Some(dear));
}

#[test]
fn a_fixed_exit_is_never_swapped_and_off_stops_everything() {
    let mut net = two_exits();
    let dear = ident(3).id();
    let now = net.now;
    net.nodes[0].node.set_exit_mode(Mode::Fixed(dear), now);
    net.run(Duration::from_secs(3));
    assert_eq!(in_use(&net), Some(dear), "fixed beats cheaper");
    net.set_link(1, 3, false);
    net.run(Duration::from_secs(10));
    assert_eq!(
        in_use(&net),
        None,
        "a dead fixed exit is not replaced: the kill switch holds"
    );
    let now = net.now;
    net.nodes[0].node.set_exit_mode(Mode::Off, now);
    assert_eq!(in_use(&net), None);
    assert_eq!(net.nodes[0].node.exit_mode(), Mode::Off);
}

#[test]
fn a_fixed_exit_routing_does_not_offer_is_not_used_or_probed() {
    let mut net = two_exits();
    let now = net.now;
    // The client fixes the relay (no exit) as its exit: the relay refuses the probes.
    net.nodes[0]
        .node
        .set_exit_mode(Mode::Fixed(ident(1).id()), now);
    net.run(Duration::from_secs(3));
    assert_eq!(in_use(&net), None);
    // Not offered by routing at all, so nothing was probed: nothing selected, nothing sent.
    assert_eq!(net.nodes[1].node.drops().get(DropReason::NotAnExit), 0);
}
