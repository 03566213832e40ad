//! The routing core on a deterministic simulated network of 100 nodes: it converges, every
//! connected pair stays routed within a bounded number of update intervals after each random
//! link failure or recovery, and walking next hops never finds a loop at any sampled instant.

mod routesim;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use bitcloud::route::RouterConfig;
use rand::RngExt;
use routesim::{LinkState, Sim};

/// Make one random change: fail an up link (silently 30 % of the time) or recover a down one.
fn random_change(sim: &mut Sim) -> String {
    let up = sim.links_in(LinkState::Up);
    let mut down = sim.links_in(LinkState::Down);
    down.extend(sim.links_in(LinkState::Silent));
    if down.is_empty() || sim.rng.random_bool(0.6) {
        let (a, b) = up[sim.rng.random_range(0..up.len())];
        let silent = sim.rng.random_bool(0.3);
        sim.link_down(a, b, silent);
        format!("{} {a}-{b}", if silent { "silent-fail" } else { "fail" })
    } else {
        let (a, b) = down[sim.rng.random_range(0..down.len())];
        sim.link_up(a, b);
        format!("recover {a}-{b}")
    }
}

#[test]
fn hundred_nodes_converge_and_never_loop_under_link_churn() {
    let wall = Instant::now();
    let cfg = RouterConfig::default();
    let (hello, update) = (cfg.hello_interval, cfg.update_interval);
    let mut sim = Sim::new(100, 0x0B17_C10D, cfg);
    sim.random_topology(100);
    sim.run_for(hello); // every node has booted and every link is up
    let initial = sim
        .converge(Duration::from_millis(250), update * 2)
        .expect("initial convergence within two update intervals");
    let initial_total = sim.now - sim.start;

    // Each change is followed by checks every second (each asserts no loop) until every
    // connected pair is routed and no disconnected pair still has a route.
    let bound = update * 3;
    let mut worst = Duration::ZERO;
    let mut rounds = 0;
    for round in 0..40 {
        // Every eighth round is a burst of three simultaneous changes.
        let n = if round % 8 == 7 { 3 } else { 1 };
        let what: Vec<String> = (0..n).map(|_| random_change(&mut sim)).collect();
        let took = sim
            .converge(Duration::from_secs(1), bound)
            .unwrap_or_else(|| panic!("round {round} ({what:?}) not converged: {:?}", sim.check()));
        worst = worst.max(took);
        rounds += 1;
    }

    // The per-packet address lookup agrees with the next-hop table.
    for s in 0..10 {
        for d in 0..100 {
            let (Some(r), dst) = (sim.routers[s].as_ref(), sim.ids[d]) else {
                continue;
            };
            if s != d && r.next_hop(&dst).is_some() {
                assert_eq!(
                    r.lookup_addr(IpAddr::V6(dst.ipv6())).map(|x| x.1),
                    r.next_hop(&dst)
                );
            }
        }
    }
    let mut bad = 0;
    let mut requests = 0;
    let mut bumps = 0;
    for r in sim.routers.iter().flatten() {
        let s = r.stats();
        bad += s.bad_signature + s.malformed + s.unknown_neighbour;
        requests += s.seqno_requests_sent;
        bumps += s.seqno_bumps;
    }
    assert_eq!(bad, 0);
    eprintln!(
        "100 nodes, {} links: all pairs routed {:?} after the boot window ({:?} from t=0); \
         {rounds} churn rounds, worst reconvergence {:?} ({:.2} update intervals, bound {}); \
         {} messages, {} bytes, {requests} seqno requests, {bumps} seqno bumps; wall {:?}",
        sim.links.len(),
        initial,
        initial_total,
        worst,
        worst.as_secs_f64() / update.as_secs_f64(),
        bound.as_secs() / update.as_secs(),
        sim.messages,
        sim.bytes,
        wall.elapsed(),
    );
}
