//! Sliding anti-replay window (RFC 6479): a ring of 64-bit blocks. Invariant: a counter is
//! accepted at most once, and anything more than `WINDOW_SIZE` behind the highest accepted
//! counter is rejected. Only call `update` after the packet authenticated.

/// Bits per block of the ring.
const BLOCK_BITS: u64 = 64;
/// Blocks in the ring (8192 bits).
const RING_BLOCKS: usize = 128;
/// Accepted window: ring size less one block, as in RFC 6479 §2 and WireGuard (8128).
pub const WINDOW_SIZE: u64 = RING_BLOCKS as u64 * BLOCK_BITS - BLOCK_BITS;

/// Why a counter was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Seen before.
    Duplicate,
    /// Older than the window.
    TooOld,
}

/// The replay window for one receiving key.
#[derive(Clone)]
pub struct ReplayWindow {
    ring: [u64; RING_BLOCKS],
    /// One past the highest accepted counter (0 = nothing accepted yet).
    next: u64,
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow {
            ring: [0; RING_BLOCKS],
            next: 0,
        }
    }
}

impl ReplayWindow {
    /// Check without recording: cheap pre-filter before spending an AEAD open.
    pub fn check(&self, counter: u64) -> Result<(), Replay> {
        if counter >= self.next {
            return Ok(());
        }
        if self.next - counter > WINDOW_SIZE + 1 {
            return Err(Replay::TooOld);
        }
        let (block, bit) = Self::pos(counter);
        if self.ring[block] & bit != 0 {
            Err(Replay::Duplicate)
        } else {
            Ok(())
        }
    }

    /// Check and record an authenticated counter.
    pub fn update(&mut self, counter: u64) -> Result<(), Replay> {
        self.check(counter)?;
        if counter >= self.next {
            // Clear every block the window slides past (at most the whole ring). The ring
            // starts zeroed, so the first packet has nothing to clear.
            if let Some(highest) = self.next.checked_sub(1) {
                let diff = (counter / BLOCK_BITS - highest / BLOCK_BITS).min(RING_BLOCKS as u64);
                for i in 1..=diff {
                    let b = ((highest / BLOCK_BITS + i) % RING_BLOCKS as u64) as usize;
                    self.ring[b] = 0;
                }
            }
            // Callers reject counters near u64::MAX (REJECT_AFTER_MESSAGES) before this.
            self.next = counter.saturating_add(1);
        }
        let (block, bit) = Self::pos(counter);
        self.ring[block] |= bit;
        Ok(())
    }

    fn pos(counter: u64) -> (usize, u64) {
        let block = ((counter / BLOCK_BITS) % RING_BLOCKS as u64) as usize;
        (block, 1u64 << (counter % BLOCK_BITS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn edges() {
        let mut w = ReplayWindow::default();
        assert_eq!(w.update(0), Ok(()));
        assert_eq!(w.update(0), Err(Replay::Duplicate));
        assert_eq!(w.update(1), Ok(()));
        // Far ahead jumps the window.
        let far = 1_000_000;
        assert_eq!(w.update(far), Ok(()));
        assert_eq!(w.update(far), Err(Replay::Duplicate));
        assert_eq!(w.update(2), Err(Replay::TooOld));
        // Exactly at the window edge: highest - WINDOW_SIZE is still accepted once.
        assert_eq!(w.update(far - WINDOW_SIZE), Ok(()));
        assert_eq!(w.update(far - WINDOW_SIZE), Err(Replay::Duplicate));
        assert_eq!(w.update(far - WINDOW_SIZE - 1), Err(Replay::TooOld));
        // Out of order inside the window.
        assert_eq!(w.update(far - 5), Ok(()));
        assert_eq!(w.update(far - 5), Err(Replay::Duplicate));
        assert_eq!(w.update(u64::MAX - 1), Ok(()));
        assert_eq!(w.update(far), Err(Replay::TooOld));
    }

    #[test]
    fn slide_by_one_block_clears_stale_bits() {
        let mut w = ReplayWindow::default();
        for c in 0..(WINDOW_SIZE * 3) {
            assert_eq!(w.update(c), Ok(()), "counter {c}");
        }
        for c in (WINDOW_SIZE * 2)..(WINDOW_SIZE * 3) {
            assert_eq!(w.update(c), Err(Replay::Duplicate));
        }
    }

    proptest::proptest! {
        /// Against a reference model: accepted iff never seen and within the window.
        #[test]
        fn matches_model(ops in proptest::collection::vec(0u64..20_000, 1..2000)) {
            let mut w = ReplayWindow::default();
            let mut seen = HashSet::new();
            let mut max: Option<u64> = None;
            for c in ops {
                let expect_ok = !seen.contains(&c)
                    && max.is_none_or(|m| c + WINDOW_SIZE >= m);
                let got = w.update(c);
                proptest::prop_assert_eq!(got.is_ok(), expect_ok, "counter {} max {:?}", c, max);
                if got.is_ok() {
                    seen.insert(c);
                    max = Some(max.map_or(c, |m| m.max(c)));
                }
            }
        }
    }
}
