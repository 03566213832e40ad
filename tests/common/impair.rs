//! A UDP link impairer for tests: netem's loss, delay, jitter, reordering and duplication in
//! user space, because the kernels we run on (CI's included) are built without `sch_netem`.
//!
//! One impairer sits at one end of an underlay link, in namespace `ns`, on `local_ip:port`.
//! Both daemons name it as the other's endpoint: what arrives from the far daemon (over the real
//! veth) goes to the near daemon at `local_ip:near_port`, and what the near daemon sends goes
//! to the far daemon at `far`. Each datagram is independently dropped, duplicated, delayed, or
//! (reordered) sent ahead of the delayed ones, as netem does.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::in_netns;

/// What the impairer does to every datagram, each way.
#[derive(Clone, Copy, Debug, Default)]
pub struct Impairment {
    /// Base one-way delay.
    pub delay: Duration,
    /// Uniform jitter added to the delay, 0..jitter.
    pub jitter: Duration,
    /// Per-mille chance a datagram is dropped.
    pub loss_pm: u32,
    /// Per-mille chance a datagram is sent twice.
    pub dup_pm: u32,
    /// Per-mille chance a datagram skips the delay (overtaking those queued).
    pub reorder_pm: u32,
}

impl std::fmt::Display for Impairment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "delay {:?}±{:?} loss {}‰ dup {}‰ reorder {}‰",
            self.delay, self.jitter, self.loss_pm, self.dup_pm, self.reorder_pm
        )
    }
}

/// A running impairer; its thread stops when the handle drops.
pub struct Impairer {
    /// The address both daemons use as the other's endpoint.
    pub addr: SocketAddr,
    setting: Arc<Mutex<Impairment>>,
    stop: Arc<AtomicBool>,
}

impl Impairer {
    /// Start one in `ns` on `addr`, between the near daemon at `near` and the far one at `far`.
    pub fn start(
        ns: &str,
        addr: SocketAddr,
        near: SocketAddr,
        far: SocketAddr,
        seed: u64,
    ) -> Impairer {
        let setting = Arc::new(Mutex::new(Impairment::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, st2) = (setting.clone(), stop.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        in_netns(ns, move || {
            let sock = UdpSocket::bind(addr).expect("impairer binds");
            sock.set_read_timeout(Some(Duration::from_millis(2)))
                .unwrap();
            tx.send(()).unwrap();
            run(&sock, near, far, &s2, &st2, seed | 1);
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("impairer started");
        Impairer {
            addr,
            setting,
            stop,
        }
    }

    /// Change what it does from now on.
    pub fn set(&self, i: Impairment) {
        *self.setting.lock().unwrap() = i;
    }
}

impl Drop for Impairer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A datagram waiting for its time: (due, arrival order, destination, bytes), earliest first.
type Queued = Reverse<(Instant, u64, SocketAddr, Vec<u8>)>;

fn run(
    sock: &UdpSocket,
    near: SocketAddr,
    far: SocketAddr,
    setting: &Mutex<Impairment>,
    stop: &AtomicBool,
    mut rng: u64,
) {
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut queue: BinaryHeap<Queued> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        while queue.peek().is_some_and(|Reverse((due, ..))| *due <= now) {
            let Reverse((_, _, to, d)) = queue.pop().unwrap();
            let _ = sock.send_to(&d, to);
        }
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let to = if from == near { far } else { near };
        let i = *setting.lock().unwrap();
        if (next() % 1000) < u64::from(i.loss_pm) {
            continue;
        }
        let copies = if (next() % 1000) < u64::from(i.dup_pm) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let d = buf[..n].to_vec();
            if (next() % 1000) < u64::from(i.reorder_pm) || i.delay.is_zero() && i.jitter.is_zero()
            {
                let _ = sock.send_to(&d, to);
                continue;
            }
            let jitter = if i.jitter.is_zero() {
                Duration::ZERO
            } else {
                Duration::from_micros(next() % i.jitter.as_micros().max(1) as u64)
            };
            seq += 1;
            queue.push(Reverse((Instant::now() + i.delay + jitter, seq, to, d)));
        }
    }
}
