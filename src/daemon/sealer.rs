//! Threads for the AEAD work of a TUN batch (issue 11, "crypto on every core"). The node
//! decides everything and reserves every counter on the loop's thread
//! (`Node::handle_tun_deferred`); what is left is pure crypto, `SealJob::run` on bytes we
//! own. [`Pool::seal`] lends all but the first part of a batch to helper threads, seals the
//! first part itself, then takes each part back: sealed by its helper if the helper got to
//! it, or sealed then on the loop's thread if it did not (so a helper that is slow to wake
//! never stalls the loop; it only loses its share). Invariants: a part is either with one
//! helper or with the loop, never both (one mutex-guarded slot per helper); buffers go back
//! to the places they came from; nothing allocates per batch once the vectors have grown.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::session::aead::DefaultAead;
use crate::session::keypair::SealJob;

type Job = SealJob<DefaultAead>;

/// One half-batch: packet buffers lent by the TUN reader (swapped, not copied) and, per
/// buffer, where its datagram starts and the seal it still needs.
#[derive(Default)]
struct Work {
    bufs: Vec<Vec<u8>>,
    jobs: Vec<Option<(usize, Job)>>,
}

impl Work {
    /// Run every job on its buffer, on the calling thread.
    fn run(&mut self) {
        run(&mut self.bufs, &self.jobs);
    }
}

/// A part smaller than this many seals is not worth a handoff: waking a helper costs a few
/// microseconds and one seal of a full-size packet a fraction of one.
pub const PART_MIN: usize = 8;

/// Threads to seal with when `[session] crypto_threads` is not set, from the CPU count. On
/// two CPUs a helper lost 20-28 % of direct throughput (docs/crypto-threads.md): every core
/// is already busy with the kernel's half of the path, so a helper only adds wakeups. With
/// more CPUs, half of them, at most four: the kernel's UDP and TUN work needs the rest.
pub fn auto_threads(cpus: usize) -> usize {
    if cpus <= 2 { 1 } else { (cpus / 2).clamp(1, 4) }
}

/// The loop's helpers and, per helper, the vectors a part travels in.
pub struct Pool {
    helpers: Vec<Sealer>,
    works: Vec<Work>,
    /// Batches split across threads, and parts a helper sealed (the rest of the lent parts
    /// the loop took back unstarted and sealed itself).
    split: u64,
    helped: u64,
}

impl Pool {
    /// `threads` seal in all, the caller's included: `threads - 1` helpers are started.
    pub fn start(threads: usize) -> std::io::Result<Self> {
        let helpers = (1..threads.clamp(1, crate::config::MAX_CRYPTO_THREADS))
            .map(|_| Sealer::start())
            .collect::<std::io::Result<Vec<_>>>()?;
        let works = helpers.iter().map(|_| Work::default()).collect();
        Ok(Pool {
            helpers,
            works,
            split: 0,
            helped: 0,
        })
    }

    /// How many threads seal (the caller's included).
    pub fn threads(&self) -> usize {
        self.helpers.len() + 1
    }

    /// `status --json`'s `crypto` object.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "threads": self.threads(),
            "batches_split": self.split,
            "parts_by_helpers": self.helped,
        })
    }

    /// Run every job on its buffer (`jobs[i]` on `bufs[i]`), in parts across the helpers
    /// when the batch is large enough; the jobs are consumed.
    pub fn seal(&mut self, bufs: &mut [Vec<u8>], jobs: &mut [Option<(usize, Job)>]) {
        let n = bufs.len().min(jobs.len());
        let (Some(bufs), Some(jobs)) = (bufs.get_mut(..n), jobs.get_mut(..n)) else {
            return;
        };
        let seals = jobs.iter().filter(|j| j.is_some()).count();
        let parts = self.threads().min(seals / PART_MIN).max(1);
        if parts == 1 {
            run(bufs, jobs);
            return;
        }
        self.split += 1;
        let chunk = n.div_ceil(parts);
        let (mine, rest) = bufs.split_at_mut(chunk);
        let (my_jobs, rest_jobs) = jobs.split_at_mut(chunk);
        let lent = self.helpers.iter().zip(self.works.iter_mut());
        for ((h, w), (b, j)) in lent.zip(rest.chunks_mut(chunk).zip(rest_jobs.chunks_mut(chunk))) {
            let mut part = std::mem::take(w);
            part.bufs.resize_with(b.len(), Vec::new);
            part.jobs.clear();
            part.jobs.extend(j.iter_mut().map(Option::take));
            swap_all(&mut part.bufs, b);
            h.offer(part);
        }
        run(mine, my_jobs);
        let lent = self.helpers.iter().zip(self.works.iter_mut());
        for ((h, w), b) in lent.zip(rest.chunks_mut(chunk)) {
            let (mut part, by_helper) = h.reclaim();
            self.helped += u64::from(by_helper);
            swap_all(&mut part.bufs, b);
            part.jobs.clear();
            *w = part;
        }
    }
}

fn swap_all(a: &mut [Vec<u8>], b: &mut [Vec<u8>]) {
    for (x, y) in a.iter_mut().zip(b.iter_mut()) {
        std::mem::swap(x, y);
    }
}

/// Run each job on its buffer, on the calling thread.
fn run(bufs: &mut [Vec<u8>], jobs: &[Option<(usize, Job)>]) {
    for (buf, job) in bufs.iter_mut().zip(jobs) {
        if let Some((at, job)) = job
            && let Some(b) = buf.get_mut(*at..)
        {
            let _ = job.run(b);
        }
    }
}

/// How long an idle helper spins on the slot before it sleeps. Batches at line rate come
/// every few tens of microseconds, and waking a sleeping thread on a VM costs about 20 (a
/// futex wake and an IPI): a helper that slept between batches made the pool slower than one
/// thread (docs/crypto-threads.md).
const HELPER_SPIN: Duration = Duration::from_micros(200);
/// How long the loop spins for a part its helper is sealing before it sleeps on it.
const LOOP_SPIN: Duration = Duration::from_micros(100);

enum Slot {
    Empty,
    /// Offered, not yet started by the helper.
    Offered(Work),
    /// The helper is sealing it.
    Taken,
    Done(Work),
    Stop,
}

// `Shared::hint` mirrors the slot's variant so either side can spin without the lock.
const EMPTY: u8 = 0;
const OFFERED: u8 = 1;
const TAKEN: u8 = 2;
const DONE: u8 = 3;
const STOP: u8 = 4;

struct State {
    slot: Slot,
    /// Whether the helper (loop) sleeps on `to_helper` (`to_loop`): a notify, a syscall, is
    /// made only then.
    helper_asleep: bool,
    loop_asleep: bool,
}

struct Shared {
    state: Mutex<State>,
    hint: AtomicU8,
    to_helper: Condvar,
    to_loop: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means the helper panicked mid-seal; the slot itself is still sound.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, st: &mut State, slot: Slot) {
        let hint = match slot {
            Slot::Empty => EMPTY,
            Slot::Offered(_) => OFFERED,
            Slot::Taken => TAKEN,
            Slot::Done(_) => DONE,
            Slot::Stop => STOP,
        };
        st.slot = slot;
        self.hint.store(hint, Ordering::Release);
    }

    /// Spin until `done(hint)` or `limit` has passed (the caller then takes the lock and
    /// looks for itself: the hint only saves the lock while nothing changes).
    fn spin_until(&self, done: impl Fn(u8) -> bool, limit: Duration) {
        let t0 = Instant::now();
        let mut spins = 0u32;
        while !done(self.hint.load(Ordering::Acquire)) {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) && t0.elapsed() >= limit {
                return;
            }
        }
    }
}

/// One helper thread and its slot.
struct Sealer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Sealer {
    /// Start the helper thread.
    fn start() -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                slot: Slot::Empty,
                helper_asleep: false,
                loop_asleep: false,
            }),
            hint: AtomicU8::new(EMPTY),
            to_helper: Condvar::new(),
            to_loop: Condvar::new(),
        });
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("bitcloud-seal".into())
            .spawn(move || helper(&s))?;
        Ok(Sealer {
            shared,
            thread: Some(thread),
        })
    }

    /// Hand `work` to the helper. The caller must [`Sealer::reclaim`] it before offering more.
    fn offer(&self, work: Work) {
        let mut st = self.shared.lock();
        self.shared.set(&mut st, Slot::Offered(work));
        let wake = st.helper_asleep;
        drop(st);
        if wake {
            self.shared.to_helper.notify_one();
        }
    }

    /// Take the offered work back, sealed: waits only while the helper is sealing it, and
    /// seals it here if the helper has not started (then the flag is false).
    fn reclaim(&self) -> (Work, bool) {
        let sh = &*self.shared;
        sh.spin_until(|h| h != TAKEN, LOOP_SPIN);
        let mut st = sh.lock();
        loop {
            match std::mem::replace(&mut st.slot, Slot::Empty) {
                Slot::Offered(mut w) => {
                    sh.set(&mut st, Slot::Empty);
                    drop(st);
                    w.run();
                    return (w, false);
                }
                Slot::Done(w) => {
                    sh.set(&mut st, Slot::Empty);
                    return (w, true);
                }
                Slot::Taken => {
                    st.slot = Slot::Taken;
                    st.loop_asleep = true;
                    st = sh.to_loop.wait(st).unwrap_or_else(|e| e.into_inner());
                    st.loop_asleep = false;
                }
                // Nothing was offered: nothing to give back.
                other @ (Slot::Empty | Slot::Stop) => {
                    st.slot = other;
                    return (Work::default(), false);
                }
            }
        }
    }
}

impl Drop for Sealer {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        self.shared.set(&mut st, Slot::Stop);
        drop(st);
        self.shared.to_helper.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn helper(sh: &Shared) {
    loop {
        sh.spin_until(|h| h == OFFERED || h == STOP, HELPER_SPIN);
        let mut st = sh.lock();
        while !matches!(st.slot, Slot::Offered(_) | Slot::Stop) {
            st.helper_asleep = true;
            st = sh.to_helper.wait(st).unwrap_or_else(|e| e.into_inner());
            st.helper_asleep = false;
        }
        let Slot::Offered(mut w) = std::mem::replace(&mut st.slot, Slot::Stop) else {
            return;
        };
        sh.set(&mut st, Slot::Taken);
        drop(st);
        // A panic mid-seal must not leave the slot `Taken`: the loop would wait on it forever.
        // The part goes back as it is; an unsealed datagram fails to authenticate at the peer.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.run()));
        let mut st = sh.lock();
        sh.set(&mut st, Slot::Done(w));
        let wake = st.loop_asleep;
        drop(st);
        if wake {
            sh.to_loop.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::session::aead::{Cipher, TAG_LEN};
    use crate::session::handshake::SessionKeys;
    use crate::session::keypair::Keypair;
    use crate::wire::outer::{Kind, Message, TRANSPORT_HEADER_LEN, parse};

    fn pair() -> (Keypair<DefaultAead>, Keypair<DefaultAead>) {
        let now = Instant::now();
        let keys = |s, r| SessionKeys {
            send: [s; 32],
            recv: [r; 32],
            cipher: Cipher::Aes256Gcm,
        };
        (
            Keypair::new(&keys(1, 2), 10, 20, now, true),
            Keypair::new(&keys(2, 1), 20, 10, now, false),
        )
    }

    /// `n` buffers of distinct payloads with their deferred seals, as the loop builds them.
    fn work(k: &mut Keypair<DefaultAead>, n: usize) -> Work {
        let mut w = Work::default();
        for i in 0..n {
            let len = 100 + i;
            let mut buf = vec![i as u8; TRANSPORT_HEADER_LEN + len + TAG_LEN];
            let (_, job) = k.seal_deferred(Kind::Packet, &mut buf, len).unwrap();
            w.bufs.push(buf);
            w.jobs.push(Some((0, job)));
        }
        w
    }

    fn opens_in_order(rx: &mut Keypair<DefaultAead>, w: &Work) {
        for (i, buf) in w.bufs.iter().enumerate() {
            let mut msg = buf.clone();
            let Ok(Message::Transport(h)) = parse(buf) else {
                panic!("buffer {i} is not a transport message")
            };
            let n = rx.open(&h, &mut msg).expect("sealed");
            assert_eq!(n, 100 + i, "buffer {i} came back in its place");
            assert!(
                msg[TRANSPORT_HEADER_LEN..][..n]
                    .iter()
                    .all(|&b| b == i as u8)
            );
        }
    }

    #[test]
    fn offered_work_comes_back_sealed_and_in_order() {
        let (mut tx, mut rx) = pair();
        let sealer = Sealer::start().unwrap();
        for round in 0..50 {
            let w = work(&mut tx, 1 + round % 7);
            sealer.offer(w);
            // Sometimes reclaim at once (likely steals it back), sometimes after the helper
            // had time: both must give every buffer back sealed.
            if round % 2 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let (w, _) = sealer.reclaim();
            assert_eq!(w.bufs.len(), 1 + round % 7);
            opens_in_order(&mut rx, &w);
        }
    }

    #[test]
    fn reclaim_without_an_offer_returns_nothing_and_drop_stops_the_thread() {
        let sealer = Sealer::start().unwrap();
        assert!(sealer.reclaim().0.bufs.is_empty());
        drop(sealer); // joins: a hang here fails the test by its timeout
    }

    #[test]
    fn work_runs_inline_and_skips_packets_without_a_seal() {
        let (mut tx, mut rx) = pair();
        let mut w = work(&mut tx, 3);
        w.run();
        opens_in_order(&mut rx, &w);
        let mut plain = Work {
            bufs: vec![vec![7u8; 8]],
            jobs: vec![None],
        };
        plain.run();
        assert_eq!(plain.bufs[0], vec![7u8; 8], "no job: untouched");
    }
    #[test]
    fn a_pool_seals_every_packet_of_a_split_batch_in_place() {
        let (mut tx, mut rx) = pair();
        let mut pool = Pool::start(3).unwrap();
        assert_eq!(pool.threads(), 3);
        for round in 0..300 {
            // 44 packets, one without a seal (a dropped packet's slot), like a TUN read.
            let mut w = work(&mut tx, 44);
            w.jobs[7] = None;
            pool.seal(&mut w.bufs, &mut w.jobs);
            assert!(
                w.jobs.iter().skip(16).all(Option::is_none),
                "lent jobs are consumed"
            );
            for (i, buf) in w.bufs.iter().enumerate() {
                let mut msg = buf.clone();
                let Ok(Message::Transport(h)) = parse(buf) else {
                    panic!("round {round}: buffer {i} is not a transport message")
                };
                // Packet 7's counter was reserved but never sealed: it must not open. Every
                // other buffer must be back in its own place (its length says which it is).
                match rx.open(&h, &mut msg) {
                    Ok(n) => assert_eq!((i, n), (i, 100 + i), "round {round}: misplaced"),
                    Err(e) => assert_eq!(i, 7, "round {round} buffer {i}: {e:?}"),
                }
            }
        }
        assert_eq!(pool.split, 300, "every batch of 43 seals was split");
        assert!(
            pool.helped > 0,
            "the helpers sealed some parts: {}",
            pool.status()
        );
        // A small batch stays on the caller's thread.
        let mut w = work(&mut tx, PART_MIN);
        pool.seal(&mut w.bufs, &mut w.jobs);
        assert_eq!(pool.split, 300);
        opens_in_order(&mut rx, &w);
    }

    #[test]
    fn auto_threads_keeps_two_cpus_single_threaded() {
        assert_eq!(auto_threads(1), 1);
        assert_eq!(auto_threads(2), 1);
        assert_eq!(auto_threads(4), 2);
        assert_eq!(auto_threads(64), 4);
    }
}
