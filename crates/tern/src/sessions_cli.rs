//! `tern sessions` and `tern revoke`: the admin port's sessions API from the command line,
//! over a small HTTP/1.1 client on a plain `TcpStream` (the admin port is loopback or cluster
//! HTTP).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use serde_json::Value;

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read.
const MAX_ANSWER: u64 = 16 << 20;
/// Pages followed at most by `tern sessions` (of 1000 each).
const MAX_PAGES: usize = 100;

/// Where and how to reach the admin API.
#[derive(Debug, Clone)]
pub struct AdminClient {
    /// `HOST:PORT`.
    pub admin: String,
    /// The bearer token, from `--token-file`.
    pub token: Option<String>,
}

impl AdminClient {
    /// A client for `admin`, with the token in `token_file` (its first non-blank line).
    pub fn new(admin: &str, token_file: Option<&Path>) -> anyhow::Result<Self> {
        let token = match token_file {
            None => None,
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("--token-file: cannot read {}", p.display()))?;
                let t = text
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty() && !l.starts_with('#'))
                    .with_context(|| format!("--token-file: {} holds no token", p.display()))?;
                Some(t.to_owned())
            }
        };
        Ok(Self {
            admin: admin.to_owned(),
            token,
        })
    }

    /// Sends one request; returns the status and the JSON body. An error status is an
    /// error carrying the API's message.
    fn call(&self, method: &str, target: &str, body: &str) -> anyhow::Result<Value> {
        let addr: SocketAddr = self
            .admin
            .to_socket_addrs()
            .with_context(|| format!("--admin {}: not HOST:PORT", self.admin))?
            .next()
            .with_context(|| format!("--admin {}: no address", self.admin))?;
        let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)
            .with_context(|| format!("cannot reach the admin port at {addr}"))?;
        s.set_read_timeout(Some(TIMEOUT))?;
        s.set_write_timeout(Some(TIMEOUT))?;
        let mut req = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.admin
        );
        if let Some(t) = &self.token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if method == "POST" {
            req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        s.write_all(req.as_bytes())?;
        let mut raw = Vec::new();
        s.take(MAX_ANSWER).read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .context("the admin port's answer has no header end")?;
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .context("the admin port's answer has no status")?;
        let chunked = head.lines().any(|l| {
            l.to_ascii_lowercase()
                .starts_with("transfer-encoding: chunked")
        });
        let body = if chunked {
            dechunk(body)?
        } else {
            body.to_owned()
        };
        let json: Value = serde_json::from_str(&body)
            .with_context(|| format!("HTTP {status}: not JSON: {}", body.trim()))?;
        if status != 200 {
            let why = json["error"].as_str().unwrap_or("(no message)");
            bail!("HTTP {status}: {why}");
        }
        Ok(json)
    }

    /// Every allocation (following `next_cursor`, bounded), optionally of one user.
    pub fn sessions(&self, user: Option<&str>) -> anyhow::Result<Vec<Value>> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut target = "/allocations?limit=1000".to_owned();
            if let Some(u) = user {
                target.push_str(&format!("&user={}", encode(u)));
            }
            if let Some(c) = &cursor {
                target.push_str(&format!("&cursor={}", encode(c)));
            }
            let page = self.call("GET", &target, "")?;
            if let Some(list) = page["allocations"].as_array() {
                all.extend(list.iter().cloned());
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return Ok(all),
            }
        }
        Ok(all)
    }

    /// Revokes by `selector` (`("user", name)`, `("id", id)`, `("client_ip", ip)`),
    /// refusing for `refuse_for` (`90s`, `1h`) when given.
    pub fn revoke(
        &self,
        selector: (&str, &str),
        refuse_for: Option<&str>,
    ) -> anyhow::Result<Value> {
        let mut body = format!("{}={}", selector.0, encode(selector.1));
        if let Some(f) = refuse_for {
            body.push_str(&format!("&for={}", encode(f)));
        }
        self.call("POST", "/allocations/revoke", &body)
    }
}

fn dechunk(body: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = body;
    for _ in 0..100_000 {
        let (size, after) = rest.split_once("\r\n").context("a broken chunk")?;
        let n = usize::from_str_radix(size.trim(), 16).context("a broken chunk size")?;
        if n == 0 {
            return Ok(out);
        }
        out.push_str(after.get(..n).context("a short chunk")?);
        rest = after.get(n + 2..).unwrap_or("");
    }
    bail!("too many chunks")
}

/// Percent-encodes for a query or form value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `5s`, `3m`, `2h`, `4d` (the largest whole unit).
fn age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// `512B`, `1.5K`, `20.0M`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["K", "M", "G", "T"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1}{}", UNITS[u])
}

/// The table `tern sessions` prints, with times relative to `now` (Unix seconds).
pub fn render_table(allocations: &[Value], now: i64) -> String {
    let header = [
        "ID",
        "AGE",
        "USER",
        "CLIENT",
        "TRANSPORT",
        "RELAYED",
        "PEERS",
        "TO PEERS",
        "TO CLIENT",
        "IDLE",
    ];
    let rows: Vec<[String; 10]> = allocations
        .iter()
        .map(|a| {
            let num = |k: &str| a[k].as_i64().unwrap_or(0);
            let text = |k: &str| a[k].as_str().unwrap_or("-").to_owned();
            let relayed = a["relayed"]
                .as_array()
                .map(|r| {
                    r.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            [
                text("id"),
                age(now - num("created_at")),
                text("username"),
                text("client"),
                text("transport"),
                relayed,
                num("permissions").to_string(),
                bytes(a["bytes_to_peers"].as_u64().unwrap_or(0)),
                bytes(a["bytes_to_client"].as_u64().unwrap_or(0)),
                age(now - num("last_activity_at")),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let cells: Vec<String> = cells.zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for r in &rows {
        line(&mut r.iter().map(String::as_str));
    }
    out
}

/// The current Unix second.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_age_user_client_relayed_peers_bytes_idle() {
        let a: Value = serde_json::json!({
            "id": "0-3-1", "username": "1700000000:alice", "name": "alice",
            "client": "127.0.0.1:5000", "transport": "udp", "family": "ipv4",
            "relayed": ["127.0.0.1:49152"], "created_at": 1000, "expires_at": 1600,
            "last_activity_at": 1110, "permissions": 2, "channels": 1,
            "packets_to_peers": 3, "bytes_to_peers": 3000, "packets_to_client": 1,
            "bytes_to_client": 100
        });
        let table = render_table(&[a], 1125);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("ID  "), "{table}");
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "0-3-1",
                "2m",
                "1700000000:alice",
                "127.0.0.1:5000",
                "udp",
                "127.0.0.1:49152",
                "2",
                "2.9K",
                "100B",
                "15s"
            ]
        );
        // Columns line up: each header starts where its cells do.
        let col = lines[0].find("USER").unwrap();
        assert_eq!(&lines[1][col..col + 5], "17000");
        assert_eq!(render_table(&[], 0).lines().count(), 1);
    }

    #[test]
    fn units_and_encoding() {
        assert_eq!(
            (age(59), age(60), age(7200), age(90_000)),
            ("59s".into(), "1m".into(), "2h".into(), "1d".into())
        );
        assert_eq!(bytes(3 << 20), "3.0M");
        assert_eq!(encode("1700000000:al ice"), "1700000000%3Aal%20ice");
        assert_eq!(
            dechunk("5\r\nhello\r\n3\r\n ok\r\n0\r\n\r\n").unwrap(),
            "hello ok"
        );
    }
}
