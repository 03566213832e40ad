//! The control socket: newline-delimited JSON requests from the CLI, answered by the daemon's
//! event loop. Invariant: the socket is mode 0660 (root and the `bitcloud` group only), and a
//! slow or broken client can only stall its own connection task, never the data path.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// Longest request line accepted.
const MAX_REQUEST: usize = 64 * 1024;

/// A request from the CLI with the channel for its answer. Only requests the caller may make
/// reach the event loop (see [`may_mutate`]).
pub struct Request {
    /// The parsed request.
    pub request: crate::api::Request,
    /// Where the event loop puts the answer.
    pub reply: oneshot::Sender<serde_json::Value>,
}

/// Whether the peer with this uid may change state: root, or the user the daemon runs as
/// (the service user). Members of group `bitcloud` can connect (mode 0660) and read only.
fn may_mutate(uid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self is owned by the process's effective uid: no unsafe geteuid call needed.
    uid == 0 || std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == uid)
}

/// Bind the control socket (replacing a stale one) with mode 0660 and the `bitcloud` group.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "{} is in use: is another bitcloud daemon running with this config?",
                path.display()
            );
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    let l = UnixListener::bind(path)
        .with_context(|| format!("binding control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    // Under the service the socket is born in group bitcloud (our primary group), and the
    // unit's system-call filter refuses chown: only change the group when it differs.
    let born_gid = std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(path)?);
    if let Some(gid) = group_id("bitcloud").filter(|g| *g != born_gid) {
        std::os::unix::fs::chown(path, None, Some(gid))
            .with_context(|| format!("chgrp bitcloud {}", path.display()))?;
    }
    Ok(l)
}

fn group_id(name: &str) -> Option<u32> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.nth(1)?.parse().ok()
    })
}

/// Accept connections forever, forwarding each request line to the event loop.
pub async fn serve(listener: UnixListener, tx: mpsc::Sender<Request>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Err(e) = handle(stream, tx).await {
                        tracing::debug!("control client: {e:#}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("control socket accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle(stream: UnixStream, tx: mpsc::Sender<Request>) -> anyhow::Result<()> {
    // SO_PEERCRED: who is asking, as the kernel saw it at connect time.
    let uid = stream.peer_cred().map(|c| c.uid()).ok();
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r.take(MAX_REQUEST as u64)).lines();
    while let Some(line) = lines.next_line().await? {
        let answer = match serde_json::from_str::<crate::api::Request>(&line) {
            Ok(request) if request.mutates() && !uid.is_some_and(may_mutate) => {
                serde_json::json!({"error": "permission denied: changing the node needs root or the service user"})
            }
            Ok(request) => {
                let (reply, rx) = oneshot::channel();
                tx.send(Request { request, reply })
                    .await
                    .map_err(|_| anyhow::anyhow!("daemon stopping"))?;
                rx.await?
            }
            Err(e) => serde_json::json!({"error": format!("bad request: {e}")}),
        };
        let mut out = serde_json::to_vec(&answer)?;
        out.push(b'\n');
        w.write_all(&out).await?;
    }
    Ok(())
}
