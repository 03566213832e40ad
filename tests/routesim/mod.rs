//! A deterministic simulated network for `bitcloud::route::Router`: a virtual clock (a base
//! `Instant` plus simulated offsets; no real time is read after start), a seeded RNG, per-link
//! latency, explicit and silent link failures, and checks that walk next hops. Shared by
//! `tests/route_sim.rs` and `benches/route_convergence.rs`.
#![allow(dead_code)]

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use bitcloud::identity::{Identity, NodeId};
use bitcloud::route::{Router, RouterConfig};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// State of a simulated link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Delivers.
    Up,
    /// Down, and both routers were told (`remove_neighbour`).
    Down,
    /// Drops everything, but nobody was told: hello loss must find out.
    Silent,
}

/// A simulated link.
#[derive(Clone, Copy, Debug)]
pub struct Link {
    /// One-way delay.
    pub latency: Duration,
    /// Current state.
    pub state: LinkState,
    /// Bumped on every state change, so messages in flight across a flap are dropped.
    pub generation: u32,
}

enum Ev {
    Boot(usize),
    LinkUp(usize, usize),
    Deliver {
        from: usize,
        to: usize,
        generation: u32,
        bytes: Vec<u8>,
    },
    Timer(usize),
}

struct Item {
    at: Instant,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Item {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Item {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// What walking next hops from a source to a destination found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walk {
    /// Arrived after this many hops.
    Reached(usize),
    /// Some node on the way had no route.
    NoRoute,
    /// Some node's next hop is over a link that is not up.
    DeadLink,
    /// A node was visited twice.
    Loop,
}

/// Result of checking every ordered pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Check {
    /// Pairs whose walk loops. Must always be zero.
    pub loops: usize,
    /// Connected pairs whose walk does not arrive.
    pub unrouted: usize,
    /// Disconnected pairs for which the source still has a route.
    pub stale: usize,
    /// Longest walk that arrived.
    pub max_hops: usize,
}

impl Check {
    /// Every connected pair routed, no stale route, no loop.
    pub fn converged(&self) -> bool {
        self.loops == 0 && self.unrouted == 0 && self.stale == 0
    }
}

/// The simulated network.
pub struct Sim {
    /// Virtual time zero.
    pub start: Instant,
    /// Virtual now.
    pub now: Instant,
    /// One router per node; `None` before it boots.
    pub routers: Vec<Option<Router>>,
    /// Node ids.
    pub ids: Vec<NodeId>,
    idents: Vec<Identity>,
    index: HashMap<NodeId, usize>,
    /// Links keyed by (low index, high index).
    pub links: BTreeMap<(usize, usize), Link>,
    queue: BinaryHeap<Reverse<Item>>,
    armed: Vec<Option<Instant>>,
    seq: u64,
    cfg: RouterConfig,
    /// The seeded RNG; tests draw their failures from it too.
    pub rng: StdRng,
    /// Messages delivered.
    pub messages: u64,
    /// Bytes delivered.
    pub bytes: u64,
    /// Real time spent inside `run_until` (routers and event queue; checks excluded).
    pub busy: Duration,
}

fn key(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

impl Sim {
    /// `n` nodes with identities from `seed`; nothing booted yet.
    pub fn new(n: usize, seed: u64, cfg: RouterConfig) -> Sim {
        let mut rng = StdRng::seed_from_u64(seed);
        let idents: Vec<Identity> = (0..n)
            .map(|_| Identity::from_secret(rng.random()))
            .collect();
        let ids: Vec<NodeId> = idents.iter().map(Identity::id).collect();
        let index = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let start = Instant::now();
        Sim {
            start,
            now: start,
            routers: (0..n).map(|_| None).collect(),
            ids,
            idents,
            index,
            links: BTreeMap::new(),
            queue: BinaryHeap::new(),
            armed: vec![None; n],
            seq: 0,
            cfg,
            rng,
            messages: 0,
            bytes: 0,
            busy: Duration::ZERO,
        }
    }

    fn push(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Item {
            at,
            seq: self.seq,
            ev,
        }));
    }

    /// A random connected topology: a random spanning tree plus `extra` random edges, latencies
    /// uniform in 1..=30 ms. Each node boots at a random time within the first hello interval
    /// (so timers are not in lockstep); a link comes up once both ends have booted.
    pub fn random_topology(&mut self, extra: usize) {
        let n = self.ids.len();
        let window = self.cfg.hello_interval.as_millis() as u64;
        let boot: Vec<Instant> = (0..n)
            .map(|_| self.start + Duration::from_millis(self.rng.random_range(0..window)))
            .collect();
        for (i, at) in boot.iter().enumerate() {
            self.push(*at, Ev::Boot(i));
        }
        let mut edges = Vec::new();
        for i in 1..n {
            edges.push((self.rng.random_range(0..i), i));
        }
        let mut added = 0;
        while added < extra {
            let (a, b) = (self.rng.random_range(0..n), self.rng.random_range(0..n));
            if a != b && !edges.contains(&key(a, b)) {
                edges.push(key(a, b));
                added += 1;
            }
        }
        for (a, b) in edges {
            let latency = Duration::from_millis(self.rng.random_range(1..=30));
            self.links.insert(
                key(a, b),
                Link {
                    latency,
                    state: LinkState::Down,
                    generation: 0,
                },
            );
            let (Some(ta), Some(tb)) = (boot.get(a), boot.get(b)) else {
                continue;
            };
            self.push((*ta).max(*tb), Ev::LinkUp(a, b));
        }
    }

    fn router(&mut self, i: usize) -> Option<&mut Router> {
        self.routers.get_mut(i).and_then(Option::as_mut)
    }

    /// Bring link (a, b) up now: both routers add each other and get the RTT.
    pub fn link_up(&mut self, a: usize, b: usize) {
        let now = self.now;
        let Some(l) = self.links.get_mut(&key(a, b)) else {
            return;
        };
        let was = l.state;
        l.state = LinkState::Up;
        l.generation += 1;
        let rtt = l.latency * 2;
        if was == LinkState::Silent {
            // The routers never noticed, or already noticed through hello loss; either way
            // their neighbour entries are still there and hellos resume.
            return;
        }
        for (x, y) in [(a, b), (b, a)] {
            let peer = self.ids[y];
            if let Some(r) = self.router(x) {
                r.add_neighbour(peer, now);
                r.set_link_stats(peer, Some(rtt), now);
            }
            self.after(x);
        }
    }

    /// Take link (a, b) down now; `silent` hides it from the routers.
    pub fn link_down(&mut self, a: usize, b: usize, silent: bool) {
        let now = self.now;
        let Some(l) = self.links.get_mut(&key(a, b)) else {
            return;
        };
        l.generation += 1;
        l.state = if silent {
            LinkState::Silent
        } else {
            LinkState::Down
        };
        if silent {
            return;
        }
        for (x, y) in [(a, b), (b, a)] {
            let peer = self.ids[y];
            if let Some(r) = self.router(x) {
                r.remove_neighbour(peer, now);
            }
            self.after(x);
        }
    }

    /// Drain node `i`'s output into the network and re-arm its timer.
    fn after(&mut self, i: usize) {
        let now = self.now;
        let mut out = Vec::new();
        if let Some(r) = self.router(i) {
            while let Some(m) = r.poll_transmit() {
                out.push(m);
            }
            while r.poll_event().is_some() {}
        }
        for (to, bytes) in out {
            let Some(&j) = self.index.get(&to) else {
                continue;
            };
            let Some(l) = self.links.get(&key(i, j)) else {
                continue;
            };
            if l.state == LinkState::Up {
                let (at, generation) = (now + l.latency, l.generation);
                self.push(
                    at,
                    Ev::Deliver {
                        from: i,
                        to: j,
                        generation,
                        bytes,
                    },
                );
            }
        }
        let t = self.router(i).and_then(|r| r.poll_timeout());
        if t.is_some() && t != self.armed[i] {
            self.armed[i] = t;
            if let Some(t) = t {
                self.push(t, Ev::Timer(i));
            }
        }
    }

    /// Process every event up to `until`, then set the clock to it.
    pub fn run_until(&mut self, until: Instant) {
        let wall = Instant::now();
        while let Some(Reverse(item)) = self.queue.peek() {
            if item.at > until {
                break;
            }
            let Some(Reverse(item)) = self.queue.pop() else {
                break;
            };
            self.now = item.at;
            let now = self.now;
            match item.ev {
                Ev::Boot(i) => {
                    let r = Router::new(&self.idents[i], self.cfg.clone(), now);
                    self.routers[i] = Some(r);
                    self.after(i);
                }
                Ev::LinkUp(a, b) => self.link_up(a, b),
                Ev::Timer(i) => {
                    if self.armed[i] != Some(now) {
                        continue; // superseded
                    }
                    self.armed[i] = None;
                    if let Some(r) = self.router(i) {
                        r.handle_timeout(now);
                    }
                    self.after(i);
                }
                Ev::Deliver {
                    from,
                    to,
                    generation,
                    bytes,
                } => {
                    let live = self
                        .links
                        .get(&key(from, to))
                        .is_some_and(|l| l.state == LinkState::Up && l.generation == generation);
                    if !live {
                        continue;
                    }
                    self.messages += 1;
                    self.bytes += bytes.len() as u64;
                    let fid = self.ids[from];
                    if let Some(r) = self.router(to) {
                        r.handle_message(fid, &bytes, now)
                            .expect("routers only exchange valid messages");
                    }
                    self.after(to);
                }
            }
        }
        self.now = until;
        self.busy += wall.elapsed();
    }

    /// Run for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Walk next hops from `src` to `dst`.
    pub fn walk(&self, src: usize, dst: usize) -> Walk {
        let n = self.ids.len();
        let target = self.ids[dst];
        let mut visited = vec![false; n];
        let mut cur = src;
        let mut hops = 0;
        while cur != dst {
            if std::mem::replace(&mut visited[cur], true) {
                return Walk::Loop;
            }
            let Some(nh) = self
                .routers
                .get(cur)
                .and_then(Option::as_ref)
                .and_then(|r| r.next_hop(&target))
            else {
                return Walk::NoRoute;
            };
            let Some(&next) = self.index.get(&nh) else {
                return Walk::NoRoute;
            };
            if self.links.get(&key(cur, next)).map(|l| l.state) != Some(LinkState::Up) {
                return Walk::DeadLink;
            }
            cur = next;
            hops += 1;
        }
        Walk::Reached(hops)
    }

    /// Connected component of every node over links that are up (booted nodes only).
    pub fn components(&self) -> Vec<usize> {
        let n = self.ids.len();
        let mut parent: Vec<usize> = (0..n).collect();
        fn find(p: &mut [usize], mut x: usize) -> usize {
            while p[x] != x {
                p[x] = p[p[x]];
                x = p[x];
            }
            x
        }
        for (&(a, b), l) in &self.links {
            if l.state == LinkState::Up {
                let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
                parent[ra] = rb;
            }
        }
        (0..n).map(|i| find(&mut parent, i)).collect()
    }

    /// Walk every ordered pair. Per destination, each node's walk is resolved once and
    /// memoised (a walk that reaches a resolved node ends as that node's walk did), so this is
    /// O(n^2) next-hop lookups rather than O(n^2 * path length).
    pub fn check(&self) -> Check {
        #[derive(Clone, Copy, PartialEq)]
        enum St {
            Unknown,
            OnPath,
            Done(Walk),
        }
        let comp = self.components();
        let n = self.ids.len();
        let mut c = Check::default();
        let mut st = vec![St::Unknown; n];
        let mut path = Vec::new();
        for d in 0..n {
            let target = self.ids[d];
            st.iter_mut().for_each(|s| *s = St::Unknown);
            st[d] = St::Done(Walk::Reached(0));
            for s in 0..n {
                let mut cur = s;
                path.clear();
                let end = loop {
                    match st[cur] {
                        St::Done(w) => break w,
                        St::OnPath => break Walk::Loop,
                        St::Unknown => {}
                    }
                    st[cur] = St::OnPath;
                    path.push(cur);
                    let nh = self
                        .routers
                        .get(cur)
                        .and_then(Option::as_ref)
                        .and_then(|r| r.next_hop(&target))
                        .and_then(|nh| self.index.get(&nh).copied());
                    let Some(next) = nh else {
                        break Walk::NoRoute;
                    };
                    if self.links.get(&key(cur, next)).map(|l| l.state) != Some(LinkState::Up) {
                        break Walk::DeadLink;
                    }
                    cur = next;
                };
                // Unwind: nodes nearer the end have fewer hops left.
                for (k, &p) in path.iter().rev().enumerate() {
                    st[p] = St::Done(match end {
                        Walk::Reached(h) => Walk::Reached(h + k + 1),
                        other => other,
                    });
                }
            }
            for s in 0..n {
                if s == d {
                    continue;
                }
                let St::Done(w) = st[s] else { continue };
                if w == Walk::Loop {
                    c.loops += 1;
                }
                if comp[s] == comp[d] {
                    match w {
                        Walk::Reached(h) => c.max_hops = c.max_hops.max(h),
                        _ => c.unrouted += 1,
                    }
                } else if self
                    .routers
                    .get(s)
                    .and_then(Option::as_ref)
                    .and_then(|r| r.next_hop(&target))
                    .is_some()
                {
                    c.stale += 1;
                }
            }
        }
        c
    }

    /// Run in `step`s until `check` reports convergence or `limit` passes; panics on any loop.
    /// Returns the virtual time it took, or `None` on timeout.
    pub fn converge(&mut self, step: Duration, limit: Duration) -> Option<Duration> {
        let began = self.now;
        loop {
            let c = self.check();
            assert_eq!(
                c.loops,
                0,
                "forwarding loop at t={:?}: {c:?}",
                self.now - self.start
            );
            if c.converged() {
                return Some(self.now - began);
            }
            if self.now - began >= limit {
                return None;
            }
            self.run_for(step);
        }
    }

    /// Up links, as index pairs.
    pub fn links_in(&self, state: LinkState) -> Vec<(usize, usize)> {
        self.links
            .iter()
            .filter(|(_, l)| l.state == state)
            .map(|(k, _)| *k)
            .collect()
    }
}
