//! The demo's real traffic: a small HTTP/1.1 server in the internet namespace serving a
//! generated payload, a downloader in the client's namespace that fetches it through the exit
//! in use and hash-checks it, and `ping`. Invariants: sockets are opened on threads that
//! entered the right namespace (a socket stays where it was made); every blocking read has a
//! timeout and checks the stop flag, so Ctrl-C never waits on the network; the payload is
//! deterministic, so both ends can hash it independently.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use blake2::{Blake2s256, Digest};

use super::lab::Lab;
use super::stop;

/// Longest a download may take before the demo gives up on it.
const DOWNLOAD_LIMIT: Duration = Duration::from_secs(60);
/// Longest request head the server reads.
const MAX_HEAD: usize = 8 << 10;

/// The payload: `len` bytes from a xorshift generator (incompressible, reproducible).
pub fn payload(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// BLAKE2s-256 of `data`, hex.
pub fn hash(data: &[u8]) -> String {
    hex::encode(Blake2s256::digest(data))
}

/// One response the server sent.
#[derive(Clone, Debug)]
pub struct Served {
    /// Who asked (the exit's NAT address, if it went through an exit).
    pub peer: SocketAddr,
    /// Body bytes written.
    pub bytes: u64,
}

/// The web server in the internet namespace; stops when dropped.
pub struct WebServer {
    /// Every response so far.
    pub served: Arc<Mutex<Vec<Served>>>,
    quit: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl WebServer {
    /// Listen on `addr:80` inside `ns` and serve `body` at every path, at most `pace` bytes a
    /// second (so a person can watch a download, and the coins it moves, for a few seconds).
    pub fn start(
        lab: &Lab,
        ns: &str,
        addr: IpAddr,
        body: Arc<Vec<u8>>,
        pace: u64,
    ) -> anyhow::Result<Self> {
        let served = Arc::new(Mutex::new(Vec::new()));
        let quit = Arc::new(AtomicBool::new(false));
        let (s2, q2) = (served.clone(), quit.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = lab.in_netns(ns, move || {
            let l = TcpListener::bind(SocketAddr::new(addr, 80));
            let l = match l {
                Ok(l) => {
                    let _ = tx.send(Ok(()));
                    l
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return Ok(());
                }
            };
            l.set_nonblocking(true)?;
            while !q2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((s, peer)) => {
                        let bytes = serve(s, &body, pace, &q2).unwrap_or_else(|e| {
                            tracing::debug!("web server: {peer}: {e:#}");
                            0
                        });
                        if let Ok(mut v) = s2.lock() {
                            v.push(Served { peer, bytes });
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        })?;
        rx.recv()
            .context("web server thread")?
            .context("web server: bind")?;
        Ok(WebServer {
            served,
            quit,
            thread: Some(thread),
        })
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.quit.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answer one request with the whole body; returns the body bytes written.
fn serve(s: TcpStream, body: &[u8], pace: u64, quit: &AtomicBool) -> anyhow::Result<u64> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(1)))?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut head = 0usize;
    let mut first = String::new();
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line)?;
        head += n;
        if n == 0 || head > MAX_HEAD {
            bail!("bad request head");
        }
        if first.is_empty() {
            first = line.clone();
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut w = s;
    if !first.starts_with("GET ") {
        w.write_all(
            b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return Ok(0);
    }
    let body = body
        .get(..requested_len(&first, body.len()))
        .unwrap_or(body);
    write!(
        w,
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    let (mut sent, t0) = (0u64, Instant::now());
    for chunk in body.chunks(64 << 10) {
        while sent as f64 > t0.elapsed().as_secs_f64() * pace as f64 {
            if quit.load(Ordering::Relaxed) || stop::requested() {
                bail!("stopped");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // A short write timeout and a retry loop, so a stop request is seen within a second.
        let mut rest = chunk;
        while !rest.is_empty() {
            if quit.load(Ordering::Relaxed) || stop::requested() {
                bail!("stopped");
            }
            match w.write(rest) {
                Ok(0) => bail!("connection closed"),
                Ok(n) => {
                    rest = &rest[n..];
                    sent += n as u64;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(sent)
}

/// `GET /N ...` asks for the payload's first N bytes (at most all of it); any other path for all.
fn requested_len(request_line: &str, max: usize) -> usize {
    request_line
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.strip_prefix('/'))
        .and_then(|n| n.parse::<usize>().ok())
        .map_or(max, |n| n.min(max))
}

/// A finished download.
#[derive(Clone, Debug)]
pub struct Download {
    /// Body bytes received.
    pub bytes: u64,
    /// Their hash.
    pub hash: String,
    /// How long it took.
    pub secs: f64,
}

/// Fetch `http://addr/path` from inside `ns`, counting body bytes into `progress`.
pub fn download(
    lab: &Lab,
    ns: &str,
    addr: SocketAddr,
    path: String,
    progress: Arc<AtomicU64>,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<Download>>> {
    lab.in_netns(ns, move || {
        let t0 = Instant::now();
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("connecting to {addr} through the exit"))?;
        s.set_read_timeout(Some(Duration::from_millis(500)))?;
        let mut w = s.try_clone()?;
        write!(
            w,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut r = BufReader::new(s);
        let mut len: Option<u64> = None;
        let mut status = String::new();
        loop {
            let mut line = String::new();
            read_retrying(|| r.read_line(&mut line), t0)?;
            if status.is_empty() {
                if line.is_empty() {
                    bail!("connection closed before a response");
                }
                status = line.trim().to_string();
                continue;
            }
            let l = line.trim();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().ok();
            }
        }
        if !status.starts_with("HTTP/1.1 200") {
            bail!("server said {status:?}");
        }
        let len = len.context("no Content-Length")?;
        let (mut h, mut got, mut buf) = (Blake2s256::new(), 0u64, vec![0u8; 64 << 10]);
        while got < len {
            let n = read_retrying(|| r.read(&mut buf), t0)?;
            if n == 0 {
                bail!("connection closed after {got} of {len} bytes");
            }
            let chunk = buf.get(..n).context("read past the buffer")?;
            h.update(chunk);
            got += n as u64;
            progress.store(got, Ordering::Relaxed);
        }
        Ok(Download {
            bytes: got,
            hash: hex::encode(h.finalize()),
            secs: t0.elapsed().as_secs_f64(),
        })
    })
}

/// Retry a read that timed out until it returns, the stop flag is set, or the download limit.
fn read_retrying(
    mut f: impl FnMut() -> std::io::Result<usize>,
    t0: Instant,
) -> anyhow::Result<usize> {
    loop {
        stop::check()?;
        if t0.elapsed() > DOWNLOAD_LIMIT {
            bail!("download took longer than {DOWNLOAD_LIMIT:?}");
        }
        match f() {
            Ok(n) => return Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// What one `ping` run saw.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PingResult {
    /// Where to.
    pub dst: IpAddr,
    /// Echo requests sent.
    pub sent: u32,
    /// Replies.
    pub received: u32,
    /// Average round trip, ms.
    pub avg_ms: Option<f64>,
}

/// `ping -c count -i interval -s size dst` inside `ns`, killed (by PID) on a stop request.
pub fn ping(
    ns: &str,
    dst: IpAddr,
    count: u32,
    interval: &str,
    size: u32,
) -> anyhow::Result<PingResult> {
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-n", "-q", "-W", "1"])
        .args([
            "-c",
            &count.to_string(),
            "-i",
            interval,
            "-s",
            &size.to_string(),
        ])
        .arg(dst.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .context("running ping (package iputils-ping)")?;
    loop {
        if stop::requested() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(stop::Interrupted.into());
        }
        if child.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_string(&mut out)?;
    }
    Ok(parse_ping(dst, &out))
}

use std::os::unix::process::CommandExt;

/// Read `ping -q`'s summary: "N packets transmitted, M received" and "rtt ... = a/b/c/d ms".
fn parse_ping(dst: IpAddr, out: &str) -> PingResult {
    let mut r = PingResult {
        dst,
        sent: 0,
        received: 0,
        avg_ms: None,
    };
    for line in out.lines() {
        if line.contains("packets transmitted") {
            let nums: Vec<u32> = line
                .split(',')
                .filter_map(|f| f.split_whitespace().next()?.parse().ok())
                .collect();
            if let [s, rcv, ..] = nums[..] {
                r.sent = s;
                r.received = rcv;
            }
        } else if let Some((_, v)) = line.split_once(" = ")
            && line.starts_with("rtt")
        {
            r.avg_ms = v.split('/').nth(1).and_then(|x| x.parse().ok());
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_summary() {
        let out = "PING 198.19.0.1 (198.19.0.1) 56(84) bytes of data.\n\n--- 198.19.0.1 ping statistics ---\n10 packets transmitted, 9 received, 10% packet loss, time 905ms\nrtt min/avg/max/mdev = 0.512/0.734/1.201/0.190 ms\n";
        let r = parse_ping("198.19.0.1".parse().unwrap(), out);
        assert_eq!((r.sent, r.received, r.avg_ms), (10, 9, Some(0.734)));
        let r = parse_ping("198.19.0.1".parse().unwrap(), "garbage\n");
        assert_eq!((r.sent, r.received, r.avg_ms), (0, 0, None));
    }

    #[test]
    fn request_lengths() {
        assert_eq!(requested_len("GET /100 HTTP/1.1\r\n", 1000), 100);
        assert_eq!(requested_len("GET /5000 HTTP/1.1\r\n", 1000), 1000);
        assert_eq!(requested_len("GET / HTTP/1.1\r\n", 1000), 1000);
        assert_eq!(requested_len("GET /-1 HTTP/1.1\r\n", 1000), 1000);
        assert_eq!(requested_len("GET", 1000), 1000);
        assert_eq!(requested_len("", 0), 0);
    }

    #[test]
    fn payload_is_reproducible() {
        let (a, b) = (payload(1000), payload(1000));
        assert_eq!(a.len(), 1000);
        assert_eq!(hash(&a), hash(&b));
        assert_ne!(hash(&a), hash(&payload(999)));
    }
}
