//! systemd readiness, status and watchdog (`Type=notify`, `WatchdogSec=`) through `sd-notify`.
//! Invariants: READY is sent once, after the TUN is up, the wallet open and the sockets bound;
//! the watchdog is pinged from the event loop itself (not a side task), so a wedged loop stops
//! the pings and systemd restarts the service. Without `NOTIFY_SOCKET` everything is a no-op.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// How often STATUS= is refreshed.
const STATUS_INTERVAL: Duration = Duration::from_secs(5);

/// The daemon's side of the service manager protocol.
pub struct Notifier {
    watchdog: Option<Duration>,
    next_ping: Instant,
    next_status: Instant,
}

impl Notifier {
    /// Read `WATCHDOG_USEC` (pings go out at half the interval, as sd_watchdog_enabled(3)
    /// advises).
    pub fn new(now: Instant) -> Self {
        Notifier {
            watchdog: sd_notify::watchdog_enabled().map(|d| d / 2),
            next_ping: now,
            next_status: now,
        }
    }

    /// Startup finished.
    pub fn ready(&self, status: &str) {
        let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// Shutting down.
    pub fn stopping() {
        let _ = sd_notify::notify(&[NotifyState::Stopping]);
    }

    /// Call from the event loop's tick: a watchdog ping when due, and STATUS= every few
    /// seconds from `status` (called only then).
    pub fn tick(&mut self, now: Instant, status: impl FnOnce() -> String) {
        if let Some(every) = self.watchdog
            && now >= self.next_ping
        {
            self.next_ping = now + every;
            let _ = sd_notify::notify(&[NotifyState::Watchdog]);
        }
        if now >= self.next_status {
            self.next_status = now + STATUS_INTERVAL;
            let s = status();
            let _ = sd_notify::notify(&[NotifyState::Status(&s)]);
        }
    }
}
