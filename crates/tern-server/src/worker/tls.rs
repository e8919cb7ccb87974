//! The TLS side of a stream connection: the first byte tells TLS (a handshake record,
//! 0x16) from plain TURN on every TCP port, then a `rustls::ServerConnection` lives beside
//! the connection's socket and buffers, fed and drained without an async runtime.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use rustls::ServerConnection;

use crate::control::TlsFailure;
use crate::tls::{Accepting, CertStore};

use super::conn::Incoming;

/// The first byte of a TLS record carrying a handshake message (a ClientHello).
const HANDSHAKE_RECORD: u8 = 0x16;
/// Plaintext handed to rustls per write, so its own buffer stays small and the bounded
/// write queue stays the one bound.
const WRITE_CHUNK: usize = 16 * 1024;

/// Whether and how a connection speaks TLS.
pub(super) enum Mode {
    /// Plain TURN over TCP.
    Plain,
    /// Nothing read yet; the first byte chooses.
    Undecided(Arc<CertStore>),
    /// Reading the ClientHello.
    Accepting(Box<Accepting>),
    /// TLS, handshaking or established.
    Tls(Box<ServerConnection>),
}

impl std::fmt::Debug for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Plain => "Plain",
            Mode::Undecided(_) => "Undecided",
            Mode::Accepting(_) => "Accepting",
            Mode::Tls(_) => "Tls",
        })
    }
}

/// A TLS failure, carried through `io::Error` (kind `InvalidData`) to the worker.
#[derive(Debug)]
pub(super) struct TlsBroken {
    /// What rustls said.
    pub error: rustls::Error,
    /// Whether it happened during the handshake.
    pub handshaking: bool,
}

impl std::fmt::Display for TlsBroken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TLS: {}", self.error)
    }
}

impl std::error::Error for TlsBroken {}

fn broken(error: rustls::Error, handshaking: bool) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, TlsBroken { error, handshaking })
}

/// The TLS failure inside `e`, if it is one.
pub(super) fn tls_broken(e: &io::Error) -> Option<&TlsBroken> {
    e.get_ref()?.downcast_ref::<TlsBroken>()
}

/// The handshake failure label of a rustls error.
pub(super) fn failure(error: &rustls::Error) -> TlsFailure {
    use rustls::Error as E;
    match error {
        E::AlertReceived(_) => TlsFailure::Alert,
        E::InvalidCertificate(_) | E::NoCertificatesPresented => TlsFailure::BadCertificate,
        E::InvalidMessage(_)
        | E::PeerIncompatible(_)
        | E::PeerMisbehaved(_)
        | E::InappropriateMessage { .. }
        | E::InappropriateHandshakeMessage { .. } => TlsFailure::Protocol,
        _ => TlsFailure::Other,
    }
}

impl Mode {
    /// The mode of a new connection: undecided when TLS is configured.
    pub fn new(store: Option<Arc<CertStore>>) -> Self {
        store.map_or(Mode::Plain, Mode::Undecided)
    }

    /// Whether a TLS handshake is under way (the handshake timeout applies).
    pub fn handshaking(&self) -> bool {
        match self {
            Mode::Accepting(_) => true,
            Mode::Tls(c) => c.is_handshaking(),
            Mode::Plain | Mode::Undecided(_) => false,
        }
    }

    /// Whether the connection speaks TLS (decided by its first byte).
    pub fn is_tls(&self) -> bool {
        matches!(self, Mode::Accepting(_) | Mode::Tls(_))
    }

    /// Whether TLS records wait to be written.
    pub fn wants_write(&self) -> bool {
        matches!(self, Mode::Tls(c) if c.wants_write())
    }

    /// Reads from `incoming` into `buf`: plaintext for plain and established TLS
    /// connections. `Ok(0)` is the end of the stream; other counts are bytes taken from the
    /// connection, of which the plaintext (`*filled` grows by it) may be none yet.
    pub fn read(
        &mut self,
        incoming: &mut Incoming<'_>,
        buf: &mut [u8],
        filled: &mut usize,
    ) -> io::Result<usize> {
        if let Mode::Undecided(store) = self {
            let Some(first) = incoming.peek()? else {
                return Ok(0);
            };
            *self = if first == HANDSHAKE_RECORD {
                Mode::Accepting(Box::new(Accepting::new(store.current())))
            } else {
                Mode::Plain
            };
        }
        match self {
            Mode::Plain | Mode::Undecided(_) => {
                let n = incoming.read(&mut buf[*filled..])?;
                *filled += n;
                Ok(n)
            }
            Mode::Accepting(a) => {
                let n = a.read_tls(incoming)?;
                if n == 0 {
                    return Ok(0);
                }
                match a.accept() {
                    Ok(None) => Ok(n),
                    Ok(Some(mut conn)) => {
                        // The rest of what was read (early data is off) is processed here.
                        let result = conn.process_new_packets();
                        *self = Mode::Tls(Box::new(conn));
                        if let Err(e) = result {
                            return Err(self.fail(incoming.stream, e, true));
                        }
                        Ok(n)
                    }
                    Err(refused) => {
                        let mut alert = refused.alert;
                        let _ = alert.write_all(incoming.stream);
                        Err(broken(refused.error, true))
                    }
                }
            }
            Mode::Tls(c) => {
                // Plaintext rustls already holds goes first, so its buffer never fills.
                match c.reader().read(&mut buf[*filled..]) {
                    Ok(0) if *filled < buf.len() => return Ok(0), // close_notify
                    Ok(n) if n > 0 => {
                        *filled += n;
                        return Ok(n);
                    }
                    Ok(_) => return Ok(1), // The buffer is full; the frames make room.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                let n = c.read_tls(incoming)?;
                if n == 0 {
                    return Ok(0);
                }
                let handshaking = c.is_handshaking();
                if let Err(e) = c.process_new_packets() {
                    return Err(self.fail(incoming.stream, e, handshaking));
                }
                let Mode::Tls(c) = self else {
                    return Ok(n);
                };
                match c.reader().read(&mut buf[*filled..]) {
                    Ok(m) => *filled += m,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                // A close_notify reads as 0 next time; the bytes taken count as progress now.
                Ok(n)
            }
        }
    }

    /// Sends the alert rustls queued for `error`, best effort, and wraps the error.
    fn fail(
        &mut self,
        stream: &mut TcpStream,
        error: rustls::Error,
        handshaking: bool,
    ) -> io::Error {
        if let Mode::Tls(c) = self {
            for _ in 0..4 {
                if !c.wants_write() || c.write_tls(stream).is_err() {
                    break;
                }
            }
        }
        broken(error, handshaking)
    }

    /// Writes TLS records, and moves plaintext `out[*sent..]` into rustls as it drains, until
    /// everything is out, the socket is full or `rounds` writes were made.
    pub fn flush_tls(
        c: &mut ServerConnection,
        stream: &mut TcpStream,
        out: &[u8],
        sent: &mut usize,
        rounds: usize,
    ) -> io::Result<()> {
        for _ in 0..rounds {
            if c.wants_write() {
                match c.write_tls(stream) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            } else if *sent < out.len() {
                let end = (*sent + WRITE_CHUNK).min(out.len());
                let n = c.writer().write(&out[*sent..end])?;
                if n == 0 {
                    return Ok(());
                }
                *sent += n;
            } else {
                return Ok(());
            }
        }
        Ok(())
    }
}
