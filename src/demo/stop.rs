//! Ctrl-C and SIGTERM for `bitcloud demo`: a flag that every wait in the demo polls, so an
//! interrupted demo unwinds to its lab's cleanup instead of dying with namespaces left behind.
//! Invariant: once [`catch`] returned, SIGINT and SIGTERM never kill the demo process; they
//! only set the flag (a second Ctrl-C during cleanup is ignored, so cleanup always finishes).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);

/// The demo was interrupted (Ctrl-C or SIGTERM); cleanup runs as the error unwinds.
#[derive(Debug, thiserror::Error)]
#[error("interrupted: everything the demo made was removed")]
pub struct Interrupted;

/// Install the handlers (on a thread of its own with a small tokio runtime, which the daemon
/// already uses for signals) and return once they are in place.
pub fn catch() -> anyhow::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("demo-signals".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(anyhow::Error::from(e)));
                    return;
                }
            };
            rt.block_on(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let (int, term) = (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                );
                let (mut int, mut term) = match (int, term) {
                    (Ok(i), Ok(t)) => (i, t),
                    (Err(e), _) | (_, Err(e)) => {
                        let _ = tx.send(Err(e.into()));
                        return;
                    }
                };
                let _ = tx.send(Ok(()));
                loop {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                    STOP.store(true, Ordering::SeqCst);
                }
            });
        })?;
    rx.recv()
        .map_err(|_| anyhow::anyhow!("the signal thread died"))?
}

/// Whether the demo should stop now.
pub fn requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// `Err(Interrupted)` once a stop was requested.
pub fn check() -> Result<(), Interrupted> {
    if requested() {
        Err(Interrupted)
    } else {
        Ok(())
    }
}

/// Sleep for `d`, waking early (with `Err`) on a stop request.
pub fn sleep(d: Duration) -> Result<(), Interrupted> {
    let end = Instant::now() + d;
    loop {
        check()?;
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}
