//! Per-neighbour link state: the history of hellos received, the transmit cost the neighbour
//! reported in its IHUs, a smoothed RTT, and the link cost derived from them (RFC 8966 §3.4,
//! Appendix A). Invariant: the cost is `INFINITY` until the link is known to work both ways,
//! i.e. until a hello has been received recently and an IHU has not expired.

use std::time::{Duration, Instant};

use super::limits::{
    Bucket, REQUEST_BURST, REQUEST_RATE_PER_SEC, VERIFY_BURST, VERIFY_RATE_PER_SEC,
};
use crate::wire::routing::{HelloSeqno, INFINITY};

/// Number of hellos remembered (RFC 8966 Appendix A.1: a 16-bit history).
const HISTORY_LEN: u8 = 16;

/// A link is unusable when none of this many most recent expected hellos arrived. Waiting for
/// the whole 16-hello history to drain would take a minute at the default interval.
const DEAD_AFTER_MISSED: u8 = 3;

/// Receive/transmit cost of a loss-free link (RFC 8966 Appendix A.2.2, ETX).
pub(crate) const NOMINAL_COST: u16 = 256;

/// How RTT adds to link cost, as in the Babel RTT extension (draft-ietf-babel-rtt-extension)
/// with babeld's defaults for tunnels: nothing below `rtt_min`, `max_penalty` above `rtt_max`,
/// linear in between. The bound keeps RTT from dominating loss and hop count; with selection
/// hysteresis it keeps RTT noise from making routes oscillate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RttCost {
    /// RTT that costs nothing extra (default 10 ms).
    pub rtt_min: Duration,
    /// RTT from which the full penalty applies (default 120 ms).
    pub rtt_max: Duration,
    /// The full penalty in metric units (default 150).
    pub max_penalty: u16,
}

impl Default for RttCost {
    fn default() -> Self {
        RttCost {
            rtt_min: Duration::from_millis(10),
            rtt_max: Duration::from_millis(120),
            max_penalty: 150,
        }
    }
}

impl RttCost {
    /// The penalty for a smoothed RTT.
    pub fn penalty(&self, rtt: Duration) -> u16 {
        if rtt <= self.rtt_min {
            0
        } else if rtt >= self.rtt_max {
            self.max_penalty
        } else {
            let span = (self.rtt_max - self.rtt_min).as_micros();
            let over = (rtt - self.rtt_min).as_micros();
            // over < span here, so the quotient is below max_penalty and fits.
            u16::try_from(u128::from(self.max_penalty) * over / span).unwrap_or(self.max_penalty)
        }
    }
}

/// State of one neighbour's link.
#[derive(Debug)]
pub(crate) struct Neighbour {
    /// Budget for the requests it may make us answer.
    pub requests: Bucket,
    /// Budget for the signatures it may make us verify.
    pub verifications: Bucket,
    /// When we last queued it a full dump (periodic, link-up or asked for).
    pub dumped_at: Option<Instant>,
    /// Route entries it holds in our table (bounded by `max_routes_per_neighbour`).
    pub routes: usize,
    /// Seqno of the next hello we send to this neighbour (unicast hellos, per neighbour).
    pub tx_hello_seqno: HelloSeqno,
    /// Bit 0 is the most recent expected hello; 1 = received.
    history: u16,
    /// How many bits of `history` are meaningful.
    history_len: u8,
    /// The seqno we expect in the neighbour's next hello.
    expected: Option<HelloSeqno>,
    /// The interval the neighbour announced in its last hello.
    hello_interval: Duration,
    /// When we count the next hello as missed.
    hello_deadline: Option<Instant>,
    /// The neighbour's receive cost from us, from its last IHU.
    txcost: u16,
    /// When that IHU stops counting (RFC 8966 Appendix B: IHU hold time, 3.5 IHU intervals).
    ihu_expiry: Option<Instant>,
    /// Smoothed RTT fed by the caller.
    srtt: Option<Duration>,
    /// The link cost last computed by [`Neighbour::recompute`].
    pub cost: u16,
}

impl Neighbour {
    /// A neighbour whose verification burst covers `max_routes` (its cap in our table).
    pub fn new(max_routes: usize) -> Self {
        let verify_burst = u64::try_from(max_routes).map_or(VERIFY_BURST, |m| m.max(VERIFY_BURST));
        Neighbour {
            tx_hello_seqno: HelloSeqno(0),
            requests: Bucket::new(REQUEST_BURST, REQUEST_RATE_PER_SEC),
            verifications: Bucket::new(verify_burst, VERIFY_RATE_PER_SEC),
            dumped_at: None,
            routes: 0,
            history: 0,
            history_len: 0,
            expected: None,
            hello_interval: Duration::ZERO,
            hello_deadline: None,
            txcost: INFINITY,
            ihu_expiry: None,
            srtt: None,
            cost: INFINITY,
        }
    }

    fn push(&mut self, received: bool) {
        self.history = (self.history << 1) | u16::from(received);
        self.history_len = (self.history_len + 1).min(HISTORY_LEN);
    }

    /// Account for a hello (RFC 8966 Appendix A.1).
    pub fn on_hello(&mut self, seqno: HelloSeqno, interval: Duration, now: Instant) {
        if let Some(expected) = self.expected {
            // Signed distance from the expected seqno; i16 reinterpretation is the modular
            // difference of RFC 8966 §3.2.1.
            let d = seqno.0.wrapping_sub(expected.0) as i16;
            if d.unsigned_abs() > u16::from(HISTORY_LEN) {
                // The neighbour restarted or was silent for a long time: start afresh.
                self.history = 0;
                self.history_len = 0;
            } else if d > 0 {
                for _ in 0..d {
                    self.push(false);
                }
            } else if d < 0 {
                // We counted hellos as missed that were only late: undo those marks.
                let undo = d.unsigned_abs().min(u16::from(self.history_len)) as u8;
                self.history = self.history.checked_shr(u32::from(undo)).unwrap_or(0);
                self.history_len -= undo;
            }
        }
        self.push(true);
        self.expected = Some(seqno.next());
        self.hello_interval = interval;
        // The hello timer runs for 1.5 advertised intervals (RFC 8966 §3.4.1) before a hello
        // counts as missed.
        self.hello_deadline = (!interval.is_zero()).then(|| now + interval + interval / 2);
    }

    /// Account for an IHU carrying the neighbour's receive cost from us.
    pub fn on_ihu(&mut self, rxcost: u16, interval: Duration, fallback: Duration, now: Instant) {
        let interval = if interval.is_zero() {
            fallback
        } else {
            interval
        };
        self.txcost = rxcost;
        // RFC 8966 Appendix B: IHU hold time is 3.5 times the IHU interval.
        self.ihu_expiry = Some(now + interval * 7 / 2);
    }

    /// Count missed hellos and expired IHUs up to `now`.
    pub fn tick(&mut self, now: Instant) {
        if let Some(deadline) = self.hello_deadline
            && now >= deadline
        {
            let iv = self.hello_interval.max(Duration::from_millis(10));
            let missed = (1 + (now - deadline).as_nanos() / iv.as_nanos()).min(16) as u16;
            for _ in 0..missed {
                self.push(false);
            }
            if let Some(e) = self.expected.as_mut() {
                *e = HelloSeqno(e.0.wrapping_add(missed));
            }
            self.hello_deadline = Some(deadline + iv * u32::from(missed));
        }
        if self.ihu_expiry.is_some_and(|t| now >= t) {
            self.ihu_expiry = None;
            self.txcost = INFINITY;
        }
    }

    /// Feed an RTT sample; `None` forgets the RTT. Smoothed with gain 1/8 as in RFC 6298 §2.3.
    pub fn set_rtt(&mut self, sample: Option<Duration>) {
        self.srtt = match (self.srtt, sample) {
            (_, None) => None,
            (None, Some(s)) => Some(s),
            (Some(old), Some(s)) => Some(old * 7 / 8 + s / 8),
        };
    }

    /// The smoothed RTT, if any.
    pub fn rtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// Hellos received among the last `history_len` expected, and `history_len`.
    pub fn hello_stats(&self) -> (u8, u8) {
        let mask = mask(self.history_len);
        ((self.history & mask).count_ones() as u8, self.history_len)
    }

    /// Our receive cost from this neighbour: ETX's 256/beta (RFC 8966 Appendix A.2.2).
    pub fn rxcost(&self) -> u16 {
        let recent = mask(self.history_len.min(DEAD_AFTER_MISSED));
        if self.history_len == 0 || self.history & recent == 0 {
            return INFINITY;
        }
        let (received, len) = self.hello_stats();
        let c = u32::from(NOMINAL_COST) * u32::from(len) / u32::from(received.max(1));
        u16::try_from(c).unwrap_or(INFINITY - 1).min(INFINITY - 1)
    }

    /// The neighbour's receive cost from us, as last reported.
    pub fn txcost(&self) -> u16 {
        self.txcost
    }

    /// Recompute the link cost: ETX `max(txcost, 256) * rxcost / 256` (RFC 8966 Appendix
    /// A.2.2) plus the RTT penalty. Returns true if it changed.
    pub fn recompute(&mut self, rtt: &RttCost) -> bool {
        let (rx, tx) = (self.rxcost(), self.txcost);
        let cost = if rx == INFINITY || tx == INFINITY {
            INFINITY
        } else {
            // The floor at 256 keeps a neighbour from claiming a better than loss-free link
            // (and so attracting traffic) by reporting a tiny receive cost in its IHUs.
            let tx = tx.max(NOMINAL_COST);
            let etx = u32::from(rx) * u32::from(tx) / u32::from(NOMINAL_COST);
            let pen = self.srtt.map_or(0, |r| rtt.penalty(r));
            let c = etx.max(1) + u32::from(pen);
            u16::try_from(c).unwrap_or(INFINITY - 1).min(INFINITY - 1)
        };
        let changed = cost != self.cost;
        self.cost = cost;
        changed
    }
}

fn mask(len: u8) -> u16 {
    if len >= 16 {
        u16::MAX
    } else {
        (1u16 << len) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn up(n: &mut Neighbour, now: Instant) {
        n.on_hello(HelloSeqno(0), S, now);
        n.on_ihu(NOMINAL_COST, S, S, now);
        n.recompute(&RttCost::default());
    }

    #[test]
    fn needs_both_directions() {
        let t = Instant::now();
        let mut n = Neighbour::new(4096);
        assert!(!n.recompute(&RttCost::default()));
        assert_eq!(n.cost, INFINITY);
        n.on_hello(HelloSeqno(7), S, t);
        n.recompute(&RttCost::default());
        assert_eq!(n.cost, INFINITY, "no IHU yet");
        n.on_ihu(NOMINAL_COST, S, S, t);
        assert!(n.recompute(&RttCost::default()));
        assert_eq!(n.cost, NOMINAL_COST);
    }

    #[test]
    fn loss_raises_cost_and_silence_kills_the_link() {
        let t = Instant::now();
        let mut n = Neighbour::new(4096);
        up(&mut n, t);
        // Every other hello lost: ETX doubles the receive cost.
        for i in 1..16u16 {
            if i % 2 == 0 {
                n.on_hello(HelloSeqno(i), S, t + S * u32::from(i));
            }
        }
        n.on_ihu(NOMINAL_COST, S, S, t + S * 15);
        n.recompute(&RttCost::default());
        assert!((400..=600).contains(&n.cost), "cost {}", n.cost);
        // Three missed hellos in a row: dead, even though the IHU is still valid.
        n.on_ihu(NOMINAL_COST, S * 10, S, t + S * 15);
        n.tick(t + S * 19);
        n.recompute(&RttCost::default());
        assert_eq!(n.cost, INFINITY);
    }

    #[test]
    fn late_hello_undoes_missed_marks_and_reboot_resets() {
        let t = Instant::now();
        let mut n = Neighbour::new(4096);
        up(&mut n, t);
        n.tick(t + S * 3); // counts seqno 1 and 2 as missed
        assert_eq!(n.hello_stats(), (1, 3));
        n.on_hello(HelloSeqno(1), S, t + S * 3);
        assert_eq!(n.hello_stats(), (2, 2));
        n.on_hello(HelloSeqno(5000), S, t + S * 4);
        assert_eq!(n.hello_stats(), (1, 1));
    }

    #[test]
    fn ihu_expires_and_rtt_penalises() {
        let t = Instant::now();
        let mut n = Neighbour::new(4096);
        up(&mut n, t);
        n.set_rtt(Some(Duration::from_millis(65)));
        n.recompute(&RttCost::default());
        assert_eq!(n.cost, NOMINAL_COST + 75);
        n.set_rtt(Some(Duration::from_millis(500)));
        n.recompute(&RttCost::default());
        assert!(n.cost > NOMINAL_COST + 75 && n.cost < NOMINAL_COST + 150);
        n.on_hello(HelloSeqno(1), S * 100, t);
        n.tick(t + S * 4);
        n.recompute(&RttCost::default());
        assert_eq!(n.cost, INFINITY, "IHU held 3.5 intervals only");
    }

    #[test]
    fn a_neighbour_cannot_claim_a_better_than_lossless_link() {
        let t = Instant::now();
        let mut n = Neighbour::new(4096);
        n.on_hello(HelloSeqno(0), S, t);
        n.on_ihu(1, S, S, t);
        n.recompute(&RttCost::default());
        assert_eq!(n.cost, NOMINAL_COST);
    }

    #[test]
    fn rtt_penalty_shape() {
        let r = RttCost::default();
        assert_eq!(r.penalty(Duration::from_millis(5)), 0);
        assert_eq!(r.penalty(Duration::from_millis(10)), 0);
        assert_eq!(r.penalty(Duration::from_millis(120)), 150);
        assert_eq!(r.penalty(Duration::from_secs(3)), 150);
        assert_eq!(r.penalty(Duration::from_millis(65)), 75);
    }
}
