//! Driving the exit choice from inside the node (issue 9, "Failover"): the routing layer's
//! exits feed [`ExitChoice`] once a second, its probes go end to end as `Kind::Probe`
//! messages, answers come back from the exit's session, and each change of exit is applied
//! to the data path at once and queued for the driver (routes, kill switch, DNS). An exit
//! answers a probe only while it serves (`router.config().exit`) and at most once per
//! [`PROBE_ANSWER_INTERVAL`] per client. Invariants: a probe is never metered or staged (no
//! session: a handshake starts and the probe is lost, the next one follows a second later);
//! only a reply on the session with the exit it names counts.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::Node;
use super::link::seal_copy;
use crate::drops::DropReason;
use crate::exit::{ChoiceConfig, ExitChoice, ExitEvent, ExitView, Mode, Offer};
use crate::identity::NodeId;
use crate::session::aead::TransportAead;
use crate::wire::outer::Kind;
use crate::wire::probe::Probe;

/// How often the exits the router knows are handed to the choice.
const OFFER_INTERVAL: Duration = Duration::from_secs(1);
/// An exit answers one probe per client per this interval; a client sends one a second.
pub const PROBE_ANSWER_INTERVAL: Duration = Duration::from_millis(100);

/// The node's exit-choice state.
#[derive(Debug)]
pub(super) struct Exits {
    pub(super) choice: ExitChoice,
    next_offers: Instant,
    /// Exit side: when each client's last probe was answered.
    answered: HashMap<NodeId, Instant>,
    events: std::collections::VecDeque<ExitEvent>,
}

impl Exits {
    pub(super) fn new(now: Instant) -> Self {
        Exits {
            choice: ExitChoice::new(ChoiceConfig::default(), Mode::Off),
            next_offers: now,
            answered: HashMap::new(),
            events: Default::default(),
        }
    }
}

impl<A: TransportAead> Node<A> {
    /// Which exit to use: `auto`, a fixed one, or none. Applies at once.
    pub fn set_exit_mode(&mut self, mode: Mode, now: Instant) {
        self.exits.choice.set_mode(mode, now);
        self.offer_exits(now);
        self.drain_exit_events();
    }

    /// The exit mode in force.
    pub fn exit_mode(&self) -> Mode {
        self.exits.choice.mode()
    }

    /// Every exit known, cheapest first, as `bitcloud exit list` shows them.
    pub fn exit_list(&self, now: Instant) -> Vec<ExitView> {
        self.exits.choice.list(now)
    }

    /// How often the exit in use changed.
    pub fn exit_switches(&self) -> u64 {
        self.exits.choice.switches()
    }

    /// The next change of exit the driver must apply to the host.
    pub fn poll_exit_event(&mut self) -> Option<ExitEvent> {
        self.exits.events.pop_front()
    }

    /// Sell (or stop selling) our uplink at `fee_per_mib`: announce (or retract) the default
    /// routes and answer probes.
    pub fn set_exit_role(&mut self, enabled: bool, fee_per_mib: u64, now: Instant) {
        self.router.set_exit(enabled, fee_per_mib, now);
        self.flush_router(now);
    }

    fn offer_exits(&mut self, now: Instant) {
        self.exits.next_offers = now + OFFER_INTERVAL;
        let offers: Vec<Offer> = self
            .router
            .exit_routes()
            .into_iter()
            .map(|e| Offer {
                id: e.id,
                price_per_mib: e.price_per_mib,
                metric: e.metric,
            })
            .collect();
        self.exits.choice.update_offers(&offers, now);
    }

    fn drain_exit_events(&mut self) {
        while let Some(ev) = self.exits.choice.poll_event() {
            let ExitEvent::Selected(sel) = ev;
            if sel != self.exit_in_use {
                tracing::info!(exit = ?sel.map(|i| i.to_string()), "exit in use changed");
            }
            self.exit_in_use = sel;
            self.exits.events.push_back(ev);
        }
    }

    /// Offers, probes and health: called from `handle_timeout`.
    pub(super) fn exit_timers(&mut self, now: Instant) {
        if self.exits.choice.mode() == Mode::Off && self.exit_in_use.is_none() {
            return;
        }
        if now >= self.exits.next_offers {
            self.offer_exits(now);
        }
        if self.exits.choice.poll_timeout().is_some_and(|t| t <= now) {
            self.exits.choice.handle_timeout(now);
        }
        while let Some((exit, nonce)) = self.exits.choice.poll_probe(now) {
            self.send_probe(exit, Probe::Request(nonce), now);
        }
        self.drain_exit_events();
        let keep = now.checked_sub(Duration::from_secs(10)).unwrap_or(now);
        self.exits.answered.retain(|_, t| *t >= keep);
    }

    /// Seal a probe end to end for `dest`; with no session yet, start one and lose the probe.
    fn send_probe(&mut self, dest: NodeId, p: Probe, now: Instant) {
        let timers = self.cfg.timers;
        let Some(e) = self.e2e_peer(dest, now) else {
            return;
        };
        if !e.has_session(now, &timers) {
            if e.handshake_due(now) {
                self.initiate_e2e(dest, now);
            }
            return;
        }
        if let Some(t) = seal_copy(e, Kind::Probe, &p.encode(), now, &timers) {
            self.send_mesh(dest, &t.data, now);
        }
    }

    /// A probe arrived on the end-to-end session with `from`.
    pub(super) fn handle_probe(&mut self, from: NodeId, body: &[u8], now: Instant) {
        match Probe::decode(body) {
            Err(_) => self.drops.add(DropReason::BadProbe),
            Ok(Probe::Request(nonce)) => {
                if !self.router.config().exit {
                    return self.drops.add(DropReason::NotAnExit);
                }
                let recent = self
                    .exits
                    .answered
                    .get(&from)
                    .is_some_and(|t| now.saturating_duration_since(*t) < PROBE_ANSWER_INTERVAL);
                if recent || self.exits.answered.len() >= super::mesh::MAX_E2E_SESSIONS {
                    return self.drops.add(DropReason::ProbeRateLimited);
                }
                self.exits.answered.insert(from, now);
                self.send_probe(from, Probe::Reply(nonce), now);
            }
            Ok(Probe::Reply(nonce)) => {
                self.exits.choice.on_probe_reply(from, nonce, now);
                self.drain_exit_events();
            }
        }
    }
}
