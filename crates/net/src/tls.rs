//! TLS server configuration: the configured certificate chain and key, or a
//! self-signed certificate for the configured hostname, made once and kept in the
//! data directory (`tls/cert.pem`, `tls/key.pem`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no usable PEM {what}")]
    Pem { path: PathBuf, what: &'static str },
    #[error("making a self-signed certificate: {0}")]
    Generate(String),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The TLS material the server uses.
#[derive(Clone)]
pub struct TlsSetup {
    pub acceptor: TlsAcceptor,
    /// The certificate file in use (tests give it to clients as their CA).
    pub cert_path: PathBuf,
}

/// Loads `cert`/`key` if both are given; otherwise uses (and on first run creates)
/// a self-signed certificate for `hostname` in `data_dir/tls`.
pub fn load_or_create_tls(
    data_dir: &Path,
    hostname: &str,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<TlsSetup, TlsError> {
    let (cert_path, key_path) = match (cert, key) {
        (Some(c), Some(k)) => (c.to_path_buf(), k.to_path_buf()),
        _ => {
            let dir = data_dir.join("tls");
            let c = dir.join("cert.pem");
            let k = dir.join("key.pem");
            if !c.exists() || !k.exists() {
                create_self_signed(&dir, hostname, &c, &k)?;
            }
            (c, k)
        }
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|_| TlsError::Pem {
            path: cert_path.clone(),
            what: "certificate",
        })?
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::Pem {
            path: cert_path.clone(),
            what: "certificate",
        })?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: cert_path,
            what: "certificate",
        });
    }
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|_| TlsError::Pem {
        path: key_path.clone(),
        what: "private key",
    })?;
    remember_certificate(chain[0].as_ref());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(TlsSetup {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        cert_path,
    })
}

static SERVER_CERTIFICATE: std::sync::RwLock<Option<Arc<[u8]>>> = std::sync::RwLock::new(None);

fn remember_certificate(der: &[u8]) {
    *SERVER_CERTIFICATE
        .write()
        .unwrap_or_else(|e| e.into_inner()) = Some(Arc::from(der));
}

/// The DER of the certificate this process serves (for tls-server-end-point
/// channel binding, RFC 5929 §4); `None` before TLS is set up. Cheap to call:
/// the bytes are shared.
pub fn server_certificate() -> Option<Arc<[u8]>> {
    SERVER_CERTIFICATE
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

fn create_self_signed(dir: &Path, hostname: &str, cert: &Path, key: &Path) -> Result<(), TlsError> {
    let mut names = vec![hostname.to_string()];
    for extra in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|n| n == extra) {
            names.push(extra.to_string());
        }
    }
    let certified =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    std::fs::create_dir_all(dir).map_err(|e| TlsError::Read {
        path: dir.to_path_buf(),
        source: e,
    })?;
    write_private(key, certified.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(cert, certified.cert.pem()).map_err(|e| TlsError::Read {
        path: cert.to_path_buf(),
        source: e,
    })?;
    tracing::info!(hostname, path = %cert.display(), "created a self-signed TLS certificate");
    Ok(())
}

/// Writes the key readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e| TlsError::Read {
        path: path.to_path_buf(),
        source: e,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_is_created_once_and_reused() {
        let dir = tempfile_dir();
        let a = load_or_create_tls(&dir, "mail.example.org", None, None).unwrap();
        let first = std::fs::read(&a.cert_path).unwrap();
        let b = load_or_create_tls(&dir, "mail.example.org", None, None).unwrap();
        assert_eq!(std::fs::read(&b.cert_path).unwrap(), first);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("casella-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
