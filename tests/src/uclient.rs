//! What the suites that drive coturn's `turnutils_uclient` share: the summary it prints and
//! `turnutils_peer`, the echo peer it talks to.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::process::Output;

/// The summary turnutils_uclient prints at the end of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Messages sent, over all clients.
    pub sent: u64,
    /// Messages echoed back.
    pub received: u64,
    /// Messages lost.
    pub lost: u64,
    /// Seconds the run took, as uclient counts them.
    pub transmit_time: u64,
}

impl Summary {
    /// Parses the last summary lines, e.g.
    /// `start_mclient: tot_send_msgs=100, tot_recv_msgs=100`,
    /// `Total transmit time is 5`, `Total lost packets 0 (0.000000%), total send dropped 0 (…)`.
    /// Panics, with the output, when one is missing.
    pub fn parse(out: &Output) -> Summary {
        let text = &out.text;
        let fail = |what: &str| -> ! {
            panic!(
                "no {what} in turnutils_uclient output ({:?}):\n{text}",
                out.status
            )
        };
        let number_after = |line: &str, key: &str| -> Option<u64> {
            let rest = &line[line.find(key)? + key.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        };
        let totals = text
            .lines()
            .rev()
            .find(|l| l.contains("tot_send_msgs=") && !l.contains("msz="))
            .unwrap_or_else(|| fail("final message totals"));
        let lost_line = text
            .lines()
            .rev()
            .find(|l| l.contains("Total lost packets"))
            .unwrap_or_else(|| fail("lost packets"));
        let time_line = text
            .lines()
            .rev()
            .find(|l| l.contains("Total transmit time is"))
            .unwrap_or_else(|| fail("transmit time"));
        Summary {
            sent: number_after(totals, "tot_send_msgs=").unwrap_or_else(|| fail("tot_send_msgs")),
            received: number_after(totals, "tot_recv_msgs=")
                .unwrap_or_else(|| fail("tot_recv_msgs")),
            lost: number_after(lost_line, "Total lost packets ")
                .unwrap_or_else(|| fail("lost count")),
            transmit_time: number_after(time_line, "Total transmit time is ")
                .unwrap_or_else(|| fail("transmit time")),
        }
    }
}

/// `turnutils_peer`, a UDP echo peer on a loopback address (127.0.0.1 or ::1); killed on
/// drop.
pub struct EchoPeer(Child);

impl EchoPeer {
    /// Starts `bin` listening on `ip:port` and waits until it echoes.
    pub fn start(bin: &Path, ip: IpAddr, port: u16) -> EchoPeer {
        let child = Command::new(bin)
            .args(["-L", &ip.to_string(), "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn turnutils_peer");
        let peer = EchoPeer(child);
        wait_echo(SocketAddr::new(ip, port));
        peer
    }
}

impl Drop for EchoPeer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (up to 5 s) until the echo peer on `addr` echoes a probe.
fn wait_echo(addr: SocketAddr) {
    let local: SocketAddr = match addr.ip() {
        IpAddr::V4(_) => "127.0.0.1:0".parse().expect("address"),
        IpAddr::V6(_) => "[::1]:0".parse().expect("address"),
    };
    let sock = UdpSocket::bind(local).expect("bind probe socket");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("set timeout");
    let mut buf = [0u8; 64];
    for _ in 0..50 {
        let _ = sock.send_to(b"probe", addr);
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            if &buf[..n] == b"probe" {
                return;
            }
        }
    }
    panic!("turnutils_peer on {addr} does not echo");
}
