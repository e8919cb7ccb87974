//! How many heap allocations rustls makes per TLS application-data record on the server side,
//! with its buffered API (`ServerConnection`, what tern's workers use) and with its unbuffered
//! API (`UnbufferedServerConnection`), over TLS 1.3 and TLS 1.2, and how many heap bytes each
//! server connection keeps once the handshake and the traffic are over.
//!
//! `cargo run --release -p tern-bench --example tls_record_allocs [RECORDS] [SIZE]`
//!
//! Everything runs in memory on one thread: a rustls client (buffered) and the server under
//! test hand each other bytes, no sockets. A counting global allocator counts `alloc` and
//! `realloc` calls made while the server reads RECORDS records of SIZE plaintext bytes (each
//! record already in memory; the server decrypts it and hands the plaintext over) and while it
//! encrypts RECORDS records of SIZE bytes into a buffer of the caller.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use anyhow::{anyhow, bail, ensure, Context, Result};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, UnbufferedStatus};
use rustls::{version, SupportedProtocolVersion};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

/// The system allocator, counting calls and live bytes.
struct Counting;

/// `alloc` and `realloc` calls so far.
static CALLS: AtomicU64 = AtomicU64::new(0);
/// Bytes allocated and not freed.
static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: every method hands the request to `System` unchanged; the counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        CALLS.fetch_add(1, Relaxed);
        LIVE.fetch_add(layout.size() as i64, Relaxed);
        // SAFETY: the caller's contract for `alloc` is `System::alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Relaxed);
        // SAFETY: `ptr` came from `System` through this allocator, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        CALLS.fetch_add(1, Relaxed);
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Relaxed);
        // SAFETY: `ptr` came from `System` through this allocator, with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes of the buffers the unbuffered server reads from and encrypts into: a whole record
/// with its overhead fits.
const TLS_BUF: usize = 32 * 1024;

/// What one server connection cost.
struct Counts {
    /// Allocations per record read.
    read: f64,
    /// Allocations per record written.
    written: f64,
    /// Heap bytes the connection kept after the traffic (freed when it was dropped).
    kept: i64,
}

/// A self-signed certificate for `localhost`, a server and a client configuration trusting it,
/// offering only `version`, on rustls' *ring* provider as tern's.
fn configs(
    version: &'static SupportedProtocolVersion,
) -> Result<(Arc<ServerConfig>, Arc<ClientConfig>)> {
    let issued = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(issued.signing_key.serialize_der()));
    #[allow(deprecated)] // tern stays on ring; see tern_server::tls::Generation.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[version])?
        .with_no_client_auth()
        .with_single_cert(vec![issued.cert.der().clone()], key)?;
    let mut roots = RootCertStore::empty();
    roots.add(issued.cert.der().clone())?;
    let client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok((Arc::new(server), Arc::new(client)))
}

/// A client connection to `localhost`.
fn client(config: Arc<ClientConfig>) -> Result<ClientConnection> {
    Ok(ClientConnection::new(
        config,
        ServerName::try_from("localhost")?,
    )?)
}

/// Everything the client has to send, as bytes.
fn client_output(client: &mut ClientConnection) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut bytes)?;
    }
    Ok(bytes)
}

/// Hands `bytes` from the server to the client; the plaintext bytes the client got.
fn to_client(client: &mut ClientConnection, mut bytes: &[u8]) -> Result<usize> {
    let mut plaintext = 0;
    let mut sink = [0u8; 4096];
    while !bytes.is_empty() {
        client.read_tls(&mut bytes)?;
        let state = client.process_new_packets()?;
        let mut left = state.plaintext_bytes_to_read();
        while left > 0 {
            let n = client.reader().read(&mut sink[..left.min(4096)])?;
            left -= n;
            plaintext += n;
        }
    }
    Ok(plaintext)
}

/// `records` records of `size` bytes from the client, each as the bytes on the wire.
fn client_records(
    client: &mut ClientConnection,
    records: u64,
    size: usize,
) -> Result<Vec<Vec<u8>>> {
    let payload = vec![7u8; size];
    (0..records)
        .map(|_| {
            client.writer().write_all(&payload)?;
            client_output(client)
        })
        .collect()
}

/// Allocations per call of `f`, made `n` times.
fn per_call(n: u64, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let before = CALLS.load(Relaxed);
    for _ in 0..n {
        f()?;
    }
    Ok((CALLS.load(Relaxed) - before) as f64 / n as f64)
}

/// Heap bytes that dropping `value` frees.
fn kept<T>(value: T) -> i64 {
    let before = LIVE.load(Relaxed);
    drop(value);
    before - LIVE.load(Relaxed)
}

/// The buffered server: `read_tls`, `process_new_packets` and `reader().read` per record
/// read; `writer().write` and `write_tls` per record written.
fn buffered(
    version: &'static SupportedProtocolVersion,
    records: u64,
    size: usize,
) -> Result<Counts> {
    let (server_config, client_config) = configs(version)?;
    let mut client = client(client_config)?;
    let mut server = ServerConnection::new(server_config)?;
    while client.is_handshaking() || server.is_handshaking() {
        let bytes = client_output(&mut client)?;
        ensure!(
            !bytes.is_empty() || server.wants_write(),
            "the handshake stalled"
        );
        server.read_tls(&mut &bytes[..])?;
        server.process_new_packets()?;
        let mut reply = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut reply)?;
        }
        to_client(&mut client, &reply)?;
    }
    let incoming = client_records(&mut client, records, size)?;
    let mut plaintext = vec![0u8; size];
    let mut next = incoming.iter();
    let read = per_call(records, || {
        let record = next.next().ok_or_else(|| anyhow!("out of records"))?;
        server.read_tls(&mut &record[..])?;
        server.process_new_packets()?;
        server.reader().read_exact(&mut plaintext)?;
        Ok(())
    })?;
    let payload = vec![7u8; size];
    let mut wire = Vec::with_capacity(records as usize * (size + 64));
    let written = per_call(records, || {
        server.writer().write_all(&payload)?;
        server.write_tls(&mut wire)?;
        Ok(())
    })?;
    ensure!(
        to_client(&mut client, &wire)? == records as usize * size,
        "the client got less"
    );
    Ok(Counts {
        read,
        written,
        kept: kept(server),
    })
}

/// An unbuffered server with its incoming bytes (`incoming[..filled]`) and a buffer it encodes
/// and encrypts into.
struct Unbuffered {
    conn: UnbufferedServerConnection,
    incoming: Vec<u8>,
    filled: usize,
    outgoing: Vec<u8>,
}

impl Unbuffered {
    /// Appends `bytes` from the client.
    fn receive(&mut self, bytes: &[u8]) -> Result<()> {
        let end = self.filled + bytes.len();
        ensure!(end <= self.incoming.len(), "the incoming buffer is full");
        self.incoming[self.filled..end].copy_from_slice(bytes);
        self.filled = end;
        Ok(())
    }

    /// Drives the connection until it waits for the client (`BlockedHandshake`) or may send
    /// (`WriteTraffic`): handshake records go to `client`, plaintext is appended to `plaintext`.
    fn drive(&mut self, client: &mut ClientConnection, plaintext: &mut Vec<u8>) -> Result<()> {
        let mut encoded = 0;
        loop {
            let UnbufferedStatus { mut discard, state } = self
                .conn
                .process_tls_records(&mut self.incoming[..self.filled]);
            let settled = match state? {
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        let record = record?;
                        discard += record.discard;
                        plaintext.extend_from_slice(record.payload);
                    }
                    false
                }
                ConnectionState::EncodeTlsData(mut data) => {
                    encoded += data.encode(&mut self.outgoing[encoded..])?;
                    false
                }
                ConnectionState::TransmitTlsData(data) => {
                    to_client(client, &self.outgoing[..encoded])?;
                    encoded = 0;
                    data.done();
                    false
                }
                ConnectionState::BlockedHandshake | ConnectionState::WriteTraffic(_) => true,
                other => bail!("unexpected state {other:?}"),
            };
            self.incoming.copy_within(discard..self.filled, 0);
            self.filled -= discard;
            if settled {
                return Ok(());
            }
        }
    }

    /// Encrypts `payload` into the outgoing buffer; the bytes written.
    fn encrypt(&mut self, payload: &[u8]) -> Result<usize> {
        let status = self
            .conn
            .process_tls_records(&mut self.incoming[..self.filled]);
        let ConnectionState::WriteTraffic(mut traffic) = status.state? else {
            bail!("the connection may not send");
        };
        Ok(traffic.encrypt(payload, &mut self.outgoing)?)
    }
}

/// The unbuffered server: `process_tls_records` and `ReadTraffic::next_record` per record
/// read (the payload copied out, as a framer would); `WriteTraffic::encrypt` into a buffer of
/// the caller per record written.
fn unbuffered(
    version: &'static SupportedProtocolVersion,
    records: u64,
    size: usize,
) -> Result<Counts> {
    let (server_config, client_config) = configs(version)?;
    let mut client = client(client_config)?;
    let mut server = Unbuffered {
        conn: UnbufferedServerConnection::new(server_config)?,
        incoming: vec![0; TLS_BUF],
        filled: 0,
        outgoing: vec![0; TLS_BUF],
    };
    let mut plaintext = Vec::with_capacity(records as usize * size);
    for _ in 0..16 {
        let bytes = client_output(&mut client)?;
        server.receive(&bytes)?;
        server.drive(&mut client, &mut plaintext)?;
        if !client.is_handshaking() {
            break;
        }
    }
    ensure!(!client.is_handshaking(), "the handshake did not finish");
    // The client's Finished (and the server's tickets, over TLS 1.3) before the count.
    let bytes = client_output(&mut client)?;
    server.receive(&bytes)?;
    server.drive(&mut client, &mut plaintext)?;
    let incoming = client_records(&mut client, records, size)?;
    let mut next = incoming.iter();
    let read = per_call(records, || {
        let record = next.next().ok_or_else(|| anyhow!("out of records"))?;
        server.receive(record)?;
        server.drive(&mut client, &mut plaintext)
    })?;
    ensure!(plaintext.len() == records as usize * size, "plaintext lost");
    let payload = vec![7u8; size];
    let mut sent = Vec::with_capacity(records as usize * (size + 64));
    let written = per_call(records, || {
        let n = server.encrypt(&payload)?;
        sent.extend_from_slice(&server.outgoing[..n]);
        Ok(())
    })?;
    ensure!(
        to_client(&mut client, &sent)? == records as usize * size,
        "the client got less"
    );
    let Unbuffered { conn, .. } = server;
    Ok(Counts {
        read,
        written,
        kept: kept(conn),
    })
}

fn main() -> Result<()> {
    let mut argv = std::env::args().skip(1);
    let records: u64 = argv
        .next()
        .map_or(Ok(10_000), |a| a.parse())
        .context("RECORDS")?;
    let size: usize = argv.next().map_or(Ok(100), |a| a.parse()).context("SIZE")?;
    ensure!(
        records > 0 && (1..=16_384).contains(&size),
        "1 record or more, 1..=16384 bytes"
    );
    println!(
        "rustls server, {records} records of {size} B each way, allocations (alloc + realloc)"
    );
    println!(
        "| API | TLS | per record read | per record written | heap bytes kept after the traffic |"
    );
    println!("|---|---|---:|---:|---:|");
    for (name, version) in [("1.3", &version::TLS13), ("1.2", &version::TLS12)] {
        for (api, counts) in [
            (
                "buffered (ServerConnection)",
                buffered(version, records, size)?,
            ),
            (
                "unbuffered (UnbufferedServerConnection)",
                unbuffered(version, records, size)?,
            ),
        ] {
            println!(
                "| {api} | {name} | {:.3} | {:.3} | {} |",
                counts.read, counts.written, counts.kept
            );
        }
    }
    Ok(())
}
