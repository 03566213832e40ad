//! Human-readable tables for CLI output, built from the same JSON the `--json` flag prints.

use serde_json::Value;
use std::fmt::Write;

/// A JSON value as text: strings unquoted, null as `-`.
pub fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Bytes with a binary unit.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// An amount (the daemon's exact decimal string) as `0.000050000 CC`; `-` if absent.
pub fn cc(v: &Value) -> String {
    match v {
        Value::String(x) => format!("{x} CC"),
        other => s(other),
    }
}

/// A JSON byte count with a binary unit; `-` if absent.
pub fn bytes_of(v: &Value) -> String {
    v.as_u64().map_or_else(|| s(v), bytes)
}

/// Unix milliseconds as UTC `YYYY-MM-DD HH:MM:SS`.
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to a proleptic Gregorian date (H. Hinnant, "chrono-Compatible Low-Level Date
    // Algorithms", civil_from_days).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Align rows into columns separated by two spaces.
pub fn table(rows: &[Vec<String>]) -> String {
    table_right(rows, &[])
}

/// [`table`], with the columns whose indices are in `right` right-aligned (numbers, amounts).
pub fn table_right(rows: &[Vec<String>], right: &[usize]) -> String {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|x| x.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (x, w))| {
                if right.contains(&c) {
                    format!("{x:>w$}")
                } else {
                    format!("{x:<w$}")
                }
            })
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

/// `bitcloud status` as text.
pub fn status(v: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "node    {}", s(&v["id"]));
    let _ = writeln!(out, "ipv6    {}\nipv4    {}", s(&v["ipv6"]), s(&v["ipv4"]));
    let _ = writeln!(
        out,
        "listen  {}   tun {} (mtu {})   up {} s\n",
        s(&v["listen"]),
        s(&v["tun"]),
        s(&v["mtu"]),
        s(&v["uptime_secs"])
    );
    out.push_str(&super::wallet::health_line(&v["wallet"]));
    let mut rows = vec![
        ["peer", "endpoint", "handshake", "rx", "tx", "dropped"]
            .map(String::from)
            .to_vec(),
    ];
    for p in v["peers"].as_array().into_iter().flatten() {
        let id = s(&p["id"]);
        let hs = match p["last_handshake_secs"].as_u64() {
            Some(n) => format!("{n} s ago"),
            None => "never".into(),
        };
        let dropped: u64 = p["drops"]
            .as_object()
            .map(|m| m.values().filter_map(|x| x.as_u64()).sum())
            .unwrap_or(0);
        rows.push(vec![
            id.get(..16).map(|x| format!("{x}…")).unwrap_or(id.clone()),
            s(&p["endpoint"]),
            hs,
            bytes(p["rx_bytes"].as_u64().unwrap_or(0)),
            bytes(p["tx_bytes"].as_u64().unwrap_or(0)),
            dropped.to_string(),
        ]);
    }
    out.push_str(&table(&rows));
    let drops: Vec<String> = v["drops"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
    let _ = writeln!(
        out,
        "\ndrops   {}",
        if drops.is_empty() {
            "none".into()
        } else {
            drops.join(" ")
        }
    );
    out
}

/// A node or channel id shortened to its first 16 hex digits and an ellipsis.
pub fn short(v: &Value) -> String {
    let id = s(v);
    id.get(..16).map(|x| format!("{x}…")).unwrap_or(id)
}

/// `bitcloud routes` as text.
pub fn routes(v: &Value) -> String {
    let mut rows = vec![
        [
            "destination",
            "originator",
            "next hop",
            "metric",
            "seqno",
            "price/MiB",
            "age",
            "",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for r in v["routes"].as_array().into_iter().flatten() {
        rows.push(vec![
            s(&r["destination"]),
            short(&r["originator"]),
            short(&r["next_hop"]),
            if r["metric"].is_null() {
                "unreachable".into()
            } else {
                s(&r["metric"])
            },
            s(&r["seqno"]),
            if r["price"].is_null() {
                "-".into()
            } else {
                s(&r["price"])
            },
            format!("{} s", s(&r["age_secs"])),
            if r["selected"].as_bool() == Some(true) {
                "*".into()
            } else {
                String::new()
            },
        ]);
    }
    table(&rows)
}

/// `bitcloud peers` as text.
pub fn peers(v: &Value) -> String {
    let mut rows = vec![
        [
            "peer", "endpoint", "found", "up", "cost", "hellos", "rtt", "rx", "tx",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for p in v["peers"].as_array().into_iter().flatten() {
        rows.push(vec![
            short(&p["id"]),
            s(&p["endpoint"]),
            s(&p["found"]),
            if p["connected"].as_bool() == Some(true) {
                "yes".into()
            } else {
                "no".into()
            },
            s(&p["link_cost"]),
            s(&p["hellos"]),
            p["rtt_ms"]
                .as_f64()
                .map(|r| format!("{r:.2} ms"))
                .unwrap_or_else(|| "-".into()),
            bytes(p["rx_bytes"].as_u64().unwrap_or(0)),
            bytes(p["tx_bytes"].as_u64().unwrap_or(0)),
        ]);
    }
    table(&rows)
}

/// `bitcloud price` as text.
pub fn price(v: &Value) -> String {
    let max = if v["max_price_per_mib"].is_null() {
        "no limit".into()
    } else {
        format!("{} units/MiB", s(&v["max_price_per_mib"]))
    };
    format!(
        "fee        {} units/MiB (price epoch {})\nmax price  {max}\n",
        s(&v["fee_per_mib"]),
        s(&v["price_epoch"])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_timestamps() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(-1), "1969-12-31 23:59:59");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc(1_700_000_000_999), "2023-11-14 22:13:20");
        assert_eq!(utc(4_102_444_799_000), "2099-12-31 23:59:59");
        // Extremes do not panic.
        utc(i64::MIN);
        utc(i64::MAX);
    }

    #[test]
    fn amounts_and_byte_counts_from_json() {
        assert_eq!(cc(&Value::from("0.000050000")), "0.000050000 CC");
        assert_eq!(cc(&Value::Null), "-");
        assert_eq!(bytes_of(&Value::from(2048)), "2.0 KiB");
        assert_eq!(bytes_of(&Value::Null), "-");
    }
}
