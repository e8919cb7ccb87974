//! One generation of the TLS configuration: every certificate read and checked, and the
//! rustls configurations built from them. A reload builds a new generation; connections keep
//! the one they started with.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::ring::Ticketer;
use rustls::crypto::CryptoProvider;
use rustls::server::ServerSessionMemoryCache;
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, ServerConfig};

use super::resolver::{ByName, SniResolver};
use super::{ciphers, curves, files, CertificateFacts, TlsError, TlsSettings, ALPN_STUN_TURN};

/// TLS 1.2 sessions kept for resumption by session id (clients without tickets), shared by
/// every worker.
pub const SESSION_CACHE_SIZE: usize = 4096;

/// A loaded TLS configuration. Every worker shares it (`Arc`): a session ticket issued by one
/// worker resumes on any other, since they share the ticket keys and the session cache.
/// Each generation has keys of its own, so after a reload every client makes a full
/// handshake and sees the new certificate.
#[derive(Debug)]
pub struct Generation {
    settings: TlsSettings,
    with_alpn: Arc<ServerConfig>,
    without_alpn: Arc<ServerConfig>,
    certificates: Vec<CertificateFacts>,
    warnings: Vec<String>,
}

impl Generation {
    /// Reads every certificate and key the settings name and builds the configurations.
    /// Fails, naming the file, on a missing or unreadable file, a file without a
    /// certificate or key, an encrypted key, a key that does not match its certificate, a
    /// `cipher-list` that leaves nothing; what it can work around is in
    /// [`Generation::warnings`].
    pub fn load(settings: TlsSettings) -> Result<Self, TlsError> {
        let mut warnings = Vec::new();
        let ciphers = ciphers::choose(settings.cipher_list.as_deref(), settings.tls13_only)?;
        warnings.extend(ciphers.warnings);
        let (kx_groups, warning) = curves::kx_groups(settings.ec_curve_name.as_deref());
        warnings.extend(warning);
        let provider = Arc::new(CryptoProvider {
            cipher_suites: ciphers.suites,
            kx_groups,
            ..ring_provider()
        });

        let (default, facts) = certified_key(&provider, &settings, None)?;
        let mut certificates = vec![facts];
        let mut by_name = ByName::new(default);
        for sni in &settings.sni {
            let (key, facts) = certified_key(&provider, &settings, Some(sni))?;
            if !facts.covers(&sni.name) {
                warnings.push(format!(
                    "the certificate in {} is served for {} but does not cover that name \
                     (it names {}); clients will refuse it",
                    sni.cert.display(),
                    sni.name,
                    facts.names.join(", ")
                ));
            }
            if !by_name.insert(sni.name.clone(), key) {
                return Err(TlsError::DuplicateSniName {
                    name: sni.name.clone(),
                });
            }
            certificates.push(facts);
        }

        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&ciphers.versions)
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SniResolver(by_name)));
        config.ignore_client_order = ciphers.server_order;
        config.ticketer = Ticketer::new().map_err(TlsError::Config)?;
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
        let without_alpn = Arc::new(config.clone());
        config.alpn_protocols = vec![ALPN_STUN_TURN.to_vec()];
        Ok(Self {
            settings,
            with_alpn: Arc::new(config),
            without_alpn,
            certificates,
            warnings,
        })
    }

    /// The settings this generation was built from.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// The configuration that advertises ALPN `stun.turn`. A client that sends no ALPN
    /// connects with it; one whose ALPN list lacks `stun.turn` is refused by rustls
    /// (`no_application_protocol`), which is why [`super::Accepting`] picks with
    /// [`Generation::config_for_alpn`] instead.
    pub fn server_config(&self) -> &Arc<ServerConfig> {
        &self.with_alpn
    }

    /// The configuration for a ClientHello with these ALPN protocols (`None`: no ALPN
    /// extension): `stun.turn` is selected when offered; otherwise the connection goes on
    /// without ALPN. Both configurations share certificates, ticket keys and session cache.
    pub fn config_for_alpn<'a>(
        &self,
        offered: Option<impl Iterator<Item = &'a [u8]>>,
    ) -> &Arc<ServerConfig> {
        match offered {
            Some(mut protocols) => {
                if protocols.any(|p| p == ALPN_STUN_TURN) {
                    &self.with_alpn
                } else {
                    &self.without_alpn
                }
            }
            None => &self.with_alpn,
        }
    }

    /// The facts of every certificate: the default one first, then the SNI ones in the
    /// order of the settings.
    pub fn certificates(&self) -> &[CertificateFacts] {
        &self.certificates
    }

    /// What could not be honoured (cipher names, curve name, SNI names a certificate does
    /// not cover), one sentence each, to log as warnings.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The earliest notAfter of all the certificates, Unix seconds: the value of
    /// `tern_tls_certificate_expiry_timestamp_seconds`.
    pub fn earliest_expiry(&self) -> i64 {
        self.certificates
            .iter()
            .map(|c| c.not_after)
            .min()
            .expect("a generation has its default certificate")
    }
}

/// rustls' *ring* provider. rustls 0.23.48 deprecates it for lacking post-quantum key
/// exchange (X25519MLKEM768, which only its aws-lc-rs provider has); tern stays on *ring* to
/// keep the build free of aws-lc's C and CMake toolchain, so clients use X25519 or a NIST
/// curve. The provider itself is maintained and remains in rustls.
#[allow(deprecated)]
pub(crate) fn ring_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Reads the chain and key of the default certificate (`sni` is `None`) or of an SNI one,
/// and checks that they belong together.
fn certified_key(
    provider: &CryptoProvider,
    settings: &TlsSettings,
    sni: Option<&super::SniCert>,
) -> Result<(Arc<CertifiedKey>, CertificateFacts), TlsError> {
    let (cert_path, key_path): (&Path, &Path) = match sni {
        Some(s) => (&s.cert, &s.key),
        None => (&settings.cert, &settings.key),
    };
    let chain = files::read_chain(cert_path)?;
    let facts = CertificateFacts::read(
        sni.map(|s| s.name.clone()),
        PathBuf::from(cert_path),
        PathBuf::from(key_path),
        &chain,
    )?;
    let key = files::read_key(key_path, settings.pkey_pwd)?;
    let signing_key =
        provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::KeyUnsupported {
                path: key_path.into(),
                reason: e.to_string(),
            })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // ring knows the public key of every key it loads; Unknown cannot happen with it.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::KeyMismatch {
                cert: cert_path.into(),
                key: key_path.into(),
            })
        }
        Err(e) => {
            return Err(TlsError::CertInvalid {
                path: cert_path.into(),
                reason: format!("certificate 0 of the chain: {e}"),
            })
        }
    }
    Ok((Arc::new(certified), facts))
}
