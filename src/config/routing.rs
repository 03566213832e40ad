//! `[routing]`: the bounds on what neighbours may make the router hold (docs/routing.md,
//! "Bounds on what one neighbour can make us do"). Invariant: every value is within its upper
//! bound, so no setting can turn a cap back into "unbounded".

use serde::Deserialize;
use toml::Spanned;

use super::wallet::SpanError;
use crate::route::{MAX_ROUTES, MAX_ROUTES_PER_NEIGHBOUR};

/// Largest `max_routes_per_neighbour` accepted.
pub const MAX_ROUTES_PER_NEIGHBOUR_LIMIT: u64 = 65_536;
/// Largest `max_routes` accepted (about 150 MiB of route entries).
pub const MAX_ROUTES_LIMIT: u64 = 1_048_576;

/// `[routing]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutingSettings {
    /// Route entries accepted from one neighbour.
    pub max_routes_per_neighbour: usize,
    /// Route entries accepted in total.
    pub max_routes: usize,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        RoutingSettings {
            max_routes_per_neighbour: MAX_ROUTES_PER_NEIGHBOUR,
            max_routes: MAX_ROUTES,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRouting {
    max_routes_per_neighbour: Option<Spanned<u64>>,
    max_routes: Option<Spanned<u64>>,
}

fn bounded(v: &Spanned<u64>, max: u64) -> Result<usize, SpanError> {
    let n = *v.get_ref();
    if !(1..=max).contains(&n) {
        return Err((v.span(), format!("{n} out of range 1..={max}")));
    }
    usize::try_from(n).map_err(|_| (v.span(), format!("{n} does not fit this platform")))
}

impl RawRouting {
    pub(super) fn validate(&self) -> Result<RoutingSettings, SpanError> {
        let mut r = RoutingSettings::default();
        if let Some(v) = &self.max_routes_per_neighbour {
            r.max_routes_per_neighbour = bounded(v, MAX_ROUTES_PER_NEIGHBOUR_LIMIT)?;
        }
        if let Some(v) = &self.max_routes {
            r.max_routes = bounded(v, MAX_ROUTES_LIMIT)?;
        }
        Ok(r)
    }
}
