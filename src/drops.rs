//! Counters of dropped packets by reason. An array indexed by a fieldless enum: counting is
//! one add, no allocation, and the JSON keys are the stable `snake_case` names below.

use std::collections::BTreeMap;

macro_rules! reasons {
    ($($variant:ident => $name:literal: $doc:literal,)*) => {
        /// Why a packet was dropped.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum DropReason { $(#[doc = $doc] $variant,)* }
        impl DropReason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            /// The stable name used in `status --json`.
            pub fn name(self) -> &'static str {
                match self { $(DropReason::$variant => $name,)* }
            }
        }
    };
}

reasons! {
    UnknownType => "unknown_type": "Datagram with an unknown message type.",
    Malformed => "malformed": "Datagram whose length or reserved bytes do not fit its type.",
    BadMac => "bad_mac": "Handshake message whose mac1 is not for our key.",
    HandshakeFailed => "handshake_failed": "Handshake message that did not decrypt or authenticate.",
    UnknownPeer => "unknown_peer": "Authenticated handshake from a key that is not a configured peer.",
    StaleInitiation => "stale_initiation": "Replayed or older handshake initiation.",
    HandshakeFlood => "handshake_flood": "Initiation over the per-peer rate limit.",
    UnknownIndex => "unknown_index": "Message for a session index we do not have.",
    DecryptFailed => "decrypt_failed": "Transport message that did not authenticate.",
    Replayed => "replayed": "Transport counter already seen.",
    TooOld => "too_old": "Transport counter behind the replay window.",
    ExpiredKey => "expired_key": "Transport message under an expired or exhausted key.",
    UnknownKind => "unknown_kind": "Authenticated frame of a kind we do not know.",
    BadInnerPacket => "bad_inner_packet": "Decrypted payload that is not an IP packet.",
    SpoofedSource => "spoofed_source": "Inner source address not owned by the authenticated peer.",
    NotForUs => "not_for_us": "Decrypted packet whose destination is not one of our overlay addresses.",
    NoRoute => "no_route": "Packet from the TUN for an address no peer owns.",
    NoExit => "no_exit": "Packet from the TUN for an internet address while no exit is in use.",
    NotIp => "not_ip": "Packet from the TUN that is not IPv4 or IPv6.",
    StagedOverflow => "staged_overflow": "Packet waiting for a handshake when the queue was full.",
    CookieUnsupported => "cookie_unsupported": "Never counted since cookie replies are handled (bad_cookie, cookie_received); kept so the JSON keys stay stable.",
    TtlExpired => "ttl_expired": "Relayed frame whose TTL ran out.",
    RelayNoRoute => "relay_no_route": "Relayed frame for a destination we have no route to.",
    TooBig => "too_big": "Packet too big for the mesh overhead; an ICMP error went back to the sender.",
    BadMeshFrame => "bad_mesh_frame": "Mesh frame too short or with a malformed end-to-end message.",
    RoutingRejected => "routing_rejected": "Routing message the router refused (details in route stats).",
    BadChannelMsg => "bad_channel_msg": "Payment-channel frame that did not decode.",
    ChannelRejected => "channel_rejected": "Payment-channel message the channel refused (reasons in wallet channels).",
    UnpaidShaped => "unpaid_shaped": "Relayed frame over the free tier from a neighbour beyond its credit window.",
    UnpaidCut => "unpaid_cut": "Relayed frame from a neighbour cut off for not paying.",
    SelfThrottled => "self_throttled": "Frame we held back: paying for it would pass our spend limit or credit window.",
    PriceRefused => "price_refused": "Frame we held back: the next hop's price is above our max_price_per_mib.",
    WalletUnavailable => "wallet_unavailable": "Paid frame not relayed or sent: our wallet cannot store vouchers (disk full or read-only).",
    NeighbourTableFull => "neighbour_table_full": "Discovered node refused: the neighbour table is at its cap.",
    UnverifiedTableFull => "unverified_table_full": "Discovered node refused: too many neighbours have not completed a handshake.",
    UnverifiedHostFull => "unverified_host_full": "Discovered node refused: its host already has the most neighbours without a handshake.",
    HandshakeBudget => "handshake_budget": "Initiation to an unconfirmed endpoint held back: the node-wide budget per second is spent.",
    EndpointHintIgnored => "endpoint_hint_ignored": "Beacon endpoint not taken: a session confirmed another endpoint, or it is known.",
    Ipv4Collision => "ipv4_collision": "Packet to or from an IPv4 address that several node ids claim (IPv6 still works).",
    E2eSessionsFull => "e2e_sessions_full": "End-to-end session refused: the session table is at its cap.",
    BadProbe => "bad_probe": "Exit probe that did not decode.",
    NotAnExit => "not_an_exit": "Exit probe sent to us while we do not serve as an exit.",
    ProbeRateLimited => "probe_rate_limited": "Exit probe over the per-client answer rate.",
    ReplayedInitiation => "replayed_initiation": "Initiation whose ephemeral key we already processed: a replay, refused before any Diffie-Hellman.",
    CookieSent => "cookie_sent": "Initiation under load without mac2: answered with a cookie reply instead of a handshake.",
    BadMac2 => "bad_mac2": "Initiation under load whose mac2 is not under the cookie for its address: answered with a fresh cookie reply.",
    HandshakeRateLimited => "handshake_rate_limited": "Initiation under load over its source's rate (per IP address, or per relaying neighbour end to end).",
    HandshakeOverload => "handshake_overload": "Initiation over the node-wide handshake rate.",
    CookieReceived => "cookie_received": "Cookie reply taken: our initiation is resent with mac2 (not a loss).",
    BadCookie => "bad_cookie": "Cookie reply for no initiation in flight, or that did not authenticate.",
    LinkOnlyKind => "link_only_kind": "End-to-end message of a kind only links carry, or a link message of an end-to-end-only kind.",
}

/// Counts per reason.
#[derive(Debug, Clone)]
pub struct Drops([u64; DropReason::ALL.len()]);

impl Default for Drops {
    // By hand: `Default` is derived for arrays of at most 32 elements.
    fn default() -> Self {
        Drops([0; DropReason::ALL.len()])
    }
}

impl Drops {
    /// Count one drop.
    #[inline]
    pub fn add(&mut self, r: DropReason) {
        self.0[r as usize] += 1;
    }

    /// The count for one reason.
    pub fn get(&self, r: DropReason) -> u64 {
        self.0[r as usize]
    }

    /// All reasons with their counts (zeros included, so the keys are stable).
    pub fn to_map(&self) -> BTreeMap<&'static str, u64> {
        DropReason::ALL
            .iter()
            .map(|r| (r.name(), self.get(*r)))
            .collect()
    }
}

impl From<crate::session::keypair::OpenError> for DropReason {
    fn from(e: crate::session::keypair::OpenError) -> Self {
        use crate::session::keypair::OpenError;
        match e {
            OpenError::Decrypt => DropReason::DecryptFailed,
            OpenError::Replayed => DropReason::Replayed,
            OpenError::TooOld => DropReason::TooOld,
            OpenError::Exhausted => DropReason::ExpiredKey,
        }
    }
}

impl From<crate::session::peer::InitRefused> for DropReason {
    fn from(e: crate::session::peer::InitRefused) -> Self {
        match e {
            crate::session::peer::InitRefused::Stale => DropReason::StaleInitiation,
            crate::session::peer::InitRefused::Flood => DropReason::HandshakeFlood,
        }
    }
}
