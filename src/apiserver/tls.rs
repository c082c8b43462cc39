//! Serving a [`Router`] over TLS, as an aggregated API server must.
//!
//! - rustls with the ring provider, TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1 chosen by ALPN.
//! - The serving certificate comes from PEM files that are re-read every few seconds; a broken replacement is
//!   logged and the previous certificate stays in use. Without files, a self-signed certificate is generated at
//!   startup (development only).
//! - Client certificates are *requested*, never required (kubelet probes send none). The handshake proves the
//!   client holds the key; the chain is then checked against the client CA and the front-proxy (requestheader) CA
//!   held in [`ClientCas`], and the outcome travels with every request of the connection as a [`PeerIdentity`]
//!   extension for the [`crate::apiserver::auth`] layer. A certificate from an unknown CA therefore reaches the auth layer as
//!   unverified and is answered 401, as kube-apiserver does, instead of failing the handshake.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error, info, warn};

use crate::apiserver::http::{self, HttpSettings};

/// How long a client may take to finish the TLS handshake before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of the TLS server.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("cannot read {what} file {path}: {source}")]
    Read {
        /// Which file: "certificate" or "key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file held no usable item, or an item that does not parse.
    #[error("{path}: {message}; expected PEM ('-----BEGIN CERTIFICATE-----' / '-----BEGIN PRIVATE KEY-----')")]
    Pem {
        /// The file (or the name of the in-memory source).
        path: String,
        /// What was wrong.
        message: String,
    },
    /// The key does not match the certificate, or rustls refused them.
    #[error("certificate {cert} with key {key}: {source}")]
    Key {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// The rustls error.
        #[source]
        source: rustls::Error,
    },
    /// A CA bundle contained no certificate that rustls accepts as a trust anchor.
    #[error("CA bundle {name}: {message}")]
    CaBundle {
        /// Where the bundle came from (file path or ConfigMap key).
        name: String,
        /// What was wrong.
        message: String,
    },
    /// The self-signed development certificate could not be generated.
    #[error("generating the self-signed certificate: {0}")]
    SelfSigned(#[source] rcgen::Error),
    /// rustls rejected the server configuration.
    #[error("TLS configuration: {0}")]
    Config(#[source] rustls::Error),
    /// Accepting a TCP connection failed.
    #[error("accepting a connection: {0}")]
    Accept(#[source] std::io::Error),
}

/// TLS flags of the aggregated API server, meant to be flattened into the `serve` command.
#[derive(clap::Args, Debug, Clone)]
pub struct TlsArgs {
    /// PEM certificate chain served to clients (leaf first). Re-read when it changes. Without it a self-signed
    /// certificate is generated (development only).
    #[arg(long, env = "PRESCALE_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for --tls-cert-file. Re-read when it changes.
    #[arg(long, env = "PRESCALE_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// Seconds between checks of the certificate and key files for changes.
    #[arg(long, env = "PRESCALE_TLS_RELOAD_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub tls_reload_seconds: u64,
    /// DNS names and IPs of the self-signed certificate (only used without --tls-cert-file).
    #[arg(
        long,
        env = "PRESCALE_TLS_SELF_SIGNED_NAMES",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1,prescale,prescale.prescale,prescale.prescale.svc,prescale.prescale.svc.cluster.local"
    )]
    pub tls_self_signed_names: Vec<String>,
}

impl TlsArgs {
    /// Turns the flags into [`TlsSettings`]; `client_cas` is the handle the auth configuration keeps current.
    pub fn into_settings(self, client_cas: ClientCas) -> TlsSettings {
        let Self {
            tls_cert_file,
            tls_key_file,
            tls_reload_seconds,
            tls_self_signed_names,
        } = self;
        let certificate = match (tls_cert_file, tls_key_file) {
            (Some(cert), Some(key)) => CertSource::Files { cert, key },
            // clap's `requires` makes a lone file impossible; without both we fall back to development mode.
            _ => CertSource::SelfSigned {
                names: tls_self_signed_names,
            },
        };
        TlsSettings {
            certificate,
            reload_interval: Duration::from_secs(tls_reload_seconds),
            client_cas,
            http: HttpSettings::default(),
        }
    }
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub enum CertSource {
    /// PEM files, polled for changes.
    Files {
        /// Certificate chain, leaf first.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
    },
    /// A certificate generated at startup for these DNS names / IP addresses. Development only.
    SelfSigned {
        /// Subject alternative names; entries that parse as IP addresses become IP SANs.
        names: Vec<String>,
    },
}

/// Everything [`serve`] needs besides the listener and the router.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// The serving certificate.
    pub certificate: CertSource,
    /// How often certificate files are checked for changes.
    pub reload_interval: Duration,
    /// CAs that client certificates are checked against (shared with the auth configuration).
    pub client_cas: ClientCas,
    /// Connection timeouts.
    pub http: HttpSettings,
}

/// Installs ring as the process-wide rustls provider. Safe to call any number of times.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is what we want either way.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A set of trusted CA certificates that client certificate chains are verified against.
#[derive(Clone)]
pub struct CaPool {
    name: String,
    verifier: Arc<dyn ClientCertVerifier>,
    pem: String,
}

impl std::fmt::Debug for CaPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaPool")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PartialEq for CaPool {
    fn eq(&self, other: &Self) -> bool {
        self.pem == other.pem
    }
}

impl CaPool {
    /// Parses a PEM bundle; `name` (a file path or ConfigMap key) appears in errors and logs.
    pub fn from_pem(name: &str, pem: &str) -> Result<Self, TlsError> {
        let ca_error = |message: String| TlsError::CaBundle {
            name: name.to_owned(),
            message,
        };
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| ca_error(format!("not valid PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| ca_error(format!("not a usable CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(ca_error("no CERTIFICATE block found".into()));
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| ca_error(e.to_string()))?;
        Ok(Self {
            name: name.to_owned(),
            verifier,
            pem: pem.to_owned(),
        })
    }

    /// Reads a PEM bundle from a file.
    pub fn from_file(path: &Path) -> Result<Self, TlsError> {
        let pem = std::fs::read_to_string(path).map_err(|source| TlsError::Read {
            what: "CA",
            path: path.to_owned(),
            source,
        })?;
        Self::from_pem(&path.display().to_string(), &pem)
    }

    /// True when `chain` (leaf first) chains to this pool and the leaf may be used for client authentication
    /// (an EKU extension, if present, must list clientAuth).
    pub fn verifies(&self, chain: &[CertificateDer<'static>]) -> bool {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return false;
        };
        match self.verifier.verify_client_cert(leaf, intermediates, UnixTime::now()) {
            Ok(_) => true,
            Err(error) => {
                debug!(%error, ca = %self.name, "client certificate does not verify");
                false
            }
        }
    }
}

/// The CAs that client certificates are checked against, both optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CaPools {
    /// `client-ca-file`: certificates verified here authenticate as user = CN, groups = O.
    pub client_ca: Option<CaPool>,
    /// `requestheader-client-ca-file`: certificates verified here may assert identities in X-Remote-* headers.
    pub requestheader_ca: Option<CaPool>,
}

/// A shared, updatable handle on the current [`CaPools`]. New connections see updates at once.
#[derive(Debug, Clone, Default)]
pub struct ClientCas(Arc<RwLock<Arc<CaPools>>>);

impl ClientCas {
    /// A handle starting with `pools`.
    pub fn new(pools: CaPools) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(pools))))
    }

    /// The pools in force now.
    pub fn current(&self) -> Arc<CaPools> {
        // A poisoned lock only means a writer panicked after replacing the Arc; the value is still whole.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the pools; returns true when they changed.
    pub fn set(&self, pools: CaPools) -> bool {
        let mut guard = self.0.write().unwrap_or_else(|e| e.into_inner());
        if **guard == pools {
            return false;
        }
        *guard = Arc::new(pools);
        true
    }
}

/// What the TLS layer learned about the peer, attached to every request of a connection as an extension.
#[derive(Debug, Clone)]
pub struct PeerIdentity {
    /// The client's address.
    pub remote_addr: SocketAddr,
    /// The certificate chain the client presented (leaf first); empty when it sent none.
    pub chain: Arc<Vec<CertificateDer<'static>>>,
    /// The chain verifies against the client CA.
    pub client_ca_verified: bool,
    /// The chain verifies against the front-proxy (requestheader) CA.
    pub requestheader_ca_verified: bool,
}

impl PeerIdentity {
    /// Checks `chain` against `pools`.
    pub fn verify(remote_addr: SocketAddr, chain: Vec<CertificateDer<'static>>, pools: &CaPools) -> Self {
        let check = |pool: &Option<CaPool>| pool.as_ref().is_some_and(|p| p.verifies(&chain));
        let client_ca_verified = check(&pools.client_ca);
        let requestheader_ca_verified = check(&pools.requestheader_ca);
        Self {
            remote_addr,
            chain: Arc::new(chain),
            client_ca_verified,
            requestheader_ca_verified,
        }
    }

    /// The client presented a certificate.
    pub fn presented_certificate(&self) -> bool {
        !self.chain.is_empty()
    }
}

/// Requests a client certificate, checks the handshake signature (proof of key possession) and leaves chain
/// verification to [`PeerIdentity::verify`], so unverifiable certificates become a 401 rather than a TLS alert.
#[derive(Debug)]
struct RequestClientCertificate {
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for RequestClientCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: Go clients then send their certificate whatever its issuer, and the auth layer decides.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Refuse garbage early; trust is decided after the handshake against the CA pools.
        x509_parser::parse_x509_certificate(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The serving certificate in force, swapped by the reload task.
#[derive(Debug)]
struct CurrentCertificate(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// Loads a certificate chain and key from PEM files and checks that they belong together.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_pem = std::fs::read(cert).map_err(|source| TlsError::Read {
        what: "certificate",
        path: cert.to_owned(),
        source,
    })?;
    let key_pem = std::fs::read(key).map_err(|source| TlsError::Read {
        what: "key",
        path: key.to_owned(),
        source,
    })?;
    certified_key_from_pem(cert, &cert_pem, key, &key_pem)
}

fn certified_key_from_pem(cert: &Path, cert_pem: &[u8], key: &Path, key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
    let pem_error = |path: &Path, message: String| TlsError::Pem {
        path: path.display().to_string(),
        message,
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert, format!("not valid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(pem_error(cert, "no CERTIFICATE block found".into()));
    }
    let private_key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| pem_error(key, format!("no usable private key: {e}")))?;
    let certified = CertifiedKey::from_der(chain, private_key, &provider()).map_err(|source| TlsError::Key {
        cert: cert.to_owned(),
        key: key.to_owned(),
        source,
    })?;
    // from_der lets an undeterminable match through; a definite mismatch is an error above.
    Ok(certified)
}

/// Generates a self-signed certificate for `names`. Development only: clients must skip verification or pin it.
pub fn self_signed(names: &[String]) -> Result<CertifiedKey, TlsError> {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(names.to_vec()).map_err(TlsError::SelfSigned)?;
    let key = PrivateKeyDer::Pkcs8(signing_key.serialize_der().into());
    CertifiedKey::from_der(vec![cert.der().clone()], key, &provider()).map_err(TlsError::Config)
}

/// Builds the rustls server configuration around a certificate resolver.
fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let verifier = Arc::new(RequestClientCertificate {
        provider: provider.clone(),
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Config)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Polls the certificate files and swaps in a new certificate when their content changes and it loads.
async fn reload_certificates(current: Arc<CurrentCertificate>, cert: PathBuf, key: PathBuf, every: Duration) {
    let read_both = || Some((std::fs::read(&cert).ok()?, std::fs::read(&key).ok()?));
    let mut last = read_both();
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let now = read_both();
        if now.is_none() || now == last {
            if now.is_none() {
                warn!(cert = %cert.display(), key = %key.display(), "certificate files unreadable; keeping the current certificate");
            }
            continue;
        }
        // Compare content, not mtime: Kubernetes secret volumes swap a symlink and keep old mtimes.
        let (cert_pem, key_pem) = now.clone().unwrap_or_default();
        match certified_key_from_pem(&cert, &cert_pem, &key, &key_pem) {
            Ok(certified) => {
                *current.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(certified);
                info!(cert = %cert.display(), "serving certificate reloaded");
                last = now;
            }
            Err(error) => {
                // Remember the bad content so it is reported once, not every tick; a later fix still loads.
                last = now;
                error!(%error, "new serving certificate rejected; keeping the current one");
            }
        }
    }
}

/// Serves `router` over TLS on `listener` until `shutdown` completes, then drains open connections.
///
/// Requests pass the limits of [`http::limits`] first, and connections get the timeouts of [`TlsSettings::http`].
/// Each request carries a [`PeerIdentity`] extension. The first certificate must load, or this returns an error
/// before accepting anything.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: TlsSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), TlsError> {
    let TlsSettings {
        certificate,
        reload_interval,
        client_cas,
        http,
    } = tls;
    let (initial, reload) = match certificate {
        CertSource::Files { cert, key } => (load_certified_key(&cert, &key)?, Some((cert, key))),
        CertSource::SelfSigned { names } => {
            warn!(
                ?names,
                "NO --tls-cert-file GIVEN: SERVING A SELF-SIGNED CERTIFICATE GENERATED AT STARTUP. \
                 DEVELOPMENT ONLY: clients cannot verify it; set --tls-cert-file/--tls-key-file in production"
            );
            (self_signed(&names)?, None)
        }
    };
    let current = Arc::new(CurrentCertificate(RwLock::new(Arc::new(initial))));
    let acceptor = TlsAcceptor::from(Arc::new(server_config(current.clone())?));
    let reloader = reload.map(|(cert, key)| tokio::spawn(reload_certificates(current, cert, key, reload_interval)));

    let local = listener.local_addr().ok();
    info!(addr = ?local, "TLS server listening");
    let router = http::limits(router);
    let http = Arc::new(http);
    let result = http::accept_until(listener, shutdown, |tcp, remote_addr, stopping| {
        let acceptor = acceptor.clone();
        let router = router.clone();
        let client_cas = client_cas.clone();
        let http = http.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => return debug!(%error, %remote_addr, "TLS handshake failed"),
                Err(_) => return debug!(%remote_addr, "TLS handshake timed out"),
            };
            let chain: Vec<CertificateDer<'static>> = stream
                .get_ref()
                .1
                .peer_certificates()
                .map(<[_]>::to_vec)
                .unwrap_or_default();
            let peer = PeerIdentity::verify(remote_addr, chain, &client_cas.current());
            http::serve_connection(stream, router, peer, &http, stopping, remote_addr).await;
        });
    })
    .await
    .map_err(TlsError::Accept);
    if let Some(reloader) = reloader {
        reloader.abort();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_has_the_requested_names() {
        let names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "prescale.prescale.svc".to_owned(),
        ];
        let key = self_signed(&names).expect("self-signed certificate");
        let (_, cert) = x509_parser::parse_x509_certificate(&key.cert[0]).expect("parses");
        let san = cert.subject_alternative_name().expect("valid").expect("SAN present");
        let rendered: Vec<String> = san.value.general_names.iter().map(|n| n.to_string()).collect();
        assert!(
            rendered.iter().any(|n| n.contains("prescale.prescale.svc")),
            "{rendered:?}"
        );
        let ip = x509_parser::extensions::GeneralName::IPAddress(&[127, 0, 0, 1]);
        assert!(
            san.value.general_names.contains(&ip),
            "127.0.0.1 must be an IP SAN: {rendered:?}"
        );
    }

    #[test]
    fn ca_bundle_without_certificates_is_rejected_with_its_name() {
        let error = CaPool::from_pem("client-ca-file", "not pem").unwrap_err();
        assert!(error.to_string().contains("client-ca-file"), "{error}");
    }

    #[test]
    fn mismatched_key_is_rejected() {
        let a = rcgen::generate_simple_self_signed(vec!["a".to_owned()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b".to_owned()]).unwrap();
        let error = certified_key_from_pem(
            Path::new("a.crt"),
            a.cert.pem().as_bytes(),
            Path::new("b.key"),
            b.signing_key.serialize_pem().as_bytes(),
        )
        .unwrap_err();
        assert!(matches!(error, TlsError::Key { .. }), "{error}");
    }
}
