//! The client side of TURN over UDP, written against the wire format with `tern-wire`: REST
//! credentials, the 401 round, signed requests and the few response fields the load tools
//! read. Works against any RFC 5766 / 8656 server (tern and coturn).

use std::io;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tern_proto::auth;
use tern_wire::{attr, Class, Message, MessageType, MessageWriter, Method, TransactionId};

/// REST API credentials (`use-auth-secret`): `username = <expiry>:<name>`, the password is
/// base64(HMAC-SHA1(secret, username)).
#[derive(Clone, Debug)]
pub struct Credentials {
    /// The username.
    pub username: String,
    /// The password.
    pub password: String,
}

impl Credentials {
    /// Credentials for `name` valid for a day from now.
    pub fn rest(secret: &str, name: &str) -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let username = format!("{}:{name}", wall + 86_400);
        let password = auth::rest_password(secret.as_bytes(), &username);
        Self { username, password }
    }
}

/// The fields of a response the load tools use.
#[derive(Debug, Default)]
pub struct Response {
    /// The transaction id.
    pub tid: [u8; 12],
    /// Success or error.
    pub success: bool,
    /// The error code of an error response.
    pub code: Option<u16>,
    /// REALM, when present.
    pub realm: Option<String>,
    /// NONCE, when present.
    pub nonce: Option<Vec<u8>>,
    /// XOR-RELAYED-ADDRESS, when present.
    pub relayed: Option<SocketAddr>,
}

/// Parses a STUN success or error response; `None` for anything else.
pub fn parse_response(buf: &[u8]) -> Option<Response> {
    let msg = Message::parse(buf).ok()?;
    let success = match msg.class() {
        Class::Success => true,
        Class::Error => false,
        _ => return None,
    };
    let tid = msg.transaction_id();
    let mut r = Response {
        tid: tid.0,
        success,
        ..Response::default()
    };
    if let Some(a) = msg.get(attr::ERROR_CODE) {
        r.code = attr::decode_error_code(a.value).ok().map(|(c, _)| c);
    }
    if let Some(a) = msg.get(attr::REALM) {
        r.realm = attr::decode_str(a.value, a.typ).ok().map(str::to_owned);
    }
    if let Some(a) = msg.get(attr::NONCE) {
        r.nonce = Some(a.value.to_vec());
    }
    if let Some(a) = msg.get(attr::XOR_RELAYED_ADDRESS) {
        r.relayed = attr::decode_xor_address(a.value, a.typ, &tid).ok();
    }
    Some(r)
}

/// The DATA of a Data indication, or `None`.
pub fn data_indication(buf: &[u8]) -> Option<&[u8]> {
    let msg = Message::parse(buf).ok()?;
    if msg.method() != Method::DATA || msg.class() != Class::Indication {
        return None;
    }
    msg.get(attr::DATA).map(|a| a.value)
}

/// Writes a Send indication carrying `data` to `peer` into `out`.
pub fn send_indication(out: &mut Vec<u8>, tid: [u8; 12], peer: SocketAddrV4, data: &[u8]) {
    MessageWriter::new(
        out,
        MessageType::new(Method::SEND, Class::Indication),
        TransactionId(tid),
    )
    .xor_address(attr::XOR_PEER_ADDRESS, SocketAddr::V4(peer))
    .attr(attr::DATA, data);
}

/// A source of transaction ids: a per-process seed and a counter.
pub struct Tids {
    seed: u64,
    n: u64,
}

impl Tids {
    /// Seeded from the clock and the process id.
    pub fn new() -> Self {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Self {
            seed: t ^ (u64::from(std::process::id()) << 32),
            n: 0,
        }
    }

    /// The next transaction id.
    pub fn next_tid(&mut self) -> [u8; 12] {
        self.n += 1;
        let mut t = [0u8; 12];
        t[..8].copy_from_slice(&self.seed.to_le_bytes());
        t[4..12].copy_from_slice(&(self.n ^ self.seed.rotate_left(17)).to_le_bytes());
        t
    }
}

impl Default for Tids {
    fn default() -> Self {
        Self::new()
    }
}

/// The state of the long-term credential mechanism after the 401 round.
#[derive(Clone, Debug)]
pub struct Auth {
    /// The username.
    pub username: String,
    /// The realm the server named.
    pub realm: String,
    /// The current nonce.
    pub nonce: Vec<u8>,
    /// MD5(username:realm:password).
    pub key: [u8; 16],
}

impl Auth {
    /// From a 401 response's REALM and NONCE.
    pub fn from_401(creds: &Credentials, r: &Response) -> Option<Self> {
        let realm = r.realm.clone()?;
        Some(Self {
            key: auth::long_term_key(&creds.username, &realm, &creds.password),
            username: creds.username.clone(),
            realm,
            nonce: r.nonce.clone()?,
        })
    }
}

/// Writes a request; signed (USERNAME, REALM, NONCE, MESSAGE-INTEGRITY) when `auth` is given.
pub fn request(
    out: &mut Vec<u8>,
    method: Method,
    tid: [u8; 12],
    auth: Option<&Auth>,
    extra: impl FnOnce(&mut MessageWriter),
) {
    let mut w = MessageWriter::new(
        out,
        MessageType::new(method, Class::Request),
        TransactionId(tid),
    );
    extra(&mut w);
    if let Some(a) = auth {
        w.attr(attr::USERNAME, a.username.as_bytes())
            .attr(attr::REALM, a.realm.as_bytes())
            .attr(attr::NONCE, &a.nonce)
            .message_integrity(&a.key);
    }
    w.fingerprint();
}

/// A blocking TURN client for setting up one allocation (used before the measured window).
pub struct TurnClient<'s> {
    sock: &'s UdpSocket,
    server: SocketAddrV4,
    creds: Credentials,
    /// Set after the 401 round.
    pub auth: Option<Auth>,
    tids: Tids,
    out: Vec<u8>,
    rx: Vec<u8>,
}

fn err(msg: String) -> io::Error {
    io::Error::other(msg)
}

impl<'s> TurnClient<'s> {
    /// A client on `sock` (non-blocking is fine) talking to `server`.
    pub fn new(sock: &'s UdpSocket, server: SocketAddrV4, creds: Credentials) -> Self {
        Self {
            sock,
            server,
            creds,
            auth: None,
            tids: Tids::new(),
            out: Vec::with_capacity(512),
            rx: vec![0; 2048],
        }
    }

    /// Sends a request and waits for its response (3 tries, 300 ms each), answering a 401 or
    /// a 438 once by (re)signing.
    pub fn transact(
        &mut self,
        method: Method,
        extra: &dyn Fn(&mut MessageWriter),
    ) -> io::Result<Response> {
        for _round in 0..3 {
            let tid = self.tids.next_tid();
            request(&mut self.out, method, tid, self.auth.as_ref(), |w| extra(w));
            let r = self.exchange(tid)?;
            if !r.success && matches!(r.code, Some(401) | Some(438)) {
                let fresh = Auth::from_401(&self.creds, &r).ok_or_else(|| {
                    err(format!(
                        "{} {:?} without REALM/NONCE",
                        method.name(),
                        r.code
                    ))
                })?;
                let retry = self.auth.is_none() || r.code == Some(438);
                self.auth = Some(fresh);
                if retry {
                    continue;
                }
            }
            return Ok(r);
        }
        Err(err(format!(
            "{}: authentication did not converge",
            method.name()
        )))
    }

    fn exchange(&mut self, tid: [u8; 12]) -> io::Result<Response> {
        for _try in 0..3 {
            self.sock.send_to(&self.out, self.server)?;
            let deadline = std::time::Instant::now() + Duration::from_millis(300);
            while std::time::Instant::now() < deadline {
                match self.sock.recv_from(&mut self.rx) {
                    Ok((n, _)) => {
                        if let Some(r) = parse_response(&self.rx[..n]) {
                            if r.tid == tid {
                                return Ok(r);
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_micros(200))
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Err(err(format!("no response from {}", self.server)))
    }

    fn expect_ok(
        &mut self,
        method: Method,
        extra: &dyn Fn(&mut MessageWriter),
    ) -> io::Result<Response> {
        let r = self.transact(method, extra)?;
        if !r.success {
            return Err(err(format!("{} failed: error {:?}", method.name(), r.code)));
        }
        Ok(r)
    }

    /// Allocate with REQUESTED-TRANSPORT UDP; returns the relayed address.
    pub fn allocate(&mut self) -> io::Result<SocketAddrV4> {
        let r = self.expect_ok(Method::ALLOCATE, &|w| {
            w.attr(attr::REQUESTED_TRANSPORT, &[attr::TRANSPORT_UDP, 0, 0, 0]);
        })?;
        match r.relayed {
            Some(SocketAddr::V4(a)) => Ok(a),
            other => Err(err(format!("allocate: relayed address {other:?}"))),
        }
    }

    /// CreatePermission for `peer`.
    pub fn create_permission(&mut self, peer: SocketAddrV4) -> io::Result<()> {
        self.expect_ok(Method::CREATE_PERMISSION, &|w| {
            w.xor_address(attr::XOR_PEER_ADDRESS, SocketAddr::V4(peer));
        })
        .map(drop)
    }

    /// ChannelBind `channel` to `peer`.
    pub fn channel_bind(&mut self, channel: u16, peer: SocketAddrV4) -> io::Result<()> {
        self.expect_ok(Method::CHANNEL_BIND, &|w| {
            w.attr(
                attr::CHANNEL_NUMBER,
                &[(channel >> 8) as u8, channel as u8, 0, 0],
            );
            w.xor_address(attr::XOR_PEER_ADDRESS, SocketAddr::V4(peer));
        })
        .map(drop)
    }

    /// Refresh with LIFETIME `secs` (0 releases the allocation).
    pub fn refresh(&mut self, secs: u32) -> io::Result<()> {
        self.expect_ok(Method::REFRESH, &|w| {
            w.u32(attr::LIFETIME, secs);
        })
        .map(drop)
    }
}
