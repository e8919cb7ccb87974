//! Child processes: capture their output, bound their run time.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Most bytes kept per captured stream; the rest is dropped (a runaway log must not eat RAM).
const CAPTURE_LIMIT: usize = 1 << 20;

/// Interleaved stdout and stderr of a child, filled by reader threads.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// Starts threads copying the child's piped stdout and stderr into the capture.
    pub(crate) fn attach(child: &mut Child) -> (Capture, Vec<JoinHandle<()>>) {
        let capture = Capture::default();
        let threads = capture.attach_more(child);
        (capture, threads)
    }

    /// Starts threads copying another child's piped stdout and stderr into this capture,
    /// after what it holds (a restarted server's output follows the first run's).
    pub(crate) fn attach_more(&self, child: &mut Child) -> Vec<JoinHandle<()>> {
        let mut threads = Vec::new();
        if let Some(out) = child.stdout.take() {
            threads.push(self.pump(out));
        }
        if let Some(err) = child.stderr.take() {
            threads.push(self.pump(err));
        }
        threads
    }

    /// Appends `bytes` (a marker line between two runs).
    pub(crate) fn push(&self, bytes: &[u8]) {
        let mut buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let room = CAPTURE_LIMIT.saturating_sub(buf.len());
        buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn pump(&self, mut from: impl Read + Send + 'static) -> JoinHandle<()> {
        let buf = Arc::clone(&self.0);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = from.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let mut buf = buf.lock().unwrap_or_else(|e| e.into_inner());
                let room = CAPTURE_LIMIT.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..n.min(room)]);
            }
        })
    }

    /// Everything captured so far, lossily decoded.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

/// How a bounded run ended.
#[derive(Debug)]
pub struct Output {
    /// `None` if the run was killed at the deadline.
    pub status: Option<ExitStatus>,
    /// stdout and stderr, interleaved as they arrived.
    pub text: String,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl Output {
    /// True if the process exited by itself with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

/// Runs `cmd` to completion, killing it after `limit`. stdin is closed.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let (capture, threads) = Capture::attach(&mut child);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if start.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for t in threads {
        let _ = t.join();
    }
    Output {
        status,
        text: capture.text(),
        elapsed: start.elapsed(),
    }
}

/// Asserts that a `tern probe` run with credentials passed and relayed both ways: every step
/// from Allocate through ChannelData says `[ok]`. `what` names the run in the failure.
pub fn assert_probe_relayed(out: &Output, what: &str) {
    assert!(out.success(), "{what} failed:\n{}", out.text);
    for step in [
        "[ok] allocate",
        "[ok] send-indication",
        "[ok] data-indication",
        "[ok] channel-bind",
        "[ok] channel-data",
    ] {
        assert!(
            out.text.contains(step),
            "{what}: no `{step}` in:\n{}",
            out.text
        );
    }
}
