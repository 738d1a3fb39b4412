//! TLS with rustls: gunicorn's SSL settings (`--certfile`, `--keyfile`,
//! `--ca-certs`, `--cert-reqs`, `--ciphers`, `--suppress-ragged-eofs`, and
//! the deprecated `--ssl-version`) made into a rustls `ServerConfig`
//! ([`Tls::load`]), the per-connection [`Session`] the engine and the
//! request share, and the [`Wire`] through which the app interfaces read
//! and write a connection, plain or TLS.
//!
//! The master loads the configuration once at start and on each reload
//! only to check it (a bad key, a certificate that does not match it, an
//! unreadable file: one line, exit 1 at start, "Reload failed" on HUP);
//! each worker loads it again right after fork, before it gives up root,
//! so a HUP re-reads renewed certificates. Handshakes happen in the
//! worker's engine, as the client's bytes arrive, under the header
//! timeout: a slow handshake holds a connection slot, never Python.

mod ciphers;
mod context;
mod session;
mod wire;

pub use context::{from_ssl_context, CONTEXT_HELPER};
pub use session::Session;
pub use wire::Wire;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ProducesTickets, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};

use crate::config::Settings;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("--keyfile {0} is set without --certfile")]
    KeyWithoutCert(String),
    #[error("cannot read the {what} {path}: {reason}")]
    Read {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("the {what} {path} holds no {looked_for}")]
    Empty {
        what: &'static str,
        path: String,
        looked_for: &'static str,
    },
    #[error("the certificate {cert} and the key {key} do not belong together: {reason}")]
    Mismatch {
        cert: String,
        key: String,
        reason: String,
    },
    #[error("--cert-reqs {0}: expected 0 (none), 1 (optional) or 2 (required)")]
    CertReqs(u32),
    #[error("--cert-reqs {0} checks client certificates, which needs --ca-certs")]
    NeedCa(u32),
    #[error("the CA certificates {path} cannot verify clients: {reason}")]
    Verifier { path: String, reason: String },
    #[error("{0}")]
    Ciphers(String),
    #[error("ssl_context: {0}")]
    Context(String),
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Whether (and how) clients must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    None,
    Optional,
    Required,
}

/// What a `ServerConfig` is made from: gunicorn's settings, or what an
/// `ssl_context` hook's `SSLContext` was given.
#[derive(Debug, Clone)]
pub struct Options {
    /// (certificate chain, key) files; the key may be in the chain's file.
    pub chains: Vec<(PathBuf, Option<PathBuf>)>,
    pub ca: Vec<PathBuf>,
    pub verify: Verify,
    pub ciphers: Option<String>,
    /// Offer TLS 1.3 only (a minimum version of 1.3).
    pub tls13_only: bool,
    /// Offer TLS 1.2 only (a maximum version of 1.2).
    pub tls12_only: bool,
    pub alpn: Vec<Vec<u8>>,
}

impl Options {
    /// From the settings; None when TLS is off (no `--certfile`).
    pub fn from_settings(s: &Settings) -> Result<Option<Options>, TlsError> {
        let Some(cert) = &s.certfile else {
            return match &s.keyfile {
                Some(k) => Err(TlsError::KeyWithoutCert(k.clone())),
                None => Ok(None),
            };
        };
        let verify = match s.cert_reqs {
            0 => Verify::None,
            1 => Verify::Optional,
            2 => Verify::Required,
            n => return Err(TlsError::CertReqs(n)),
        };
        if verify != Verify::None && s.ca_certs.is_none() {
            return Err(TlsError::NeedCa(s.cert_reqs));
        }
        Ok(Some(Options {
            chains: vec![(PathBuf::from(cert), s.keyfile.as_ref().map(PathBuf::from))],
            ca: s.ca_certs.iter().map(PathBuf::from).collect(),
            verify,
            ciphers: s.ciphers.clone(),
            tls13_only: false,
            tls12_only: false,
            // --http-protocols, in its order of preference.
            alpn: s
                .http_protocols
                .split(',')
                .filter_map(|p| match p {
                    "h1" => Some(b"http/1.1".to_vec()),
                    "h2" => Some(b"h2".to_vec()),
                    _ => None,
                })
                .collect(),
        }))
    }
}

/// A worker's TLS: the rustls configuration every connection starts from.
pub struct Tls {
    pub config: Arc<ServerConfig>,
    pub suppress_ragged: bool,
}

/// Session-ticket keys, made once in the master before the first fork so
/// that every worker can resume a session another one started.
static TICKETER: OnceLock<Option<Arc<dyn ProducesTickets>>> = OnceLock::new();

impl Tls {
    /// Load the settings' certificates and keys and build the config; None
    /// when TLS is off.
    pub fn load(s: &Settings) -> Result<Option<Tls>, TlsError> {
        let Some(opts) = Options::from_settings(s)? else {
            return Ok(None);
        };
        Ok(Some(Tls {
            config: build(&opts)?,
            suppress_ragged: s.suppress_ragged_eofs,
        }))
    }

    /// A session for a newly accepted connection.
    pub fn session(&self, fd: std::os::fd::RawFd) -> Result<Session, rustls::Error> {
        Session::new(&self.config, fd, self.suppress_ragged)
    }
}

/// Warnings for settings gunicorn accepts but that change nothing here.
pub fn warnings(s: &Settings) -> Vec<String> {
    let mut w = Vec::new();
    if s.ssl_version != "TLS" && s.certfile.is_some() {
        w.push(format!(
            "--ssl-version {} is deprecated and ignored (as in gunicorn); TLS 1.2 and 1.3 are offered",
            s.ssl_version
        ));
    }
    w
}

fn read_err(what: &'static str, path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Read {
        what,
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    std::fs::metadata(path).map_err(|e| read_err("certificate file", path, e))?;
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_err("certificate file", path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_err("certificate file", path, e))?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what: "certificate file",
            path: path.display().to_string(),
            looked_for: "PEM certificate",
        });
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = std::fs::read(path).map_err(|e| read_err("key file", path, e))?;
    if text.windows(9).any(|w| w == b"ENCRYPTED") {
        return Err(read_err(
            "key file",
            path,
            "it is encrypted with a password, which is not supported; decrypt it (openssl pkey -in KEY -out PLAIN)",
        ));
    }
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            what: "key file",
            path: path.display().to_string(),
            looked_for: "PEM private key",
        },
        e => read_err("key file", path, e),
    })
}

/// The provider with the suites `--ciphers` leaves.
fn provider(opts: &Options) -> Result<Arc<rustls::crypto::CryptoProvider>, TlsError> {
    let mut p = ring::default_provider();
    if let Some(list) = &opts.ciphers {
        p.cipher_suites = ciphers::select(list).map_err(TlsError::Ciphers)?;
    }
    Ok(Arc::new(p))
}

/// Build a server configuration.
pub fn build(opts: &Options) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider(opts)?;
    let has12 = provider
        .cipher_suites
        .iter()
        .any(|s| s.version() == &rustls::version::TLS12);
    let versions: &[&rustls::SupportedProtocolVersion] = if opts.tls12_only {
        if !has12 {
            return Err(TlsError::Ciphers(
                "only TLS 1.2 is allowed, but the cipher list leaves no TLS 1.2 suite".into(),
            ));
        }
        &[&rustls::version::TLS12]
    } else if opts.tls13_only || !has12 {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder =
        ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(versions)?;
    let builder = if opts.verify == Verify::None {
        builder.with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        let mut where_ = String::new();
        for path in &opts.ca {
            where_ = path.display().to_string();
            for c in certs(path)? {
                roots.add(c).map_err(|e| TlsError::Verifier {
                    path: where_.clone(),
                    reason: e.to_string(),
                })?;
            }
        }
        let b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
        let b = if opts.verify == Verify::Optional {
            b.allow_unauthenticated()
        } else {
            b
        };
        let verifier = b.build().map_err(|e| TlsError::Verifier {
            path: where_,
            reason: e.to_string(),
        })?;
        builder.with_client_cert_verifier(verifier)
    };
    let Some((cert_path, key_path)) = opts.chains.first() else {
        return Err(TlsError::Context(
            "the SSLContext has no certificate (call load_cert_chain)".into(),
        ));
    };
    let chain = certs(cert_path)?;
    let key_path = key_path.as_deref().unwrap_or(cert_path);
    let key = key(key_path)?;
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Mismatch {
            cert: cert_path.display().to_string(),
            key: key_path.display().to_string(),
            reason: e.to_string(),
        })?;
    config.alpn_protocols = opts.alpn.clone();
    if opts.ciphers.is_some() {
        // The list's order is the server's preference, as OpenSSL's
        // SSL_OP_CIPHER_SERVER_PREFERENCE makes it.
        config.ignore_client_order = true;
    }
    if let Some(t) = TICKETER.get_or_init(|| ring::Ticketer::new().ok()) {
        config.ticketer = t.clone();
    }
    Ok(Arc::new(config))
}

/// Make the session-ticket keys now (in the master, before the first
/// fork), so that all workers share them.
pub fn prepare() {
    TICKETER.get_or_init(|| ring::Ticketer::new().ok());
}
