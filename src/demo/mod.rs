//! `bitcloud demo`: the whole product on one machine, in network namespaces. An "internet"
//! with a web server, two paid exits, two paid relays and a client, all real daemons on real
//! TUN devices; the client pings and downloads through one exit, then the other, while a live
//! view shows the transfer and the coins moving; then a table of who carried what and who
//! earned what, checked against every wallet (the demo fails if any check does); then
//! everything it made is removed, also on Ctrl-C. Invariants: nothing outside the lab's
//! namespaces, its veths and its scratch directory is touched (the client's DNS setting is
//! "off", so no resolver file changes); only daemons it started are stopped, by PID.

mod books;
mod checks;
mod lab;
mod stop;
mod topology;
mod traffic;
mod view;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::api::{self, Request};
use checks::DownloadFact;
use lab::Lab;
use topology::{CLIENT, DemoNode, EXIT_A, EXIT_B, INTERNET_ADDR, Mesh, RELAY1, RELAY2};
use traffic::{PingResult, WebServer};
use view::View;

/// The payload served; each download asks for a prefix of it.
const PAYLOAD_BYTES: usize = 32 << 20;
/// Through exitA (the cheaper one, which `auto` picks) and then exitB.
const DOWNLOAD_A: usize = 24 << 20;
const DOWNLOAD_B: usize = 12 << 20;
/// The web server's pace: a download takes seconds, long enough to watch coins move.
const PACE_BYTES_PER_SEC: u64 = 2 << 20;
/// Bounds on each wait, so a broken mesh fails the demo instead of hanging it.
const DAEMON_UP: Duration = Duration::from_secs(15);
const MESH_UP: Duration = Duration::from_secs(40);
const EXIT_SWITCH: Duration = Duration::from_secs(20);
const SETTLE: Duration = Duration::from_secs(20);

/// `bitcloud demo` options.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Keep the mesh up after the checks, until Ctrl-C.
    pub hold: bool,
    /// Print a machine-readable summary on stdout (the live view goes to stderr).
    pub json: bool,
}

/// Run the demo; `Err` if it could not run, was interrupted, or a check failed.
pub fn run(opts: Options) -> anyhow::Result<()> {
    preflight()?;
    stop::catch()?;
    let view = View::new(opts.json);
    let mut lab = Lab::new()?;
    // After a stop request any error (a connection the server closed, say) is the interrupt.
    let outcome = demo(&mut lab, &view, opts).map_err(|e| {
        if stop::requested() {
            stop::Interrupted.into()
        } else {
            e
        }
    });
    let failed = match &outcome {
        Ok(s) => !s["ok"].as_bool().unwrap_or(false),
        Err(e) => !e.is::<stop::Interrupted>(),
    };
    if failed {
        dump_logs(&lab);
    }
    let (prefix, t0) = (lab.prefix.clone(), Instant::now());
    view.say(&format!(
        "cleaning up: stopping the daemons, removing {prefix}-* and its files"
    ));
    drop(lab);
    view.say(&format!(
        "removed everything in {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
    let mut summary = outcome?;
    summary["secs"] = json!(view.elapsed());
    summary["cleaned"] = json!(true);
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    let bad = summary["checks"]
        .as_array()
        .map_or(0, |c| c.iter().filter(|c| c["ok"] != true).count());
    if bad > 0 {
        bail!("{bad} checks failed (see above)");
    }
    view.say(&format!("demo finished in {:.1} s", view.elapsed()));
    Ok(())
}

/// Root, the tools the daemons and the demo need, and a TUN device.
fn preflight() -> anyhow::Result<()> {
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .is_some_and(|l| l.split_whitespace().nth(2) == Some("0"))
    });
    if !root {
        bail!("bitcloud demo needs root (network namespaces, TUN devices): sudo bitcloud demo");
    }
    for (tool, pkg) in [
        ("ip", "iproute2"),
        ("ping", "iputils-ping"),
        ("nft", "nftables"),
    ] {
        if !lab::have(tool) {
            bail!("bitcloud demo needs `{tool}` (package {pkg})");
        }
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        bail!("bitcloud demo needs /dev/net/tun");
    }
    Ok(())
}

fn demo(lab: &mut Lab, view: &View, opts: Options) -> anyhow::Result<Value> {
    view.say(&format!(
        "building the mesh: namespaces {p}-internet, -client, -relay1, -relay2, -exitA, -exitB; files in {}",
        lab.dir.display(),
        p = lab.prefix
    ));
    let mesh = topology::build(lab)?;
    let body = Arc::new(traffic::payload(PAYLOAD_BYTES));
    let internet: IpAddr = INTERNET_ADDR.parse()?;
    let web = WebServer::start(
        lab,
        &mesh.internet,
        internet,
        body.clone(),
        PACE_BYTES_PER_SEC,
    )?;
    view.say(&format!(
        "internet: web server on {INTERNET_ADDR}:80 ({} MiB payload, served at {} MiB/s)",
        PAYLOAD_BYTES >> 20,
        PACE_BYTES_PER_SEC >> 20
    ));
    let mut pids = Vec::new();
    for n in &mesh.nodes {
        pids.push(lab.spawn_daemon(&n.ns, &n.cfg, &n.log)?);
    }
    for (n, &pid) in mesh.nodes.iter().zip(&pids) {
        wait_for(view, DAEMON_UP, &format!("{} daemon", n.name), || {
            if !lab.daemon_alive(pid) {
                bail!("the {} daemon exited: {}", n.name, tail(&n.log, 20));
            }
            Ok(api::call(&n.socket, &Request::Status).is_ok())
        })?;
    }
    view.say(&format!(
        "5 daemons up (pids {pids:?}); prices per MiB: {}",
        prices(&mesh)
    ));
    let t_mesh = Instant::now();
    let client = &mesh.nodes[CLIENT];
    wait_for(
        view,
        MESH_UP,
        "routes to every node and exitA chosen",
        || {
            Ok(routes_to_all(&mesh)?
                && exit_in_use(client)? == Some(mesh.nodes[EXIT_A].id.to_string()))
        },
    )?;
    view.say(&format!(
        "mesh up in {:.1} s: the client reaches every node, and `auto` chose exitA (cheapest path: relay1 + exitA)",
        t_mesh.elapsed().as_secs_f64()
    ));

    let mut pings = Vec::new();
    let x_b = &mesh.nodes[EXIT_B];
    pings.push(ping(
        view,
        &mesh,
        "client -> exitB over the mesh (via relay2)",
        x_b.ipv6,
        20,
    )?);
    pings.push(ping(
        view,
        &mesh,
        "client -> internet via exitA",
        internet,
        10,
    )?);
    let mut downloads = vec![download(
        lab, view, &mesh, &web, &body, EXIT_A, RELAY1, DOWNLOAD_A,
    )?];

    view.say("client switches exits: bitcloud exit use <exitB's id>");
    api::call(
        &client.socket,
        &Request::Exit {
            mode: Some(x_b.id.to_string()),
        },
    )?;
    wait_for(view, EXIT_SWITCH, "the client on exitB", || {
        Ok(exit_in_use(client)? == Some(x_b.id.to_string()))
    })?;
    pings.push(ping(
        view,
        &mesh,
        "client -> internet via exitB",
        internet,
        10,
    )?);
    downloads.push(download(
        lab, view, &mesh, &web, &body, EXIT_B, RELAY2, DOWNLOAD_B,
    )?);

    view.say("traffic done; waiting for the last vouchers to be signed and credited");
    let mut books = books::read_all(&mesh)?;
    let t_settle = Instant::now();
    while !books::settled(&mesh, &books) && t_settle.elapsed() < SETTLE {
        stop::sleep(Duration::from_millis(250))?;
        books = books::read_all(&mesh)?;
    }
    let rows = books::table(&mesh, &books);
    let checks = checks::run(&mesh, &books, &rows, &downloads, &pings);
    view.tables(&mesh, &books, &rows, &checks);
    let ok = checks.iter().all(|c| c.ok);
    let summary = summary(
        lab, &mesh, &pids, &books, &rows, &downloads, &pings, &checks, ok,
    );
    if opts.hold {
        hold(lab, view, &mesh);
    }
    drop(web);
    Ok(summary)
}

/// Poll `f` every 100 ms until it says yes, failing after `limit`.
fn wait_for(
    view: &View,
    limit: Duration,
    what: &str,
    mut f: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let mut said = false;
    loop {
        if f()? {
            return Ok(());
        }
        if t0.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        if !said && t0.elapsed() > Duration::from_secs(3) {
            view.say(&format!("waiting for {what} ..."));
            said = true;
        }
        stop::sleep(Duration::from_millis(100))?;
    }
}

fn prices(mesh: &Mesh) -> String {
    mesh.nodes
        .iter()
        .filter(|n| n.fee_per_mib > 0)
        .map(|n| format!("{} {}", n.name, books::cc(u128::from(n.fee_per_mib))))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether the client has a selected route to every other node.
fn routes_to_all(mesh: &Mesh) -> anyhow::Result<bool> {
    let v = api::call(&mesh.nodes[CLIENT].socket, &Request::Routes)?;
    let have: Vec<&str> = v["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["selected"] == true && r["kind"] == "node")
        .filter_map(|r| r["originator"].as_str())
        .collect();
    Ok(mesh.nodes[1..]
        .iter()
        .all(|n| have.contains(&n.id.to_string().as_str())))
}

fn exit_in_use(n: &DemoNode) -> anyhow::Result<Option<String>> {
    let v = api::call(&n.socket, &Request::Status)?;
    Ok(v["exit"]["current"].as_str().map(str::to_string))
}

/// Ping `dst` from the client `count` times, with the live view running.
fn ping(
    view: &View,
    mesh: &Mesh,
    label: &str,
    dst: IpAddr,
    count: u32,
) -> anyhow::Result<(String, PingResult)> {
    let ns = mesh.nodes[CLIENT].ns.clone();
    let h = std::thread::spawn(move || traffic::ping(&ns, dst, count, "0.05", 1000));
    view.watch(mesh, "ping", None, &AtomicU64::new(0), || h.is_finished())?;
    let r = h
        .join()
        .map_err(|_| anyhow::anyhow!("ping thread panicked"))??;
    view.say(&format!(
        "ping {label} ({dst}): {}/{} replies, avg {} ms",
        r.received,
        r.sent,
        r.avg_ms.map_or("-".into(), |a| format!("{a:.2}"))
    ));
    Ok((label.to_string(), r))
}

/// Download `len` bytes from the internet through `exit` with the live view running.
#[allow(clippy::too_many_arguments)]
fn download(
    lab: &Lab,
    view: &View,
    mesh: &Mesh,
    web: &WebServer,
    body: &[u8],
    exit: usize,
    relay: usize,
    len: usize,
) -> anyhow::Result<DownloadFact> {
    let x = &mesh.nodes[exit];
    let progress = Arc::new(AtomicU64::new(0));
    let addr = SocketAddr::new(INTERNET_ADDR.parse()?, 80);
    view.say(&format!(
        "downloading http://{addr}/{len} through {} (client -> {} -> {} -> internet)",
        x.name, mesh.nodes[relay].name, x.name
    ));
    let h = traffic::download(
        lab,
        &mesh.nodes[CLIENT].ns,
        addr,
        format!("/{len}"),
        progress.clone(),
    )?;
    view.watch(
        mesh,
        &format!("via {}", x.name),
        Some(len as u64),
        &progress,
        || h.is_finished(),
    )?;
    let d = h
        .join()
        .map_err(|_| anyhow::anyhow!("download thread panicked"))??;
    // The server records the response once it is written; give it a moment after the client.
    let t0 = Instant::now();
    let served = loop {
        let last = web.served.lock().ok().and_then(|v| v.last().cloned());
        if let Some(s) = last.filter(|s| s.bytes == d.bytes) {
            break Some(s);
        }
        if t0.elapsed() > Duration::from_secs(3) {
            break web.served.lock().ok().and_then(|v| v.last().cloned());
        }
        stop::sleep(Duration::from_millis(20))?;
    };
    let want = body
        .get(..len)
        .context("download longer than the payload")?;
    let fact = DownloadFact {
        exit: x.name,
        relay: mesh.nodes[relay].name,
        bytes: d.bytes,
        served_bytes: served.as_ref().map_or(0, |s| s.bytes),
        served_to: served.map_or_else(String::new, |s| s.peer.ip().to_string()),
        hash_ok: d.hash == traffic::hash(want),
        secs: d.secs,
    };
    view.say(&format!(
        "downloaded {} MiB through {} in {:.1} s ({:.1} MiB/s), hash {}; the server saw {}",
        d.bytes >> 20,
        x.name,
        d.secs,
        d.bytes as f64 / f64::from(1u32 << 20) / d.secs.max(0.001),
        if fact.hash_ok { "ok" } else { "MISMATCH" },
        fact.served_to
    ));
    Ok(fact)
}

#[allow(clippy::too_many_arguments)]
fn summary(
    lab: &Lab,
    mesh: &Mesh,
    pids: &[u32],
    books: &[books::NodeBooks],
    rows: &[books::Row],
    downloads: &[DownloadFact],
    pings: &[(String, PingResult)],
    checks: &[checks::Check],
    ok: bool,
) -> Value {
    let nodes: Vec<Value> = mesh
        .nodes
        .iter()
        .zip(books)
        .zip(pids)
        .map(|((n, b), pid)| {
            json!({
                "name": n.name,
                "role": n.role,
                "id": n.id.to_string(),
                "namespace": n.ns,
                "ipv4": n.ipv4,
                "ipv6": n.ipv6,
                "pid": pid,
                "fee_per_mib": n.fee_per_mib,
                "earned": books::cc(b.earned),
                "spent": books::cc(b.spent),
                "balance": books::cc_signed(b.balance),
                "earned_units": b.earned,
                "spent_units": b.spent,
                "balance_units": b.balance,
            })
        })
        .collect();
    let mut namespaces: Vec<&str> = mesh.nodes.iter().map(|n| n.ns.as_str()).collect();
    namespaces.push(&mesh.internet);
    json!({
        "ok": ok,
        "prefix": lab.prefix,
        "dir": lab.dir,
        "namespaces": namespaces,
        "pids": pids,
        "nodes": nodes,
        "traffic": rows,
        "downloads": downloads,
        "pings": pings.iter().map(|(l, p)| json!({"what": l, "result": p})).collect::<Vec<_>>(),
        "checks": checks,
    })
}

/// `--hold`: print what to try, and wait for Ctrl-C.
fn hold(lab: &Lab, view: &View, mesh: &Mesh) {
    let exe = std::env::current_exe().map_or("bitcloud".into(), |p| p.display().to_string());
    let c = &mesh.nodes[CLIENT];
    let cfg = |i: usize| mesh.nodes[i].cfg.display().to_string();
    view.raw(&format!(
        "\nThe mesh stays up. Try, as root:\n\
         \x20 ip netns exec {cns} ping {INTERNET_ADDR}                 # the internet, through the exit in use\n\
         \x20 ip netns exec {cns} ping {a6}   # exitA, through relay1\n\
         \x20 ip netns exec {cns} curl -o /dev/null http://{INTERNET_ADDR}/10000000   # 10 MB through the exit\n\
         \x20 {exe} status -c {cc}\n\
         \x20 {exe} exit list -c {cc}\n\
         \x20 {exe} exit use auto -c {cc}      # back to the cheapest exit\n\
         \x20 {exe} wallet balance -c {r1}\n\
         \x20 {exe} wallet channels -c {xa}\n\
         \x20 {exe} routes -c {cc}\n\
         Namespaces: {p}-{{internet,client,relay1,relay2,exitA,exitB}}; configs and logs under {dir}.\n\
         Ctrl-C stops the daemons and removes all of it.",
        cns = c.ns,
        a6 = mesh.nodes[EXIT_A].ipv6,
        cc = cfg(CLIENT),
        r1 = cfg(RELAY1),
        xa = cfg(EXIT_A),
        p = lab.prefix,
        dir = lab.dir.display(),
    ));
    while !stop::requested() {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last `n` lines of a file.
fn tail(path: &std::path::Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// On failure, the end of every daemon's log (the files go with the lab).
fn dump_logs(lab: &Lab) {
    let Ok(dirs) = std::fs::read_dir(&lab.dir) else {
        return;
    };
    for d in dirs.flatten() {
        let log = d.path().join("daemon.log");
        if log.exists() {
            eprintln!("--- {} (last 15 lines)\n{}", log.display(), tail(&log, 15));
        }
    }
}
