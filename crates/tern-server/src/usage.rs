//! Usage records: one JSON line per ended allocation, appended to the `usage-log` file.
//!
//! A worker never touches the file. It hands a [`UsageRecord`] to the writer thread over a
//! bounded channel with `try_send`; when the channel is full the record is dropped and
//! counted (`tern_usage_records_dropped_total{reason="queue_full"}`). The writer formats and
//! appends each record with one `write`, reopens the path when told to (SIGHUP) and when the
//! file it holds is no longer the one at the path (moved or removed, checked about once a
//! second), so logrotate works without `copytruncate`.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::net::IpAddr;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tern_proto::{EndReason, Traffic, TransportLabel};
use tracing::{info, warn};

/// Records waiting for the writer at most; more are dropped and counted.
pub const QUEUE: usize = 4096;
/// How often the writer looks at the path (moved or removed?) and at the reopen flag.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long the writer waits for a record before looking at the reopen flag again.
const WAKE_EVERY: Duration = Duration::from_millis(100);

/// What one ended allocation reports; formatted by [`UsageRecord::to_json`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    /// The username that authenticated it.
    pub username: String,
    /// The client's IP (behind a PROXY header, the one the header named).
    pub client_ip: IpAddr,
    /// The client transport.
    pub transport: TransportLabel,
    /// The relayed families it held last: `ipv4`, `ipv6` or `dual`.
    pub family: &'static str,
    /// When it was created, Unix seconds (wall clock).
    pub start: u64,
    /// How long it lived, seconds.
    pub duration_s: u64,
    /// Why it ended.
    pub reason: EndReason,
    /// What it relayed, and to how many distinct peers.
    pub traffic: Traffic,
}

/// The `<name>` of a TURN REST username `<expiry>:<name>`; `None` for any other username.
pub fn rest_name(username: &str) -> Option<&str> {
    let (_, name) = username.split_once(':')?;
    tern_proto::auth::rest_expiry(username).map(|_| name)
}

impl UsageRecord {
    /// The record as one line of JSON (no newline).
    pub fn to_json(&self) -> String {
        let t = &self.traffic;
        let mut s = String::with_capacity(256 + self.username.len());
        s.push_str("{\"username\":");
        json_string(&mut s, &self.username);
        s.push_str(",\"name\":");
        match rest_name(&self.username) {
            Some(name) => json_string(&mut s, name),
            None => s.push_str("null"),
        }
        // Labels and numbers need no escaping.
        let _ = write!(
            s,
            ",\"client_ip\":\"{}\",\"transport\":\"{}\",\"family\":\"{}\",\"start\":{},\
             \"duration_s\":{},\"reason\":\"{}\",\"packets_to_peers\":{},\"bytes_to_peers\":{},\
             \"packets_to_client\":{},\"bytes_to_client\":{},\"peers\":{},\"relayed\":{}}}",
            self.client_ip,
            self.transport.label(),
            self.family,
            self.start,
            self.duration_s,
            self.reason.label(),
            t.packets_to_peers,
            t.bytes_to_peers,
            t.packets_to_client,
            t.bytes_to_client,
            t.peers,
            t.relayed(),
        );
        s
    }
}

/// Appends `v` as a JSON string: quotes, backslashes, control characters and DEL escaped.
/// Shared with the CLI's JSON output (`tern credentials`).
pub fn json_string(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Counts of the usage log, for metrics.
#[derive(Debug, Default)]
pub struct UsageStats {
    written: AtomicU64,
    queue_full: AtomicU64,
    write_errors: AtomicU64,
}

/// [`UsageStats`] read at one time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageCounts {
    /// Records appended to the file.
    pub written: u64,
    /// Records dropped because the writer's queue was full.
    pub queue_full: u64,
    /// Records lost to a failed write (or a file that could not be reopened).
    pub write_errors: u64,
}

impl UsageStats {
    /// The counts now.
    pub fn counts(&self) -> UsageCounts {
        UsageCounts {
            written: self.written.load(Ordering::Relaxed),
            queue_full: self.queue_full.load(Ordering::Relaxed),
            write_errors: self.write_errors.load(Ordering::Relaxed),
        }
    }
}

/// A worker's end: hands records to the writer, never blocking.
#[derive(Debug, Clone)]
pub(crate) struct UsageSink {
    tx: Option<SyncSender<UsageRecord>>,
    stats: Arc<UsageStats>,
}

impl UsageSink {
    /// Whether records are wanted at all (`usage-log` is set).
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues `record` for the writer, or drops and counts it when the queue is full.
    pub fn submit(&self, record: UsageRecord) {
        let Some(tx) = &self.tx else {
            return;
        };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(record) {
            self.stats.queue_full.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The writer thread, and the flag that makes it reopen the file.
#[derive(Debug)]
pub(crate) struct UsageWriter {
    reopen: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl UsageWriter {
    /// Asks the writer to reopen the path (SIGHUP); it does within about 100 ms.
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Relaxed);
    }

    /// Waits for the writer to write what is queued and stop; call after every sink is
    /// gone (the workers stopped).
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

/// Opens `path` for appending (created with mode 0640: the records name users and
/// addresses).
fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// Device and inode of a file.
fn identity(m: &std::fs::Metadata) -> (u64, u64) {
    (m.dev(), m.ino())
}

/// Starts the writer for `path`, if one is given; the sink goes to every worker. A file
/// that cannot be opened fails here, naming `usage-log` and the path.
pub(crate) fn start(
    path: Option<&Path>,
    stats: Arc<UsageStats>,
) -> io::Result<(UsageSink, Option<UsageWriter>)> {
    let Some(path) = path else {
        return Ok((UsageSink { tx: None, stats }, None));
    };
    let file = open(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("usage-log: cannot open {}: {e}", path.display()),
        )
    })?;
    let (tx, rx) = sync_channel(QUEUE);
    let reopen = Arc::new(AtomicBool::new(false));
    let mut writer = Writer {
        path: path.to_owned(),
        id: identity(&file.metadata()?),
        file,
        stats: stats.clone(),
        failing: false,
    };
    let flag = reopen.clone();
    let thread = std::thread::Builder::new()
        .name("tern-usage-log".into())
        .spawn(move || writer.run(&rx, &flag))?;
    info!(file = %path.display(), "usage records appended to the usage log");
    Ok((
        UsageSink {
            tx: Some(tx),
            stats,
        },
        Some(UsageWriter { reopen, thread }),
    ))
}

/// The writer thread's state.
struct Writer {
    path: PathBuf,
    file: File,
    /// Device and inode of `file`.
    id: (u64, u64),
    stats: Arc<UsageStats>,
    /// A failure was logged and nothing has succeeded since: log no more.
    failing: bool,
}

impl Writer {
    fn run(&mut self, rx: &Receiver<UsageRecord>, reopen: &AtomicBool) {
        let mut checked = Instant::now();
        loop {
            let next = rx.recv_timeout(WAKE_EVERY);
            if reopen.swap(false, Ordering::Relaxed) {
                self.reopen("SIGHUP");
                checked = Instant::now();
            } else if checked.elapsed() >= CHECK_EVERY {
                if self.moved() {
                    self.reopen("the file was moved or removed");
                }
                checked = Instant::now();
            }
            match next {
                Ok(record) => self.write(&record),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let _ = self.file.flush();
    }

    /// Whether the path no longer names the open file.
    fn moved(&self) -> bool {
        match std::fs::metadata(&self.path) {
            Ok(m) => identity(&m) != self.id,
            Err(_) => true,
        }
    }

    fn reopen(&mut self, why: &str) {
        match open(&self.path).and_then(|f| Ok((f.metadata()?, f))) {
            Ok((m, file)) => {
                self.file = file;
                self.id = identity(&m);
                self.failing = false;
                info!(file = %self.path.display(), why, "usage log reopened");
            }
            Err(e) => self.fail(&format!("cannot reopen: {e}")),
        }
    }

    fn write(&mut self, record: &UsageRecord) {
        let mut line = record.to_json();
        line.push('\n');
        match self.file.write_all(line.as_bytes()) {
            Ok(()) => {
                self.stats.written.fetch_add(1, Ordering::Relaxed);
                self.failing = false;
            }
            Err(e) => {
                self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                self.fail(&format!("cannot write: {e}"));
            }
        }
    }

    /// Logs a failure once until something succeeds again.
    fn fail(&mut self, what: &str) {
        if !self.failing {
            warn!(file = %self.path.display(), "usage-log: {what}; records are counted in tern_usage_records_dropped_total until it works again");
            self.failing = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(username: &str) -> UsageRecord {
        UsageRecord {
            username: username.to_owned(),
            client_ip: "192.0.2.1".parse().unwrap(),
            transport: TransportLabel::Udp,
            family: "ipv4",
            start: 1_700_000_000,
            duration_s: 42,
            reason: EndReason::Deleted,
            traffic: Traffic {
                packets_to_peers: 3,
                bytes_to_peers: 300,
                packets_to_client: 0,
                bytes_to_client: 0,
                peers: 1,
            },
        }
    }

    #[test]
    fn a_record_is_one_line_of_json() {
        assert_eq!(
            record("1700003600:alice").to_json(),
            r#"{"username":"1700003600:alice","name":"alice","client_ip":"192.0.2.1","transport":"udp","family":"ipv4","start":1700000000,"duration_s":42,"reason":"deleted","packets_to_peers":3,"bytes_to_peers":300,"packets_to_client":0,"bytes_to_client":0,"peers":1,"relayed":true}"#
        );
        let idle = UsageRecord {
            traffic: Traffic::default(),
            client_ip: "2001:db8::1".parse().unwrap(),
            ..record("bob")
        };
        let json = idle.to_json();
        assert!(
            json.contains(r#""name":null,"client_ip":"2001:db8::1""#),
            "{json}"
        );
        assert!(json.ends_with(r#""peers":0,"relayed":false}"#), "{json}");
    }

    #[test]
    fn usernames_are_escaped() {
        let json = record("1:a\"b\\c\nd\u{1}e\u{7f}é").to_json();
        assert!(
            json.starts_with(
                r#"{"username":"1:a\"b\\c\nd\u0001e\u007fé","name":"a\"b\\c\nd\u0001e\u007fé","#
            ),
            "{json}"
        );
        assert!(!json.contains('\n'));
        let tab = record("x\ty\r").to_json();
        assert!(
            tab.starts_with(r#"{"username":"x\ty\r","name":null"#),
            "{tab}"
        );
    }

    #[test]
    fn rest_names() {
        assert_eq!(rest_name("1700000000:alice"), Some("alice"));
        assert_eq!(rest_name("1700000000:a:b"), Some("a:b"));
        assert_eq!(rest_name("1700000000"), None);
        assert_eq!(rest_name("alice"), None);
        assert_eq!(rest_name("alice:bob"), None);
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let stats = Arc::new(UsageStats::default());
        let (tx, rx) = sync_channel(1);
        let sink = UsageSink {
            tx: Some(tx),
            stats: stats.clone(),
        };
        sink.submit(record("a"));
        sink.submit(record("b"));
        assert_eq!(stats.counts().queue_full, 1);
        assert_eq!(rx.try_recv().unwrap().username, "a");
    }

    #[test]
    fn the_writer_appends_and_follows_a_moved_file() {
        let dir = std::env::temp_dir().join(format!("tern-usage-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("usage.log");
        let stats = Arc::new(UsageStats::default());
        let (sink, writer) = start(Some(&path), stats.clone()).unwrap();
        let writer = writer.unwrap();
        sink.submit(record("first"));
        let wait = |p: &Path, lines: usize| {
            let t = Instant::now();
            loop {
                let n = std::fs::read_to_string(p).map_or(0, |s| s.lines().count());
                if n >= lines {
                    return n;
                }
                assert!(
                    t.elapsed() < Duration::from_secs(3),
                    "{} lines in {}",
                    n,
                    p.display()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        assert_eq!(wait(&path, 1), 1);
        std::fs::rename(&path, dir.join("usage.log.1")).unwrap();
        writer.reopen();
        let t = Instant::now();
        while !path.exists() {
            assert!(t.elapsed() < Duration::from_secs(3), "no new file");
            std::thread::sleep(Duration::from_millis(10));
        }
        sink.submit(record("second"));
        assert_eq!(wait(&path, 1), 1);
        assert!(std::fs::read_to_string(&path).unwrap().contains("second"));
        drop(sink);
        writer.join();
        assert_eq!(stats.counts().written, 2);
        let old = std::fs::read_to_string(dir.join("usage.log.1")).unwrap();
        assert_eq!(old.lines().count(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unopenable_path_names_the_key() {
        let e = start(
            Some(Path::new("/nonexistent-dir/usage.log")),
            Arc::default(),
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("usage-log") && text.contains("/nonexistent-dir/usage.log"));
    }
}
