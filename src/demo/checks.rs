//! What the demo verifies before it says it worked: the traffic table agrees with every
//! wallet, each voucher is credited exactly as signed, what was carried was paid at the
//! carrier's price, the books of the whole mesh balance, and the traffic the demo itself sent
//! (its downloads, hash-checked at both ends, and its pings) went where it should and shows up
//! in the books. Invariant: every comparison is on exact integers, with a tolerance only
//! where the protocol allows one (rounding per price bucket; a client pays for what arrived).

use super::books::{NodeBooks, Row, cc};
use super::topology::{Mesh, Role};
use super::traffic::PingResult;

/// A client may pay a little less than an exit counted (it pays for what arrived, and the
/// payer pays the lower count): 2 %, far above what a veth loses, far below a billing bug.
const PRICE_TOLERANCE_PERCENT: u128 = 2;
/// Rounding: one unit per price bucket and side, a few buckets per channel.
const ROUNDING_UNITS: u128 = 4;
/// An exit bills IP bytes both ways: payload plus TCP/IP headers and the ACKs going up, about
/// 5 % on a 1420-byte MTU; 10 % plus 1 MiB (pings, handshakes) is the upper bound checked.
const OVERHEAD_PERCENT: u64 = 10;

/// One check and how it went.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it held.
    pub ok: bool,
    /// The numbers behind it.
    pub detail: String,
}

/// One download the demo made, and what the server saw of it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DownloadFact {
    /// The exit it went through.
    pub exit: &'static str,
    /// The relay between the client and that exit.
    pub relay: &'static str,
    /// Body bytes the client received.
    pub bytes: u64,
    /// Body bytes the server sent.
    pub served_bytes: u64,
    /// Where the server saw it come from.
    pub served_to: String,
    /// Whether the client's hash of the body is the server's.
    pub hash_ok: bool,
    /// Seconds it took.
    pub secs: f64,
}

fn check(out: &mut Vec<Check>, name: String, ok: bool, detail: String) {
    out.push(Check { name, ok, detail });
}

/// Run every check.
pub fn run(
    mesh: &Mesh,
    books: &[NodeBooks],
    rows: &[Row],
    downloads: &[DownloadFact],
    pings: &[(String, PingResult)],
) -> Vec<Check> {
    let mut out = Vec::new();
    for r in rows {
        check(
            &mut out,
            format!(
                "{} credited what {} signed ({})",
                r.carrier, r.payer, r.kind
            ),
            r.paid_units == r.payer_paid_units,
            format!("{} vs {}", cc(r.paid_units), cc(r.payer_paid_units)),
        );
        let low = r.expected_units * (100 - PRICE_TOLERANCE_PERCENT) / 100;
        check(
            &mut out,
            format!(
                "{} paid {} for {} bytes at {}/MiB",
                r.payer, r.carrier, r.bytes, r.fee_per_mib
            ),
            r.paid_units + ROUNDING_UNITS >= low
                && r.paid_units <= r.expected_units + ROUNDING_UNITS,
            format!(
                "paid {} units, bytes x price = {}",
                r.paid_units, r.expected_units
            ),
        );
    }
    for (n, b) in mesh.nodes.iter().zip(books) {
        let earned: u128 = rows
            .iter()
            .filter(|r| r.carrier == n.name)
            .map(|r| r.paid_units)
            .sum();
        let spent: u128 = rows
            .iter()
            .filter(|r| r.payer == n.name)
            .map(|r| r.payer_paid_units)
            .sum();
        check(
            &mut out,
            format!("{}: wallet earned = table", n.name),
            b.earned == earned,
            format!("wallet {} table {}", cc(b.earned), cc(earned)),
        );
        check(
            &mut out,
            format!("{}: wallet spent = table", n.name),
            b.spent == spent,
            format!("wallet {} table {}", cc(b.spent), cc(spent)),
        );
        let bal = i128::try_from(b.earned).unwrap_or(i128::MAX)
            - i128::try_from(b.spent).unwrap_or(i128::MAX);
        check(
            &mut out,
            format!("{}: balance = earned - spent", n.name),
            b.balance == bal,
            format!("{} vs {}", b.balance, bal),
        );
        if n.role != Role::Client {
            check(
                &mut out,
                format!("{} earned something", n.name),
                earned > 0,
                cc(earned),
            );
        }
    }
    let (earned, spent): (u128, u128) = books
        .iter()
        .fold((0, 0), |(e, s), b| (e + b.earned, s + b.spent));
    check(
        &mut out,
        "the mesh's books balance: all earned = all spent".into(),
        earned == spent,
        format!("{} vs {}", cc(earned), cc(spent)),
    );
    for d in downloads {
        let x = mesh.nodes.iter().find(|n| n.name == d.exit);
        let want_src = x.and_then(|x| x.uplink_addr).map(|a| a.to_string());
        check(
            &mut out,
            format!("download through {}: complete and hash-checked", d.exit),
            d.hash_ok && d.bytes == d.served_bytes && d.bytes > 0,
            format!("{} bytes received, {} sent", d.bytes, d.served_bytes),
        );
        check(
            &mut out,
            format!(
                "download through {}: the internet saw {}'s address",
                d.exit, d.exit
            ),
            want_src.as_deref() == Some(d.served_to.as_str()),
            format!("seen {}, expected {want_src:?}", d.served_to),
        );
        let billed: u64 = rows
            .iter()
            .filter(|r| r.carrier == d.exit && r.kind == "exit")
            .map(|r| r.bytes)
            .sum();
        let through_exit: u64 = downloads
            .iter()
            .filter(|o| o.exit == d.exit)
            .map(|o| o.bytes)
            .sum();
        let upper = through_exit + through_exit * OVERHEAD_PERCENT / 100 + (1 << 20);
        check(
            &mut out,
            format!("{} billed the bytes it carried", d.exit),
            billed >= through_exit && billed <= upper,
            format!("{billed} bytes billed for {through_exit} bytes of downloads"),
        );
    }
    for d in downloads {
        let relayed: u64 = rows
            .iter()
            .filter(|r| r.carrier == d.relay && r.kind == "link")
            .map(|r| r.bytes)
            .sum();
        check(
            &mut out,
            format!("{} carried the download through {}", d.relay, d.exit),
            relayed >= d.bytes,
            format!("{relayed} bytes relayed for a {}-byte download", d.bytes),
        );
    }
    for (label, p) in pings {
        check(
            &mut out,
            format!("ping {label}"),
            p.sent > 0 && p.received * 10 >= p.sent * 9,
            format!("{}/{} replies, avg {:?} ms", p.received, p.sent, p.avg_ms),
        );
    }
    out
}
