//! The control API shared by the CLI and the daemon: the requests (`Request`, newline-delimited
//! JSON on the control socket, `{"cmd": ...}`), the client call, and the answer builders both
//! sides need (`views`, `wallet`). Invariants: the CLI and the daemon import this module and
//! never each other; request and answer keys are a public contract (README, "CLI and config
//! contract"): added to, never renamed; a request that changes state says so
//! ([`Request::mutates`]) and the socket lets only root or the service's own user make one.

pub mod views;
pub mod wallet;

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// What every wallet view says while no ledger backs the vouchers: the daemon's JSON `note`
/// field, and the human output's last line after `note: `.
pub const IOU_NOTE: &str =
    "vouchers are signed IOUs until a ledger settles them; balances are not spendable coin.";

/// A control request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    /// Addresses, neighbours, sessions, routing counters, drops, payments, exit.
    Status,
    /// The routing table.
    Routes,
    /// Neighbours.
    Peers,
    /// Our forwarding fee; `set` changes it (mutating).
    Price {
        /// New fee per MiB.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        set: Option<u64>,
    },
    /// A wallet view.
    Wallet {
        /// `balance`, `channels`, `earnings` or `history`.
        what: String,
        /// Earnings: only vouchers this recent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since_secs: Option<u64>,
        /// History: how many vouchers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Known exits; `use` changes the exit mode (mutating).
    Exit {
        /// `auto`, `off` or a node id.
        #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
        mode: Option<String>,
    },
    /// Re-read the config file (as SIGHUP; mutating).
    Reload,
    /// The shared interfaces: guests, what they carried and paid, enforcement, the bound on
    /// what they may cost; `off` removes the share table until the next start or reload
    /// (mutating).
    Share {
        /// Stop sharing now.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        off: bool,
    },
    /// On-chain settlement (`[ledger] kind = "evm"`): `settle` claims every incoming
    /// channel now; `close` starts closing our outgoing channel to `peer` (mutating).
    Ledger {
        /// `settle` or `close`.
        action: String,
        /// `close`: the neighbour's node id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer: Option<String>,
    },
}

impl Request {
    /// Whether the request changes the node's state (and so needs root or the service user).
    pub fn mutates(&self) -> bool {
        matches!(
            self,
            Request::Price { set: Some(_) }
                | Request::Exit { mode: Some(_) }
                | Request::Reload
                | Request::Share { off: true }
                | Request::Ledger { .. }
        )
    }
}

/// Send one request to the daemon at `path` and read one answer; a daemon error is an error.
pub fn call(path: &Path, req: &Request) -> anyhow::Result<serde_json::Value> {
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(path).with_context(|| {
        format!(
            "connecting to the daemon at {} (is `bitcloud up` running?)",
            path.display()
        )
    })?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    s.write_all(&line)?;
    let mut answer = String::new();
    std::io::BufReader::new(s)
        .read_line(&mut answer)
        .context("reading the daemon's answer")?;
    let v: serde_json::Value = serde_json::from_str(&answer).context("daemon sent invalid JSON")?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        anyhow::bail!("daemon: {e}");
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_keep_their_wire_form() {
        let cases = [
            (Request::Status, r#"{"cmd":"status"}"#),
            (
                Request::Price { set: Some(5) },
                r#"{"cmd":"price","set":5}"#,
            ),
            (Request::Price { set: None }, r#"{"cmd":"price"}"#),
            (
                Request::Wallet {
                    what: "history".into(),
                    since_secs: None,
                    limit: Some(3),
                },
                r#"{"cmd":"wallet","what":"history","limit":3}"#,
            ),
            (
                Request::Exit {
                    mode: Some("auto".into()),
                },
                r#"{"cmd":"exit","use":"auto"}"#,
            ),
            (Request::Reload, r#"{"cmd":"reload"}"#),
            (Request::Share { off: false }, r#"{"cmd":"share"}"#),
            (
                Request::Share { off: true },
                r#"{"cmd":"share","off":true}"#,
            ),
        ];
        for (r, text) in cases {
            assert_eq!(serde_json::to_string(&r).unwrap(), text);
            assert_eq!(serde_json::from_str::<Request>(text).unwrap(), r);
        }
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"rm -rf"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"price","set":-1}"#).is_err());
        assert!(Request::Reload.mutates() && !Request::Price { set: None }.mutates());
        assert!(Request::Share { off: true }.mutates() && !Request::Share { off: false }.mutates());
    }
}
