//! STUN transactions over the client's [`Link`]: retransmission over UDP (RFC 8489 §6.2.1),
//! one send and a wait over a stream (§6.2.2), response matching and validation, and the
//! long-term credential mechanism (RFC 8489 §9.2).
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use tern_wire::stream::StreamError;
use tern_wire::{
    attr, Class, Integrity, Message, MessageType, MessageWriter, Method, TransactionId,
};

use super::link::{Inbox as _, Link};

/// RFC 8489 §6.2.1: the first retransmission after 500 ms, each later one after twice the
/// previous wait.
const INITIAL_RTO: Duration = Duration::from_millis(500);
/// Most messages read while waiting for one answer (bounds a flood of strays).
const MAX_READS: usize = 256;
/// Most requests sent for one [`Session::request`]: the first, one with credentials, and
/// retries after 438 Stale Nonce.
const MAX_ATTEMPTS: usize = 4;

/// Why a transaction got no usable answer.
#[derive(Debug)]
pub(super) enum TxError {
    /// Nothing came back before the deadline.
    Timeout,
    /// The host answered ICMP port unreachable.
    Refused,
    /// An answer with our transaction id, but a wrong FINGERPRINT.
    BadFingerprint,
    /// A success answer whose MESSAGE-INTEGRITY does not match our key.
    BadIntegrity,
    /// The server closed or reset the stream.
    Closed,
    /// The server's stream broke a framing rule.
    Framing(StreamError),
    /// The socket failed.
    Io(io::Error),
}

impl From<io::Error> for TxError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            ErrorKind::ConnectionRefused => Self::Refused,
            // A stream the server reset or shut: on a write as on a read.
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
                Self::Closed
            }
            _ => Self::Io(e),
        }
    }
}

/// A fresh random transaction id.
pub(super) fn transaction_id() -> io::Result<TransactionId> {
    let mut t = [0u8; 12];
    getrandom::getrandom(&mut t).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(TransactionId(t))
}

/// The answer to one request.
pub(super) struct Answer {
    pub bytes: Vec<u8>,
    /// From the first transmission to the answer.
    pub rtt: Duration,
}

impl Answer {
    pub fn msg(&self) -> Message<'_> {
        Message::parse(&self.bytes).expect("transact keeps only messages that parse")
    }

    /// The ERROR-CODE, for an error response (code 0 if it has none that decodes).
    pub fn error(&self) -> Option<(u16, String)> {
        let msg = self.msg();
        if msg.class() != Class::Error {
            return None;
        }
        let code = msg
            .get(attr::ERROR_CODE)
            .and_then(|a| attr::decode_error_code(a.value).ok());
        Some(code.map_or((0, String::new()), |(c, r)| (c, r.to_owned())))
    }

    /// An address attribute, XOR-decoded.
    pub fn xor_address(&self, typ: u16) -> Option<SocketAddr> {
        let msg = self.msg();
        attr::decode_xor_address(msg.get(typ)?.value, typ, &msg.transaction_id()).ok()
    }

    pub fn text(&self, typ: u16) -> Option<String> {
        let msg = self.msg();
        attr::decode_str(msg.get(typ)?.value, typ)
            .ok()
            .map(str::to_owned)
    }
}

/// Sends `request` and waits for the answer carrying `tid` until `timeout` has passed in
/// all: over UDP retransmitting per RFC 8489 §6.2.1, over a stream sending once (§6.2.2: the
/// stream delivers it or fails).
pub(super) fn transact(
    link: &mut Link,
    request: &[u8],
    tid: TransactionId,
    timeout: Duration,
) -> Result<Answer, TxError> {
    let start = Instant::now();
    let deadline = start + timeout;
    let (mut rto, mut next_send) = (INITIAL_RTO, start);
    for _ in 0..MAX_READS {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if now >= next_send {
            link.send(request)?;
            next_send = if link.is_stream() {
                deadline
            } else {
                now + rto
            };
            rto *= 2;
        }
        let Some((bytes, _)) = link.recv_until(next_send.min(deadline))? else {
            continue;
        };
        let Ok(msg) = Message::parse(bytes) else {
            continue;
        };
        if msg.transaction_id() != tid || !matches!(msg.class(), Class::Success | Class::Error) {
            continue;
        }
        if msg.check_fingerprint() == Some(false) {
            return Err(TxError::BadFingerprint);
        }
        return Ok(Answer {
            bytes: bytes.to_vec(),
            rtt: start.elapsed(),
        });
    }
    Err(TxError::Timeout)
}

/// A long-term credential (RFC 8489 §9.2).
#[derive(Clone)]
pub(super) struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    /// TURN REST API credentials (coturn's `use-auth-secret`): the username is the expiry
    /// time and a name, the password base64(HMAC-SHA1(secret, username)).
    pub fn rest(secret: &str, ttl: Duration) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self::rest_at(secret, now.as_secs() + ttl.as_secs())
    }

    fn rest_at(secret: &str, expiry: u64) -> Self {
        let username = format!("{expiry}:probe");
        let mut mac =
            <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
        mac.update(username.as_bytes());
        let password =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        Self { username, password }
    }

    /// The long-term key MD5(username ":" realm ":" password).
    fn key(&self, realm: &str) -> [u8; 16] {
        let text = format!("{}:{}:{}", self.username, realm, self.password);
        Md5::digest(text.as_bytes()).into()
    }
}

/// What the server told us to authenticate with.
struct Auth {
    realm: String,
    nonce: String,
    key: [u8; 16],
}

/// One client's requests to the server: transactions plus the 401/438 dance.
pub(super) struct Session {
    pub link: Link,
    pub timeout: Duration,
    creds: Option<Credentials>,
    auth: Option<Auth>,
}

/// An answer, and whether the request that got it carried credentials.
pub(super) struct Reply {
    pub answer: Answer,
    pub with_credentials: bool,
}

impl Session {
    pub fn new(link: Link, timeout: Duration, creds: Option<Credentials>) -> Self {
        Self {
            link,
            timeout,
            creds,
            auth: None,
        }
    }

    /// Sends a `method` request with the attributes `build` writes, then credentials once
    /// the server asked for them, then FINGERPRINT. A 401 with REALM and NONCE is answered
    /// by one retry with credentials, a 438 Stale Nonce by a retry with the new nonce.
    pub fn request(
        &mut self,
        method: Method,
        build: &dyn Fn(&mut MessageWriter<'_>),
    ) -> Result<Reply, TxError> {
        let mut buf = Vec::with_capacity(256);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let tid = transaction_id()?;
            let mut w = MessageWriter::new(&mut buf, MessageType::new(method, Class::Request), tid);
            build(&mut w);
            if let (Some(a), Some(c)) = (&self.auth, &self.creds) {
                w.attr(attr::USERNAME, c.username.as_bytes());
                w.attr(attr::REALM, a.realm.as_bytes());
                w.attr(attr::NONCE, a.nonce.as_bytes());
                w.message_integrity(&a.key);
            }
            w.fingerprint();
            let answer = transact(&mut self.link, &buf, tid, self.timeout)?;
            let with_credentials = self.auth.is_some();
            let code = answer.error().map(|(c, _)| c);
            let retry = match code {
                Some(401) if !with_credentials => self.learn(&answer),
                Some(438) if with_credentials => self.learn(&answer),
                _ => false,
            };
            if retry && attempt < MAX_ATTEMPTS {
                continue;
            }
            if let (None, Some(a)) = (code, &self.auth) {
                if answer.msg().check_integrity(&a.key) == Integrity::Invalid {
                    return Err(TxError::BadIntegrity);
                }
            }
            return Ok(Reply {
                answer,
                with_credentials,
            });
        }
    }

    /// Takes REALM and NONCE from a 401 or 438; whether a retry can use them.
    fn learn(&mut self, answer: &Answer) -> bool {
        let (Some(creds), Some(nonce)) = (&self.creds, answer.text(attr::NONCE)) else {
            return false;
        };
        let realm = answer
            .text(attr::REALM)
            .or_else(|| self.auth.as_ref().map(|a| a.realm.clone()));
        let Some(realm) = realm else { return false };
        let key = creds.key(&realm);
        self.auth = Some(Auth { realm, nonce, key });
        true
    }

    /// The realm the server named, once it did.
    pub fn realm(&self) -> Option<&str> {
        self.auth.as_ref().map(|a| a.realm.as_str())
    }

    /// Sends an indication (no answer expected) with FINGERPRINT.
    pub fn indicate(
        &mut self,
        method: Method,
        build: &dyn Fn(&mut MessageWriter<'_>),
    ) -> io::Result<()> {
        let mut buf = Vec::with_capacity(256);
        let typ = MessageType::new(method, Class::Indication);
        let mut w = MessageWriter::new(&mut buf, typ, transaction_id()?);
        build(&mut w);
        w.fingerprint();
        self.link.send(&buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checked with Python's hmac/hashlib/base64, an independent implementation.
    #[test]
    fn rest_credentials() {
        let c = Credentials::rest_at("s3cret", 1_700_000_000);
        assert_eq!(c.username, "1700000000:probe");
        assert_eq!(c.password, "78RmFAnb6WbvR6VDso3uGX55Yk4=");
        assert_eq!(
            hex(&c.key("probe.test")),
            "4e22a6cf35c4608d31059363330b9b6b"
        );
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
