//! The wall-clock origin a daemon starts from, kept from going backwards across restarts.
//!
//! Handshake timestamps (TAI64N, which every peer requires to grow, `session::peer`) and
//! routing seqnos (`docs/routing.md`) are derived from the wall clock read once at start. A
//! clock stepped back before a restart (a dead RTC, an NTP step) would otherwise make every
//! peer that stayed up refuse our initiations as stale, and our routes as old, until real time
//! caught up. So the daemon keeps a floor in `data_dir`: at most `FLOOR_REFRESH` behind the
//! latest time it may have used, and a new start begins above floor + `FLOOR_REFRESH`.
//! Invariant: a start's origin exceeds every timestamp the previous run of this node may have
//! sent, even after kill -9 (docs/clock.md).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// File in `data_dir` holding the floor, decimal Unix nanoseconds.
pub const FLOOR_FILE: &str = "clock.floor";
/// How often the running daemon advances the floor.
pub const FLOOR_REFRESH: Duration = Duration::from_secs(10);
/// Margin above `floor + FLOOR_REFRESH`: a write may land late.
const FLOOR_MARGIN: Duration = Duration::from_secs(1);

/// The origin for a start at wall clock `wall` after a run whose floor was `floor`.
pub fn origin(wall: u128, floor: Option<u128>) -> u128 {
    let least = floor.map_or(0, |f| {
        f.saturating_add((FLOOR_REFRESH + FLOOR_MARGIN).as_nanos())
    });
    wall.max(least)
}

/// The floor file's value, if it holds one. At most `u64::MAX` nanoseconds (the year 2554): a
/// corrupt or planted larger value is ignored rather than pinning our timestamps near the end of
/// `u128`, where the node's `epoch + elapsed` would overflow.
pub fn parse_floor(text: &str) -> Option<u128> {
    text.trim().parse::<u64>().ok().map(u128::from)
}

/// The daemon's clock: its origin, and the floor it keeps in `data_dir`.
pub struct StartClock {
    /// Unix nanoseconds at `started`.
    pub unix_nanos: u128,
    started: Instant,
    path: PathBuf,
    next_save: Instant,
}

impl StartClock {
    /// Read the floor in `dir` and the wall clock; the origin at `started` (already saved as
    /// the new floor, best effort: a wallet-less read-only disk must not stop the node).
    pub fn start(dir: &Path, started: Instant) -> StartClock {
        let path = dir.join(FLOOR_FILE);
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let floor = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| parse_floor(&t));
        let unix_nanos = origin(wall, floor);
        if unix_nanos > wall {
            tracing::warn!(
                "wall clock is {} s behind this node's last run: handshakes and routes continue from where it was",
                (unix_nanos - wall) / 1_000_000_000
            );
        }
        // The first floor is written before any handshake can use the origin.
        save(&path, unix_nanos);
        StartClock {
            unix_nanos,
            started,
            path,
            next_save: started + FLOOR_REFRESH,
        }
    }

    /// Advance the floor when due (call from the daemon's tick, inside the runtime). The write
    /// fsyncs, so it runs on the blocking pool, never on the loop that forwards packets.
    pub fn tick(&mut self, now: Instant) {
        if now < self.next_save {
            return;
        }
        self.next_save = now + FLOOR_REFRESH;
        let t = self
            .unix_nanos
            .saturating_add(now.saturating_duration_since(self.started).as_nanos());
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || save(&path, t));
    }
}

/// Best effort: a read-only or full `data_dir` must not stop the node (docs/wallet-failure.md).
fn save(path: &Path, t: u128) {
    if let Err(e) = crate::identity::write_file_atomic(path, t.to_string().as_bytes(), 0o600) {
        tracing::debug!("saving {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_never_below_floor_plus_refresh() {
        let s = 1_000_000_000u128;
        assert_eq!(origin(100 * s, None), 100 * s);
        // Clock fine: the wall clock wins.
        assert_eq!(origin(100 * s, Some(50 * s)), 100 * s);
        // Clock stepped back an hour: start above anything the last run sent.
        assert_eq!(origin(100 * s, Some(3700 * s)), 3711 * s);
        assert_eq!(origin(0, Some(u128::MAX)), u128::MAX);
    }

    #[test]
    fn floor_parsing_is_forgiving() {
        assert_eq!(parse_floor("123\n"), Some(123));
        assert_eq!(parse_floor(""), None);
        assert_eq!(parse_floor("-1"), None);
        assert_eq!(parse_floor("x"), None);
        assert_eq!(parse_floor(&u128::MAX.to_string()), None);
        assert_eq!(
            parse_floor(&u64::MAX.to_string()),
            Some(u128::from(u64::MAX))
        );
    }

    #[test]
    fn floor_survives_restart() {
        let dir = std::env::temp_dir().join(format!("bitcloud-clock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let t0 = Instant::now();
        let a = StartClock::start(&dir, t0);
        // A future floor, as left by a run whose clock was an hour ahead.
        let ahead = a.unix_nanos + 3600 * 1_000_000_000;
        std::fs::write(dir.join(FLOOR_FILE), ahead.to_string()).unwrap();
        let b = StartClock::start(&dir, Instant::now());
        assert!(b.unix_nanos > ahead + FLOOR_REFRESH.as_nanos());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
