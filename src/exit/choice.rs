//! The client's choice of exit: the cheapest healthy exit with hysteresis (`auto`), one fixed
//! exit, or none. Health comes from end-to-end probes: a candidate is healthy while it answered
//! one within `fail_after`; the current exit is switched away from at once when it stops
//! answering or is retracted, so failover takes at most `fail_after` plus one probe interval.
//! Invariants: at most `max_probed` candidates (plus the current one) are probed, each at most
//! once per `probe_interval`; a fixed exit is never replaced by another (the kill switch holds
//! instead); `auto` moves from a healthy current exit only to one cheaper by more than
//! `hysteresis_permille`, so two exits with close prices never flap.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::identity::NodeId;

/// The most exits tracked at once (the cheapest ones).
pub const MAX_CANDIDATES: usize = 64;

/// What the client wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// No exit: the host's own uplink.
    Off,
    /// The cheapest healthy exit.
    Auto,
    /// This exit and no other.
    Fixed(NodeId),
}

/// Tuning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChoiceConfig {
    /// How often each probed candidate gets a probe.
    pub probe_interval: Duration,
    /// A candidate with no answer for this long is unhealthy.
    pub fail_after: Duration,
    /// How many candidates besides the current one are probed (the best by price, then metric).
    pub max_probed: usize,
    /// Auto switches from a healthy exit only to one cheaper by more than this (per mille).
    pub hysteresis_permille: u64,
}

impl Default for ChoiceConfig {
    fn default() -> Self {
        // 1 probe/s to at most 3 exits: "a few small packets a second at most" (issue 9);
        // 3 s without an answer fails an exit over well within the 10 s the issue allows.
        ChoiceConfig {
            probe_interval: Duration::from_secs(1),
            fail_after: Duration::from_secs(3),
            max_probed: 2,
            hysteresis_permille: 100,
        }
    }
}

/// An exit the routing layer currently knows (it announces the default routes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offer {
    /// The exit node.
    pub id: NodeId,
    /// What the client pays per MiB through it (path plus exit fee, as routed).
    pub price_per_mib: u64,
    /// The route metric to it.
    pub metric: u16,
}

/// A change the node must act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitEvent {
    /// Route the internet through this exit from now on (None: through none; with the kill
    /// switch on, nothing leaves).
    Selected(Option<NodeId>),
}

/// One candidate as `bitcloud exit list` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitView {
    /// The exit node.
    pub id: NodeId,
    /// Price per MiB through it.
    pub price_per_mib: u64,
    /// Route metric.
    pub metric: u16,
    /// Round trip of its latest answered probe.
    pub rtt: Option<Duration>,
    /// Answered a probe within `fail_after`.
    pub healthy: bool,
    /// The one in use.
    pub selected: bool,
}

#[derive(Clone, Debug)]
struct Candidate {
    offer: Offer,
    /// Probe in flight: its nonce and when it left.
    probe: Option<(u64, Instant)>,
    last_probe: Option<Instant>,
    last_answer: Option<Instant>,
    rtt: Option<Duration>,
}

impl Candidate {
    fn healthy(&self, now: Instant, fail_after: Duration) -> bool {
        self.last_answer
            .is_some_and(|t| now.saturating_duration_since(t) < fail_after)
    }
}

/// The state machine.
#[derive(Debug)]
pub struct ExitChoice {
    cfg: ChoiceConfig,
    mode: Mode,
    cands: Vec<Candidate>,
    current: Option<NodeId>,
    switches: u64,
    next_nonce: u64,
    events: VecDeque<ExitEvent>,
}

impl ExitChoice {
    /// Start in `mode` with no known exits.
    pub fn new(cfg: ChoiceConfig, mode: Mode) -> Self {
        ExitChoice {
            cfg,
            mode,
            cands: Vec::new(),
            current: None,
            switches: 0,
            next_nonce: 1,
            events: VecDeque::new(),
        }
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The exit in use.
    pub fn current(&self) -> Option<NodeId> {
        self.current
    }

    /// How often the exit in use changed (to another exit or to none).
    pub fn switches(&self) -> u64 {
        self.switches
    }

    /// Change the mode; re-selects at once.
    pub fn set_mode(&mut self, mode: Mode, now: Instant) {
        self.mode = mode;
        self.reselect(now);
    }

    /// The exits the routing layer knows now; those it no longer knows are forgotten (a
    /// retracted current exit is switched away from at once).
    pub fn update_offers(&mut self, offers: &[Offer], now: Instant) {
        // Anyone can mint exits: only the cheapest MAX_CANDIDATES (and the current one) are
        // tracked, so a flood of announcements costs a sort, not quadratic work per update.
        let mut best: Vec<Offer> = offers.to_vec();
        best.sort_by_key(|o| (o.price_per_mib, o.metric, o.id.0));
        let cur = self
            .current
            .and_then(|id| best.iter().position(|o| o.id == id));
        let cur = cur
            .filter(|&i| i >= MAX_CANDIDATES)
            .and_then(|i| best.get(i).copied());
        best.truncate(MAX_CANDIDATES);
        best.extend(cur);
        let offers = best.as_slice();
        self.cands
            .retain(|c| offers.iter().any(|o| o.id == c.offer.id));
        for o in offers {
            match self.cands.iter_mut().find(|c| c.offer.id == o.id) {
                Some(c) => c.offer = *o,
                None => self.cands.push(Candidate {
                    offer: *o,
                    probe: None,
                    last_probe: None,
                    last_answer: None,
                    rtt: None,
                }),
            }
        }
        self.reselect(now);
    }

    /// An answer to probe `nonce` arrived from `id`. Unknown or stale nonces change nothing.
    pub fn on_probe_reply(&mut self, id: NodeId, nonce: u64, now: Instant) {
        let Some(c) = self.cands.iter_mut().find(|c| c.offer.id == id) else {
            return;
        };
        let Some((n, sent)) = c.probe else { return };
        if n != nonce {
            return;
        }
        c.probe = None;
        c.last_answer = Some(now);
        c.rtt = Some(now.saturating_duration_since(sent));
        self.reselect(now);
    }

    /// The next probe to send now, if one is due: `(exit, nonce)`.
    pub fn poll_probe(&mut self, now: Instant) -> Option<(NodeId, u64)> {
        if self.mode == Mode::Off {
            return None;
        }
        let probed = self.probed_ids();
        let interval = self.cfg.probe_interval;
        let c = self.cands.iter_mut().find(|c| {
            probed.contains(&c.offer.id)
                && c.last_probe
                    .is_none_or(|t| now.saturating_duration_since(t) >= interval)
        })?;
        let nonce = self.next_nonce;
        self.next_nonce = self.next_nonce.wrapping_add(1);
        c.probe = Some((nonce, now));
        c.last_probe = Some(now);
        Some((c.offer.id, nonce))
    }

    /// When something is next due (a probe, or a health deadline), if anything is.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.mode == Mode::Off {
            return None;
        }
        let probed = self.probed_ids();
        self.cands
            .iter()
            .filter(|c| probed.contains(&c.offer.id))
            .map(|c| {
                let probe = c.last_probe.map(|t| t + self.cfg.probe_interval);
                let fail = c.last_answer.map(|t| t + self.cfg.fail_after);
                match (probe, fail) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            })
            .min()
            .flatten()
    }

    /// Re-evaluate health at `now` (call when `poll_timeout` is reached).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.reselect(now);
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ExitEvent> {
        self.events.pop_front()
    }

    /// Every known exit, cheapest first.
    pub fn list(&self, now: Instant) -> Vec<ExitView> {
        let mut v: Vec<ExitView> = self
            .cands
            .iter()
            .map(|c| ExitView {
                id: c.offer.id,
                price_per_mib: c.offer.price_per_mib,
                metric: c.offer.metric,
                rtt: c.rtt,
                healthy: c.healthy(now, self.cfg.fail_after),
                selected: self.current == Some(c.offer.id),
            })
            .collect();
        v.sort_by_key(|e| (e.price_per_mib, e.metric, e.id.0));
        v
    }

    /// The candidates probed: the current one and the best `max_probed` others (all of them
    /// healthy or not, so a recovered exit is noticed).
    fn probed_ids(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = match self.mode {
            Mode::Off => return Vec::new(),
            Mode::Fixed(id) => vec![id],
            Mode::Auto => {
                let mut order: Vec<&Candidate> = self.cands.iter().collect();
                order.sort_by_key(|c| (c.offer.price_per_mib, c.offer.metric, c.offer.id.0));
                order
                    .iter()
                    .take(self.cfg.max_probed)
                    .map(|c| c.offer.id)
                    .collect()
            }
        };
        if let Some(cur) = self.current
            && !ids.contains(&cur)
        {
            ids.push(cur);
        }
        ids
    }

    /// With no exit yet, auto waits until every probed candidate answered or had one probe
    /// interval to do so, so the first choice is the cheapest and not merely the nearest.
    fn first_answers_pending(&self, now: Instant) -> bool {
        let probed = self.probed_ids();
        self.cands.iter().any(|c| {
            probed.contains(&c.offer.id)
                && c.last_answer.is_none()
                && c.last_probe.is_none_or(|sent| {
                    now.saturating_duration_since(sent) < self.cfg.probe_interval
                })
        })
    }

    fn reselect(&mut self, now: Instant) {
        if self.mode == Mode::Auto && self.current.is_none() && self.first_answers_pending(now) {
            return;
        }
        let fail = self.cfg.fail_after;
        let healthy = |id: NodeId| {
            self.cands
                .iter()
                .find(|c| c.offer.id == id)
                .is_some_and(|c| c.healthy(now, fail))
        };
        let next = match self.mode {
            Mode::Off => None,
            Mode::Fixed(id) => healthy(id).then_some(id),
            Mode::Auto => {
                let best = self
                    .cands
                    .iter()
                    .filter(|c| c.healthy(now, fail))
                    .min_by_key(|c| (c.offer.price_per_mib, c.offer.metric, c.offer.id.0));
                let cur = self
                    .current
                    .and_then(|id| self.cands.iter().find(|c| c.offer.id == id))
                    .filter(|c| c.healthy(now, fail));
                match (cur, best) {
                    (Some(cur), Some(best)) => {
                        // Switch only for a clear saving: price × (1000 − h) / 1000 > best.
                        let keep = u128::from(cur.offer.price_per_mib)
                            * u128::from(1000 - self.cfg.hysteresis_permille.min(1000))
                            <= u128::from(best.offer.price_per_mib) * 1000;
                        Some(if keep { cur.offer.id } else { best.offer.id })
                    }
                    (None, best) => best.map(|c| c.offer.id),
                    (Some(cur), None) => Some(cur.offer.id),
                }
            }
        };
        if next != self.current {
            // The first selection is not a switch; every change after one is.
            if self.current.is_some() {
                self.switches += 1;
            }
            self.current = next;
            self.events.push_back(ExitEvent::Selected(next));
        }
    }
}

#[cfg(test)]
mod tests;
