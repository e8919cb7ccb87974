//! The generator's TLS client (`--transport tls`): rustls on the *ring* provider, as the
//! server's, TLS 1.2 and 1.3, ALPN `stun.turn` offered (RFC 7443), and no session resumption,
//! so every connection costs the server a full handshake. Key exchange prefers X25519, then
//! P-256, then P-384, as browsers do (rustls' *ring* default puts P-384 first).
//!
//! The server's certificate is checked against `--ca` (the benchmark's own CA, made for the
//! run) for the server's IP address; `--insecure` skips the check for a server whose CA is
//! not at hand.

use std::io;
use std::net::{IpAddr, SocketAddrV4};
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::ring::kx_group;
use rustls::crypto::{ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore};

/// The ALPN protocol of TURN over TLS (RFC 7443).
const ALPN_STUN_TURN: &[u8] = b"stun.turn";

/// What every TLS connection of a run shares: the configuration and the name checked.
#[derive(Clone, Debug)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl TlsClient {
    /// A client for `server` trusting the CA certificates in `ca`, or none with `insecure`.
    /// With `tls12_only`, only TLS 1.2 is offered.
    pub fn new(
        server: SocketAddrV4,
        ca: Option<&Path>,
        insecure: bool,
        tls12_only: bool,
    ) -> io::Result<Self> {
        let provider = Arc::new(CryptoProvider {
            kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
            ..ring_provider()
        });
        let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
            &[&rustls::version::TLS12]
        } else {
            rustls::DEFAULT_VERSIONS
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(io::Error::other)?;
        let mut config = match (ca, insecure) {
            (Some(path), _) => builder
                .with_root_certificates(roots(path)?)
                .with_no_client_auth(),
            (None, true) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
                .with_no_client_auth(),
            (None, false) => {
                return Err(io::Error::other(
                    "--transport tls needs --ca FILE (or --insecure)",
                ))
            }
        };
        config.alpn_protocols = vec![ALPN_STUN_TURN.to_vec()];
        // Every connection a full handshake: no tickets, no session ids.
        config.resumption = Resumption::disabled();
        Ok(Self {
            config: Arc::new(config),
            name: ServerName::IpAddress(IpAddr::V4(*server.ip()).into()),
        })
    }

    /// A new client connection (nothing sent yet).
    pub fn connection(&self) -> io::Result<ClientConnection> {
        ClientConnection::new(self.config.clone(), self.name.clone()).map_err(io::Error::other)
    }
}

/// The version, cipher suite and key exchange group `conn` negotiated, for the report.
pub fn negotiated(conn: &ClientConnection) -> String {
    let version = conn
        .protocol_version()
        .map_or("?".into(), |v| format!("{v:?}"));
    let suite = conn
        .negotiated_cipher_suite()
        .map_or("?".into(), |s| format!("{:?}", s.suite()));
    let group = conn
        .negotiated_key_exchange_group()
        .map_or("?".into(), |g| format!("{:?}", g.name()));
    format!("{version} {suite} {group}")
}

/// rustls' *ring* provider, as the server's (deprecated in rustls 0.23.48 for lacking
/// post-quantum key exchange; tern stays on *ring*, so both ends use X25519 or a NIST curve).
#[allow(deprecated)]
fn ring_provider() -> CryptoProvider {
    ring::default_provider()
}

fn roots(path: &Path) -> io::Result<RootCertStore> {
    let bad = |e: String| io::Error::other(format!("--ca {}: {e}", path.display()));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<_, _>>)
        .map_err(|e| bad(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(bad("no usable CA certificate".into()));
    }
    Ok(roots)
}

/// `--insecure`: accepts any certificate, still checking the handshake signatures.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
