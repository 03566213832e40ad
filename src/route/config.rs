//! The router's configuration, its defaults and bounds, and its counters. Invariant: the
//! counter names are a public interface (`bitcloud status --json` under `routing`): they are
//! only ever added to, never renamed.

use std::time::Duration;

use super::{RttCost, SelectionPolicy};

/// Default of [`RouterConfig::seqno_bump_interval`]. At one bump a second, walking half the
/// 32-bit seqno space (what it takes to hold a signature that looks newer than the current
/// one) takes 68 years.
pub const SEQNO_BUMP_INTERVAL: Duration = Duration::from_secs(1);

/// Default of [`RouterConfig::max_routes_per_neighbour`]: a mesh of a few thousand nodes, as
/// seen through one neighbour.
pub const MAX_ROUTES_PER_NEIGHBOUR: usize = 4096;

/// Default of [`RouterConfig::max_routes`]: four full-size neighbours' worth. A route entry
/// is about 150 bytes (most of it the signature it re-advertises), so a few MiB at most.
pub const MAX_ROUTES: usize = 16384;

/// Timing and policy of a router. All durations are local; intervals are also announced on the
/// wire so neighbours with other settings still agree on expiry.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    /// Hellos and IHUs go out this often (RFC 8966 Appendix B: 4 s).
    pub hello_interval: Duration,
    /// Full route dumps go out this often (RFC 8966 Appendix B: 4 hello intervals, 16 s).
    pub update_interval: Duration,
    /// A route not refreshed for this long is dropped; at least 3.5 times the announced update
    /// interval (RFC 8966 Appendix B: route expiry time).
    pub route_expiry: Duration,
    /// A feasibility distance is forgotten this long after it was last used (RFC 8966
    /// Appendix B: source GC time, 3 min).
    pub source_gc: Duration,
    /// First resend delay of an unanswered seqno request, doubled each time (RFC 8966
    /// Appendix B: 2 s).
    pub request_timeout: Duration,
    /// Largest routing message produced, in bytes.
    pub max_message_len: usize,
    /// How price is weighed against metric.
    pub policy: SelectionPolicy,
    /// How RTT adds to link cost.
    pub rtt: RttCost,
    /// Announce the default routes (this node is an exit).
    pub exit: bool,
    /// What an exit bills per MiB for carrying a client's traffic to and from the internet
    /// (`[exit] fee_per_mib`): the price of our default route, charged end to end, apart from
    /// the forwarding fee relays bill hop by hop.
    pub exit_fee_per_mib: u64,
    /// Our own fee per MiB, added to the price of every route we advertise (and the price of
    /// our default route). Set by the money layer; 0 until then.
    pub fee_per_mib: u64,
    /// The price epoch of our own announcements.
    pub price_epoch: u32,
    /// Seqno of our own announcements at start; a random value avoids a restarted node's
    /// announcements looking old until neighbours forget it.
    pub initial_seqno: u32,
    /// Our seqno is raised at most once per this interval, whoever asks; later requests are
    /// served by one deferred bump. This is what keeps signatures from being harvested ahead
    /// (docs/routing.md).
    pub seqno_bump_interval: Duration,
    /// Routes accepted from one neighbour; new ones beyond it are refused and counted.
    pub max_routes_per_neighbour: usize,
    /// Routes accepted in total, all neighbours together.
    pub max_routes: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            hello_interval: Duration::from_secs(4),
            update_interval: Duration::from_secs(16),
            route_expiry: Duration::from_secs(56),
            source_gc: Duration::from_secs(180),
            request_timeout: Duration::from_secs(2),
            max_message_len: 1200,
            policy: SelectionPolicy::default(),
            rtt: RttCost::default(),
            exit: false,
            exit_fee_per_mib: 0,
            fee_per_mib: 0,
            price_epoch: 0,
            initial_seqno: 0,
            seqno_bump_interval: SEQNO_BUMP_INTERVAL,
            max_routes_per_neighbour: MAX_ROUTES_PER_NEIGHBOUR,
            max_routes: MAX_ROUTES,
        }
    }
}

/// Counters, for the CLI and for tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RouterStats {
    /// Messages handed to `handle_message`.
    pub messages_received: u64,
    /// Messages dropped because they did not parse.
    pub malformed: u64,
    /// Messages dropped because the sender was not a neighbour.
    pub unknown_neighbour: u64,
    /// TLVs skipped: unknown types or prefix kinds.
    pub skipped_tlvs: u64,
    /// Signatures verified (copies of an already verified announcement are not re-verified).
    pub signatures_checked: u64,
    /// Updates dropped because the originator's signature did not verify.
    pub bad_signature: u64,
    /// Updates received that were not feasible.
    pub unfeasible: u64,
    /// Updates received (retractions included).
    pub updates_received: u64,
    /// Update TLVs sent (retractions included).
    pub updates_sent: u64,
    /// Seqno requests we originated.
    pub seqno_requests_sent: u64,
    /// Seqno requests we forwarded for others.
    pub seqno_requests_forwarded: u64,
    /// Times our own seqno was increased.
    pub seqno_bumps: u64,
    /// Messages produced by `poll_transmit`.
    pub messages_sent: u64,
    /// Events dropped because the caller did not poll them.
    pub events_dropped: u64,
    /// Messages refused whole for carrying more than `MAX_TLVS_PER_MESSAGE` TLVs (also
    /// counted in `malformed`).
    pub too_many_tlvs: u64,
    /// Format 1 updates and seqno requests refused (16-bit seqno, old signature domain).
    pub legacy_tlvs: u64,
    /// Wildcard route requests that queued no dump: one was already pending for that
    /// neighbour, or it had one less than a hello interval ago.
    pub route_requests_refused: u64,
    /// Specific route requests and seqno requests over the sender's request budget.
    pub requests_rate_limited: u64,
    /// Seqno requests not forwarded because one for the same destination was forwarded less
    /// than a request timeout ago.
    pub seqno_requests_suppressed: u64,
    /// Requests to raise our seqno that came within `seqno_bump_interval` of the last raise
    /// and were folded into one later bump.
    pub seqno_bumps_deferred: u64,
    /// New routes refused because the neighbour or the table was at its cap.
    pub routes_refused: u64,
    /// Updates from a relay claiming less than one loss-free hop to someone else's prefix;
    /// the metric was raised to that hop.
    pub relay_metric_raised: u64,
    /// Updates dropped unverified because their sender had spent its verification budget.
    pub verifications_refused: u64,
}
