//! Convergence time and routing-table memory of the routing core on simulated random networks
//! (average degree 4, 1-30 ms links). Prints one line per size; not a statistical benchmark.
//! Run: `cargo bench --bench route_convergence [-- 100 500 1000]`.

#[path = "../tests/routesim/mod.rs"]
mod routesim;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bitcloud::route::RouterConfig;
use rand::RngExt;
use routesim::Sim;

/// Counts live heap bytes so router memory can be measured exactly.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, Ordering::Relaxed);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn run(n: usize) {
    let cfg = RouterConfig::default();
    let (hello, update) = (cfg.hello_interval, cfg.update_interval);
    let intervals = |d: Duration| d.as_secs_f64() / update.as_secs_f64();
    let mut sim = Sim::new(n, 0x5EED_0000 + n as u64, cfg);
    sim.random_topology(n);
    // Nodes boot at random times within the first hello interval.
    sim.run_for(hello);
    let conv = sim
        .converge(Duration::from_millis(10), update * 8)
        .expect("converges");
    let busy = sim.busy;
    let (mut sigs, mut upd) = (0, 0);
    for r in sim.routers.iter().flatten() {
        sigs += r.stats().signatures_checked;
        upd += r.stats().updates_received;
    }
    let hops = sim.check().max_hops;

    // Steady state: one full update interval of periodic traffic.
    let (m0, b0) = (sim.messages, sim.bytes);
    sim.run_for(update);
    let per_node_bps = (sim.bytes - b0) as f64 / n as f64 / update.as_secs_f64();
    let steady_msgs = (sim.messages - m0) as f64 / n as f64 / update.as_secs_f64();

    // Reconvergence after explicit link failures (the session layer reports them) and silent
    // ones (only hello loss reveals them), one at a time.
    let fail_once = |sim: &mut Sim, silent: bool| {
        let up = sim.links_in(routesim::LinkState::Up);
        let (a, b) = up[sim.rng.random_range(0..up.len())];
        sim.link_down(a, b, silent);
        let step = Duration::from_millis(if silent { 250 } else { 10 });
        let t = sim.converge(step, update * 8).expect("reconverges");
        sim.link_up(a, b);
        sim.converge(step, update * 8).expect("reconverges");
        t
    };
    let explicit: Vec<Duration> = (0..5).map(|_| fail_once(&mut sim, false)).collect();
    let silent: Vec<Duration> = (0..3).map(|_| fail_once(&mut sim, true)).collect();
    let max = |v: &[Duration]| v.iter().max().copied().unwrap_or_default();
    let mean = |v: &[Duration]| v.iter().sum::<Duration>() / v.len() as u32;

    // Memory: live heap released by dropping every router.
    let routers = std::mem::take(&mut sim.routers);
    let before = LIVE.load(Ordering::Relaxed);
    drop(routers);
    let mem = before - LIVE.load(Ordering::Relaxed);

    println!("{n} nodes, {} links, diameter {hops} hops", sim.links.len());
    println!(
        "  cold start (boots spread over the first {:.0} s): every pair routed at t = {:.2} s = \
         {:.3} update intervals; simulating all {n} nodes took {:.1} s wall ({:.0} ms per node; per node {} signature \
         checks, {} updates received)",
        hello.as_secs_f64(),
        (hello + conv).as_secs_f64(),
        intervals(hello + conv),
        busy.as_secs_f64(),
        busy.as_secs_f64() * 1000.0 / n as f64,
        sigs / n as u64,
        upd / n as u64,
    );
    println!(
        "  link failure: reconverged in max {:.2} s / mean {:.2} s (5 reported failures); \
         max {:.2} s = {:.2} update intervals (3 silent failures, found by hello loss)",
        max(&explicit).as_secs_f64(),
        mean(&explicit).as_secs_f64(),
        max(&silent).as_secs_f64(),
        intervals(max(&silent)),
    );
    println!(
        "  steady state: {per_node_bps:.0} B/s and {steady_msgs:.1} messages/s sent per node; \
         router memory {:.0} KiB per node = {:.0} B per destination",
        mem as f64 / n as f64 / 1024.0,
        mem as f64 / n as f64 / (n - 1) as f64,
    );
}

fn main() {
    let sizes: Vec<usize> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() {
        vec![100, 500, 1000]
    } else {
        sizes
    };
    for n in sizes {
        run(n);
    }
}
