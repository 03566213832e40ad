//! `cargo bench --bench seal_pool`: how fast one TUN batch (44 full-size packets, one 64 KB
//! TSO read) is sealed by `daemon::sealer::Pool` with 1 and 2 threads, per cipher. This is the pool's
//! ceiling on an otherwise idle host; the tunnel benchmark shows what is left of it when the
//! kernel's half of the path shares the cores (docs/crypto-threads.md).

use std::time::{Duration, Instant};

use bitcloud::daemon::sealer::Pool;
use bitcloud::session::aead::{Cipher, DefaultAead, TAG_LEN};
use bitcloud::session::handshake::SessionKeys;
use bitcloud::session::keypair::Keypair;
use bitcloud::wire::outer::{Kind, TRANSPORT_HEADER_LEN};

const PACKET: usize = 1400;
const BATCH: usize = 44;

fn run(cipher: Cipher, threads: usize) {
    let keys = SessionKeys {
        send: [1; 32],
        recv: [2; 32],
        cipher,
    };
    let mut k = Keypair::<DefaultAead>::new(&keys, 1, 2, Instant::now(), true);
    let mut pool = Pool::start(threads).expect("threads");
    let mut bufs = vec![vec![0u8; TRANSPORT_HEADER_LEN + PACKET + TAG_LEN]; BATCH];
    let mut jobs = Vec::with_capacity(BATCH);
    let mut batch = |pool: &mut Pool| {
        jobs.clear();
        for b in bufs.iter_mut() {
            let (_, job) = k.seal_deferred(Kind::Packet, b, PACKET).expect("reserve");
            jobs.push(Some((0, job)));
        }
        pool.seal(&mut bufs, &mut jobs);
    };
    for _ in 0..1000 {
        batch(&mut pool);
    }
    let (t0, mut n) = (Instant::now(), 0u64);
    while t0.elapsed() < Duration::from_secs(2) {
        batch(&mut pool);
        n += 1;
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{cipher:?}, {threads} thread(s): {:.2} Gbit/s sealed ({:.1} us per {BATCH}-packet batch)",
        (n * BATCH as u64 * PACKET as u64) as f64 * 8.0 / secs / 1e9,
        secs * 1e6 / n as f64
    );
}

fn main() {
    for cipher in [Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305] {
        for threads in [1, 2] {
            run(cipher, threads);
        }
    }
}
