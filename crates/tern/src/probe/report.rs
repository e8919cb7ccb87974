//! The probe's output: one `[ok]`, `[warn]` or `[FAIL]` line per step, and a plain-words
//! diagnosis under the first failure.
use std::fmt::Display;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use super::client::TxError;
use super::target::Transport;

/// Prints steps; remembers whether one failed so only the first gets a diagnosis.
pub(super) struct Report {
    server: SocketAddr,
    transport: Transport,
    timeout: Duration,
    /// Credentials came from --secret.
    rest: bool,
    failed: bool,
}

impl Report {
    /// A report on `server` reached over `transport`, each answer awaited for `timeout`.
    pub fn new(server: SocketAddr, transport: Transport, timeout: Duration, rest: bool) -> Self {
        Self {
            server,
            transport,
            timeout,
            rest,
            failed: false,
        }
    }

    /// A step that passed.
    pub fn ok(&self, step: &str, what: impl Display) {
        println!("[ok] {step}: {what}");
    }

    /// A step that passed with something to fix.
    pub fn warn(&self, step: &str, what: impl Display) {
        println!("[warn] {step}: {what}");
    }

    /// A step that failed; the diagnosis is printed for the first failure only.
    pub fn fail(&mut self, step: &str, what: impl Display, diagnosis: impl Display) {
        println!("[FAIL] {step}: {what}");
        if !self.failed {
            println!("       diagnosis: {diagnosis}");
        }
        self.failed = true;
    }

    /// Reports a transaction that got no usable answer, or a link that failed.
    pub fn no_answer(&mut self, step: &str, e: TxError) {
        let (s, secs, port) = (self.server, self.timeout.as_secs_f64(), self.server.port());
        let proto = self.transport.label();
        let open = format!("is the server running, is UDP {port} open/forwarded?");
        match e {
            TxError::Timeout if step == "binding" && self.transport.is_stream() => self.fail(
                step,
                "no answer",
                format!(
                    "{s} accepted the {proto} connection but did not answer a Binding request \
                     within {secs} s: is this port a TURN server's{}? A listener expecting the \
                     PROXY protocol also waits silently for its header",
                    if self.transport == Transport::Tcp {
                        " plain TCP port, or does it expect TLS (--transport tls)"
                    } else {
                        " TLS port"
                    }
                ),
            ),
            TxError::Timeout if step == "binding" => self.fail(
                step,
                "no answer",
                format!("no answer from {s} over UDP within {secs} s: {open}"),
            ),
            TxError::Timeout => self.fail(
                step,
                "no answer",
                format!(
                    "{s} answered Binding but not this request within {secs} s: is it a TURN \
                     server with relaying enabled, and is the request too large for the path?"
                ),
            ),
            TxError::Refused => self.fail(
                step,
                "ICMP port unreachable",
                format!("no answer from {s} over UDP: the host says nothing listens there: {open}"),
            ),
            TxError::BadFingerprint => self.fail(
                step,
                "the answer's FINGERPRINT is wrong",
                "something between you and the server alters STUN messages (an ALG or a broken proxy)",
            ),
            TxError::BadIntegrity => self.fail(
                step,
                "the answer's MESSAGE-INTEGRITY does not match our key",
                "the server signed with another key: is the realm or the password what the server uses?",
            ),
            TxError::Closed => self.fail(
                step,
                format!("the server closed the {proto} connection"),
                format!(
                    "{s} closed the connection instead of answering: does it take TURN over \
                     {proto} on this port, or did it refuse what was sent (a message too large, \
                     a PROXY protocol header expected)?"
                ),
            ),
            TxError::Framing(e) => self.fail(
                step,
                format!("the server's {proto} stream is not STUN/ChannelData framing: {e}"),
                "something other than a TURN server answers on this port, or the stream was \
                 corrupted on the way",
            ),
            TxError::Io(e) => self.fail(step, format!("socket error: {e}"), "a local socket failed"),
        }
    }

    /// Reports an error response to a request, diagnosing what the code means at `step`.
    pub fn error_response(&mut self, step: &str, code: u16, reason: &str, with_creds: bool) {
        let what = format!("the server answered {code} {reason} ({})", meaning(code));
        let peer_step = step == "create-permission" || step == "channel-bind";
        let other;
        let diagnosis = match code {
            401 if with_creds && self.rest => {
                "the server rejected the credentials: is the secret the server's \
                 static-auth-secret, and are the clocks in sync?"
            }
            401 if with_creds => {
                "the server rejected the credentials: are the username and password right for \
                 the server's realm?"
            }
            401 => "the server asks for credentials but names no realm and nonce to use",
            403 if peer_step => {
                "the server refuses this peer address (peer filtering: loopback/private peers \
                 need allow-loopback-peers or allowed-peer-ip)"
            }
            437 => "an allocation from this address and port already exists: run again",
            486 => "this user holds too many allocations (user-quota/total-quota)",
            508 => "the relay port pool is exhausted (min-port/max-port, or too many users)",
            _ => {
                other = format!("the server refused the request: {}", meaning(code));
                &other
            }
        };
        self.fail(step, what, diagnosis);
    }

    /// 0 when every step passed, 1 otherwise.
    pub fn exit(&self) -> ExitCode {
        if self.failed {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        }
    }
}

/// What an ERROR-CODE means (RFC 8489 §14.8, RFC 8656 §19).
fn meaning(code: u16) -> &'static str {
    match code {
        300 => "Try Alternate: the server redirects to another one",
        400 => "Bad Request: the server found the request malformed",
        401 => "Unauthenticated: credentials missing or wrong",
        403 => "Forbidden: the request is not allowed",
        420 => "Unknown Attribute: the server does not understand an attribute",
        437 => "Allocation Mismatch: the allocation is missing or already exists",
        438 => "Stale Nonce: the nonce expired",
        440 => "Address Family not Supported",
        441 => "Wrong Credentials: not the user that created the allocation",
        442 => "Unsupported Transport Protocol",
        443 => "Peer Address Family Mismatch",
        486 => "Allocation Quota Reached",
        500 => "Server Error",
        508 => "Insufficient Capacity: no relay port free",
        _ => "an error code this probe does not know",
    }
}
