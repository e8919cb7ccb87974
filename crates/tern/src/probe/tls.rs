//! The TLS step of `tern probe --transport tls`: a rustls client (the *ring* provider, TLS 1.2
//! and 1.3, ALPN `stun.turn` offered per RFC 7443) verifies the server's certificate against
//! `--ca` or Mozilla's roots (`webpki-roots`), and reports the session and the certificate,
//! or what is wrong with them ([`super::tls_diagnosis`]).
//!
//! The verifier is rustls' own `WebPkiServerVerifier`, wrapped only to keep a copy of the
//! certificates the server presented, so a refusal can be explained with their names, issuers
//! and dates.
use std::io::{self, ErrorKind};
use std::net::{IpAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, StreamOwned};

use super::link::{is_timeout, TlsStream};
use super::report::Report;
use super::tls_diagnosis::{days, explain, utc, CertFacts, Context};

/// The ALPN protocol of TURN over TLS (RFC 7443).
const ALPN_STUN_TURN: &[u8] = b"stun.turn";
/// Under this many days left, the expiry is a warning.
const EXPIRY_WARNING_DAYS: i64 = 14;
const STEP: &str = "tls";

/// What the TLS step checks against.
pub(super) struct TlsOptions<'a> {
    /// Sent as SNI (unless an IP address) and checked against the certificate.
    pub name: &'a str,
    /// Trust these CAs instead of Mozilla's roots.
    pub ca: Option<&'a Path>,
}

/// A client ready to connect: made before the TCP connection, so that a bad `--ca` or name
/// is an argument error rather than a failed step.
pub(super) struct Client {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    ip: Option<IpAddr>,
    name: String,
    /// `--ca` and the subjects of its certificates.
    ca: Option<(String, Vec<String>)>,
    presented: Arc<Mutex<Vec<CertificateDer<'static>>>>,
}

/// Builds the client for `opts`.
pub(super) fn client(opts: &TlsOptions<'_>) -> anyhow::Result<Client> {
    let mut roots = RootCertStore::empty();
    let ca = match opts.ca {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .with_context(|| {
                    format!("--ca {}: cannot read PEM certificates", path.display())
                })?;
            if certs.is_empty() {
                bail!("--ca {}: no CERTIFICATE in the file", path.display());
            }
            let subjects = certs
                .iter()
                .map(|c| {
                    CertFacts::read(c)
                        .map_or_else(|| "?".to_owned(), |f| format!("\"{}\"", f.subject))
                })
                .collect();
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                bail!(
                    "--ca {}: no usable CA certificate in the file",
                    path.display()
                );
            }
            Some((path.display().to_string(), subjects))
        }
        None => {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            None
        }
    };
    let provider = Arc::new(ring_provider());
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("building the certificate verifier")?;
    let presented = Arc::new(Mutex::new(Vec::new()));
    let verifier = Recording {
        inner,
        presented: presented.clone(),
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_STUN_TURN.to_vec()];
    let server_name = ServerName::try_from(opts.name.to_owned())
        .with_context(|| format!("{}: not a DNS name or IP address to check", opts.name))?;
    let ip = match &server_name {
        ServerName::IpAddress(ip) => Some(IpAddr::from(*ip)),
        _ => None,
    };
    Ok(Client {
        config: Arc::new(config),
        server_name,
        ip,
        name: opts.name.to_owned(),
        ca,
        presented,
    })
}

/// rustls' verifier, keeping a copy of what it was asked to verify.
#[derive(Debug)]
struct Recording {
    inner: Arc<WebPkiServerVerifier>,
    presented: Arc<Mutex<Vec<CertificateDer<'static>>>>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = std::iter::once(end_entity).chain(intermediates);
        *self.presented.lock().unwrap_or_else(|e| e.into_inner()) =
            chain.map(|c| c.clone().into_owned()).collect();
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Runs the handshake on `tcp` within `timeout`; reports the session and certificate, or the
/// failure with its diagnosis (`None`).
pub(super) fn handshake(
    mut tcp: TcpStream,
    client: &Client,
    timeout: std::time::Duration,
    report: &mut Report,
) -> Option<TlsStream> {
    let port = tcp.peer_addr().map_or(0, |a| a.port());
    let mut conn = match ClientConnection::new(client.config.clone(), client.server_name.clone()) {
        Ok(conn) => conn,
        Err(e) => {
            report.fail(STEP, format!("cannot start TLS: {e}"), "a local TLS error");
            return None;
        }
    };
    let start = Instant::now();
    let deadline = start + timeout;
    while conn.is_handshaking() {
        let left = deadline.saturating_duration_since(Instant::now());
        let step = tcp
            .set_read_timeout(Some(left.max(std::time::Duration::from_millis(1))))
            .and_then(|()| conn.complete_io(&mut tcp));
        if let Err(e) = step {
            failed(&e, client, port, timeout, report);
            return None;
        }
        if Instant::now() >= deadline && conn.is_handshaking() {
            failed(&ErrorKind::TimedOut.into(), client, port, timeout, report);
            return None;
        }
    }
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    let version = conn
        .protocol_version()
        .map_or("TLS ?".to_owned(), |v| match v {
            rustls::ProtocolVersion::TLSv1_3 => "TLS 1.3".to_owned(),
            rustls::ProtocolVersion::TLSv1_2 => "TLS 1.2".to_owned(),
            other => format!("{other:?}"),
        });
    let suite = conn
        .negotiated_cipher_suite()
        .map_or("?".to_owned(), |s| format!("{:?}", s.suite()));
    let alpn = match conn.alpn_protocol() {
        Some(p) => format!("ALPN {}", String::from_utf8_lossy(p)),
        None => "no ALPN (stun.turn offered, none selected)".to_owned(),
    };
    let sni = match client.ip {
        Some(_) => "no SNI (an IP address)".to_owned(),
        None => format!("SNI {}", client.name),
    };
    report.ok(
        STEP,
        format!("{version} in {ms:.1} ms: {suite}, {alpn}, {sni}"),
    );
    let chain: Vec<CertFacts> = conn
        .peer_certificates()
        .unwrap_or_default()
        .iter()
        .filter_map(CertFacts::read)
        .collect();
    certificate_ok(&chain, client, report);
    Some(StreamOwned::new(conn, tcp))
}

/// The `[ok]` lines about a certificate that verified.
fn certificate_ok(chain: &[CertFacts], client: &Client, report: &mut Report) {
    let Some(leaf) = chain.first() else {
        return;
    };
    let trust = match &client.ca {
        Some((path, _)) => format!("--ca {path}"),
        None => "Mozilla's root store".to_owned(),
    };
    report.ok(
        STEP,
        format!(
            "certificate for {} (subject \"{}\"), issued by \"{}\"; {} sent; trusted through {trust}",
            leaf.names_text(),
            leaf.subject,
            leaf.issuer,
            match chain.len() {
                1 => "1 certificate".to_owned(),
                n => format!("{n} certificates"),
            }
        ),
    );
    let left = days(now(), leaf.not_after);
    let what = format!("valid until {}: {left} days left", utc(leaf.not_after));
    if left < EXPIRY_WARNING_DAYS {
        report.warn(STEP, format!("{what}: renew it soon"));
    } else {
        report.ok(STEP, what);
    }
}

/// Reports a handshake that failed with `e`.
fn failed(
    e: &io::Error,
    client: &Client,
    port: u16,
    timeout: std::time::Duration,
    report: &mut Report,
) {
    let tls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    if let Some(tls_error) = tls_error {
        let presented = client.presented.lock().unwrap_or_else(|e| e.into_inner());
        let chain: Vec<CertFacts> = presented.iter().filter_map(CertFacts::read).collect();
        let ca = client.ca.as_ref().map(|(p, s)| (p.as_str(), s.as_slice()));
        let cx = Context {
            name: &client.name,
            ip: client.ip,
            ca,
            chain: &chain,
            now: now(),
            port,
        };
        let (what, diagnosis) = explain(tls_error, &cx);
        report.fail(STEP, what, diagnosis);
        return;
    }
    let secs = timeout.as_secs_f64();
    let (what, diagnosis) = if is_timeout(e) {
        (
            format!("no TLS answer within {secs} s"),
            format!(
                "port {port} accepts TCP connections but nothing answers the TLS ClientHello: a \
                 plain TURN port waits for STUN (try --transport tcp), or the listener expects \
                 the PROXY protocol first"
            ),
        )
    } else if matches!(
        e.kind(),
        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
    ) {
        (
            "the server closed the connection during the TLS handshake".to_owned(),
            format!(
                "whatever listens on port {port} dropped the TLS ClientHello: a server without a \
                 certificate loaded, a listener expecting the PROXY protocol first, or not a TLS \
                 port (try --transport tcp)"
            ),
        )
    } else {
        (
            format!("socket error: {e}"),
            "a local socket failed".to_owned(),
        )
    };
    report.fail(STEP, what, diagnosis);
}

/// rustls' *ring* provider, as the server uses (`tern_server::tls`): rustls 0.23.48
/// deprecates it for lacking post-quantum key exchange, which only aws-lc-rs has; tern stays
/// on *ring* to keep aws-lc's C and CMake toolchain out of the build.
#[allow(deprecated)]
fn ring_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
