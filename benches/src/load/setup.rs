//! TURN transactions over stream connections, many at once on one epoll thread: open a
//! connection (TCP, or TCP and a full TLS handshake), then run a session's steps (Allocate
//! with the 401 round, CreatePermission, ChannelBind, Refresh, or the bare forwarder's hello)
//! one after the other, with at most `concurrency` sessions busy. Used to set up the stream
//! relay loads, to open and verify the held allocations of `--mode hold`, and to time the
//! handshakes.
//!
//! Each session's epoll token is its index in the slice it lives in, so the caller's loop can
//! keep the same epoll instance afterwards.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use tern_sys::{Epoll, Interest};
use tern_wire::stream::FrameKind;
use tern_wire::{attr, Method};

use super::bare;
use super::conn::{StreamConn, Wire};
use super::stun::{parse_response, request, Auth, Credentials, Response, Tids};
use super::tls::TlsClient;

/// One TURN request of a session's set-up.
#[derive(Clone, Copy, Debug)]
pub enum Step {
    /// Allocate (REQUESTED-TRANSPORT UDP), answering the 401 by signing.
    Allocate,
    /// CreatePermission for the peer.
    Permission(SocketAddrV4),
    /// ChannelBind the channel number to the peer.
    Bind(u16, SocketAddrV4),
    /// Refresh with this LIFETIME.
    Refresh(u32),
    /// The bare forwarder's hello naming this peer ([`Wire::Bare`] only), answered with the
    /// relay port.
    Hello(SocketAddrV4),
}

impl Step {
    /// The TURN method of the step's request; `None` for the bare hello.
    fn method(self) -> Option<Method> {
        match self {
            Step::Allocate => Some(Method::ALLOCATE),
            Step::Permission(_) => Some(Method::CREATE_PERMISSION),
            Step::Bind(..) => Some(Method::CHANNEL_BIND),
            Step::Refresh(_) => Some(Method::REFRESH),
            Step::Hello(_) => None,
        }
    }

    /// The step's name in failures.
    fn name(self) -> &'static str {
        self.method().map_or("hello", |m| m.name())
    }
}

/// Where a session's set-up is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    Busy,
}

/// A client and its TURN state: the connection, the credentials after the 401 round.
pub struct Session {
    /// The connection.
    pub conn: StreamConn,
    auth: Option<Auth>,
    /// The relayed address the Allocate returned (or the bare forwarder's relay address).
    pub relayed: Option<SocketAddrV4>,
    steps: Vec<Step>,
    next: usize,
    tid: [u8; 12],
    retries: u8,
    state: State,
    started: u64,
    deadline: u64,
}

/// The loopback source address of session `i`: 127.0.0.2 and up, 250 addresses in turn,
/// so that many connections never run out of ephemeral ports.
pub fn source_of(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + (i % 250) as u8)
}

/// The epoll interest of a connection: always readable, writable while bytes wait.
pub fn interest(conn: &StreamConn) -> Interest {
    if conn.wants_write() {
        Interest::READABLE | Interest::WRITABLE
    } else {
        Interest::READABLE
    }
}

/// What runs the sessions: the epoll instance, the server, TLS and the credentials.
pub struct Engine {
    /// The epoll instance every session is registered with (token = index).
    pub epoll: Epoll,
    server: SocketAddrV4,
    tls: Option<TlsClient>,
    creds: Credentials,
    tids: Tids,
    scratch: Vec<u8>,
    clock: Instant,
    /// A step not answered within this long fails its session.
    pub step_timeout: Duration,
    /// What the server speaks on new connections (TURN unless set).
    pub wire: Wire,
}

/// How a session's steps ended: the nanoseconds they took, or why they failed.
pub type Outcome = Result<u64, String>;

impl Engine {
    /// An engine for `server`, over TLS with `tls`.
    pub fn new(server: SocketAddrV4, tls: Option<TlsClient>, secret: &str) -> io::Result<Self> {
        Ok(Self {
            epoll: Epoll::new()?,
            server,
            tls,
            creds: Credentials::rest(secret, "load"),
            tids: Tids::new(),
            scratch: Vec::with_capacity(512),
            clock: Instant::now(),
            step_timeout: Duration::from_secs(5),
            wire: Wire::Turn,
        })
    }

    fn ns(&self) -> u64 {
        self.clock.elapsed().as_nanos() as u64
    }

    /// Runs `plan(i)` for every session `i`, at most `concurrency` at once. An empty slot
    /// is opened first (a new connection from [`source_of`]) when `open` is set, and skipped
    /// otherwise. Returns an outcome per slot (`None` for a skipped one). A failed session
    /// stays in its slot, its connection in whatever state it reached.
    pub fn run(
        &mut self,
        slots: &mut [Option<Session>],
        plan: &dyn Fn(usize) -> Vec<Step>,
        concurrency: usize,
        open: bool,
    ) -> io::Result<Vec<Option<Outcome>>> {
        let mut outcomes: Vec<Option<Outcome>> = (0..slots.len()).map(|_| None).collect();
        let mut busy: Vec<usize> = Vec::with_capacity(concurrency);
        let mut next = 0;
        let mut ready = Vec::with_capacity(256);
        loop {
            while busy.len() < concurrency.max(1) && next < slots.len() {
                let i = next;
                next += 1;
                if slots[i].is_none() {
                    if !open {
                        continue;
                    }
                    match self.open(i) {
                        Ok(s) => slots[i] = Some(s),
                        Err(e) => {
                            outcomes[i] = Some(Err(format!("connect: {e}")));
                            continue;
                        }
                    }
                }
                let s = slots[i].as_mut().expect("opened");
                s.steps = plan(i);
                s.next = 0;
                s.started = self.ns();
                s.state = State::Busy;
                if let Err(e) = self.send_step(s, i) {
                    s.state = State::Idle;
                    outcomes[i] = Some(Err(e.to_string()));
                    continue;
                }
                busy.push(i);
            }
            if busy.is_empty() {
                return Ok(outcomes);
            }
            self.epoll.wait(&mut ready, Duration::from_millis(5))?;
            for token in ready.iter().map(|r| r.token() as usize) {
                let Some(s) = slots.get_mut(token).and_then(Option::as_mut) else {
                    continue;
                };
                if s.state != State::Busy {
                    continue;
                }
                if let Some(o) = self.drive(s, token) {
                    s.state = State::Idle;
                    outcomes[token] = Some(o);
                }
            }
            let now = self.ns();
            busy.retain(|&i| {
                let s = slots[i].as_mut().expect("busy sessions exist");
                if s.state == State::Busy && now >= s.deadline {
                    s.state = State::Idle;
                    let what = if s.conn.handshaking() {
                        "TLS handshake"
                    } else {
                        s.steps[s.next].name()
                    };
                    outcomes[i] =
                        Some(Err(format!("{what}: no answer in {:?}", self.step_timeout)));
                }
                s.state == State::Busy
            });
        }
    }

    fn open(&mut self, i: usize) -> io::Result<Session> {
        let conn = StreamConn::connect(source_of(i), self.server, self.tls.as_ref(), self.wire)?;
        self.epoll.add(&conn, i as u64, Interest::READABLE)?;
        Ok(Session {
            conn,
            auth: None,
            relayed: None,
            steps: Vec::new(),
            next: 0,
            tid: [0; 12],
            retries: 0,
            state: State::Idle,
            started: 0,
            deadline: 0,
        })
    }

    /// Sends the session's current step.
    fn send_step(&mut self, s: &mut Session, token: usize) -> io::Result<()> {
        let step = s.steps[s.next];
        s.tid = self.tids.next_tid();
        s.deadline = self.ns() + self.step_timeout.as_nanos() as u64;
        match (step, step.method()) {
            (Step::Hello(peer), _) => s.conn.queue(&bare::hello(peer)),
            (_, Some(method)) => {
                self.write_request(step, method, s.tid, s.auth.as_ref());
                s.conn.queue(&self.scratch)
            }
            (_, None) => return Err(io::Error::other(format!("{step:?}: no request"))),
        };
        s.conn.flush()?;
        self.epoll.modify(&s.conn, token as u64, interest(&s.conn))
    }

    /// Writes the TURN request of `step` into the scratch buffer.
    fn write_request(&mut self, step: Step, method: Method, tid: [u8; 12], auth: Option<&Auth>) {
        request(&mut self.scratch, method, tid, auth, |w| match step {
            Step::Allocate => {
                w.attr(attr::REQUESTED_TRANSPORT, &[attr::TRANSPORT_UDP, 0, 0, 0]);
            }
            Step::Permission(peer) => {
                w.xor_address(attr::XOR_PEER_ADDRESS, SocketAddr::V4(peer));
            }
            Step::Bind(channel, peer) => {
                w.attr(
                    attr::CHANNEL_NUMBER,
                    &[(channel >> 8) as u8, channel as u8, 0, 0],
                );
                w.xor_address(attr::XOR_PEER_ADDRESS, SocketAddr::V4(peer));
            }
            Step::Refresh(lifetime) => {
                w.u32(attr::LIFETIME, lifetime);
            }
            // Not a TURN request: `send_step` writes the hello itself.
            Step::Hello(_) => {}
        });
    }

    /// Handles an epoll event of a busy session; `Some` once its steps ended.
    fn drive(&mut self, s: &mut Session, token: usize) -> Option<Outcome> {
        let mut responses: Vec<Response> = Vec::new();
        let mut on_message = |kind: FrameKind, m: &[u8]| {
            if kind == FrameKind::Stun {
                responses.extend(parse_response(m));
            }
        };
        let open = match s.conn.receive(&mut on_message).and_then(|open| {
            s.conn.flush()?;
            Ok(open)
        }) {
            Ok(open) => open,
            Err(e) => return Some(Err(format!("connection: {e}"))),
        };
        if let (Step::Hello(_), Some(port)) = (s.steps[s.next], s.conn.bare_port()) {
            s.relayed = Some(SocketAddrV4::new(*self.server.ip(), port));
            s.next += 1;
            if s.next == s.steps.len() {
                return Some(Ok(self.ns() - s.started));
            }
            if let Err(e) = self.send_step(s, token) {
                return Some(Err(e.to_string()));
            }
        }
        for r in &responses {
            if r.tid != s.tid {
                continue;
            }
            match self.on_response(s, r) {
                Ok(true) => {}
                Ok(false) => return Some(Ok(self.ns() - s.started)),
                Err(e) => return Some(Err(e)),
            }
            if let Err(e) = self.send_step(s, token) {
                return Some(Err(e.to_string()));
            }
        }
        if !open {
            return Some(Err("the server closed the connection".into()));
        }
        if let Err(e) = self.epoll.modify(&s.conn, token as u64, interest(&s.conn)) {
            return Some(Err(e.to_string()));
        }
        None
    }

    /// Advances on the answer to the current step: `Ok(true)` when another request is to be
    /// sent (the next step, or this one signed again), `Ok(false)` when the steps are done.
    fn on_response(&mut self, s: &mut Session, r: &Response) -> Result<bool, String> {
        let step = s.steps[s.next];
        if r.success {
            if let (Step::Allocate, Some(SocketAddr::V4(a))) = (step, r.relayed) {
                s.relayed = Some(a);
            }
            s.next += 1;
            s.retries = 0;
            return Ok(s.next < s.steps.len());
        }
        let auth_again = matches!(r.code, Some(401) | Some(438)) && s.retries < 2;
        if !auth_again {
            return Err(format!("{} failed: error {:?}", step.name(), r.code));
        }
        s.retries += 1;
        s.auth = Some(
            Auth::from_401(&self.creds, r)
                .ok_or_else(|| format!("{} {:?} without REALM/NONCE", step.name(), r.code))?,
        );
        Ok(true)
    }
}
