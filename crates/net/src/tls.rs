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
            if !c.exists() || !k.exists() || self_signed_due(&dir) {
                create_self_signed(&dir, hostname, &c, &k)?;
            }
            (c, k)
        }
    };
    // Read first, so a file that cannot be read says why (a permission, a
    // missing file) instead of looking like one without PEM in it.
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let cert_pem = read(&cert_path)?;
    let key_pem = read(&key_path)?;
    let no_certificate = || TlsError::Pem {
        path: cert_path.clone(),
        what: "certificate",
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| no_certificate())?;
    if chain.is_empty() {
        return Err(no_certificate());
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::Pem {
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

/// How long a self-signed certificate is valid: 397 days, within what
/// browsers and Apple's clients accept (398).
const SELF_SIGNED_DAYS: i64 = 397;
/// A self-signed certificate is made anew at start when it ends within this.
const RENEW_BEFORE_DAYS: i64 = 30;
/// Beside the self-signed certificate: when it ends (Unix seconds). Its
/// presence marks the certificate as casella's own, to renew; certificates
/// without it (made by an older casella, or put there by hand) are left alone.
const EXPIRY_FILE: &str = "self-signed-expires";

fn unix_days_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64 / 86_400)
        .unwrap_or(0)
}

/// Whether casella's own self-signed certificate in `dir` ends soon.
fn self_signed_due(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join(EXPIRY_FILE)) else {
        return false;
    };
    let Ok(expires) = text.trim().parse::<i64>() else {
        return true;
    };
    expires / 86_400 - unix_days_now() < RENEW_BEFORE_DAYS
}

/// The civil date (UTC) of a day count since 1970-01-01, as rcgen takes it.
fn civil(days: i64) -> (i32, u8, u8) {
    let (y, m, d) = casella_mime::civil_from_days(days);
    (y as i32, m as u8, d as u8)
}

/// A self-signed certificate for `hostname` (its common name and first
/// subject name; localhost and the loopback addresses too), valid from
/// yesterday for [`SELF_SIGNED_DAYS`]. Renewed at start 30 days before it
/// ends; to renew at once, delete `tls/cert.pem` and restart.
fn create_self_signed(dir: &Path, hostname: &str, cert: &Path, key: &Path) -> Result<(), TlsError> {
    let mut names = vec![hostname.to_string()];
    for extra in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|n| n == extra) {
            names.push(extra.to_string());
        }
    }
    let generate = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let mut params = rcgen::CertificateParams::new(names).map_err(generate)?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, hostname);
    params.distinguished_name = dn;
    let today = unix_days_now();
    let (y, m, d) = civil(today - 1);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = civil(today + SELF_SIGNED_DAYS);
    params.not_after = rcgen::date_time_ymd(y, m, d);
    let signing_key = rcgen::KeyPair::generate().map_err(generate)?;
    let certificate = params.self_signed(&signing_key).map_err(generate)?;
    std::fs::create_dir_all(dir).map_err(|e| TlsError::Read {
        path: dir.to_path_buf(),
        source: e,
    })?;
    write_private(key, signing_key.serialize_pem().as_bytes())?;
    std::fs::write(cert, certificate.pem()).map_err(|e| TlsError::Read {
        path: cert.to_path_buf(),
        source: e,
    })?;
    let expires = (today + SELF_SIGNED_DAYS) * 86_400;
    std::fs::write(dir.join(EXPIRY_FILE), format!("{expires}\n")).map_err(|e| TlsError::Read {
        path: dir.join(EXPIRY_FILE),
        source: e,
    })?;
    tracing::info!(hostname, path = %cert.display(), days = SELF_SIGNED_DAYS, "created a self-signed TLS certificate");
    Ok(())
}

/// Writes the key readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    write_owner_only(path, bytes).map_err(|e| TlsError::Read {
        path: path.to_path_buf(),
        source: e,
    })
}

/// Writes `bytes` to `path` (replacing it) readable and writable by its
/// owner only (mode 0600): keys, passwords.
pub fn write_owner_only(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(20_794), (2026, 12, 7));
        assert_eq!(civil(11_016), (2000, 2, 29));
    }

    #[test]
    fn self_signed_is_created_once_and_reused() {
        let dir = tempfile_dir();
        let a = load_or_create_tls(&dir, "mail.example.org", None, None).unwrap();
        let first = std::fs::read(&a.cert_path).unwrap();
        let b = load_or_create_tls(&dir, "mail.example.org", None, None).unwrap();
        assert_eq!(std::fs::read(&b.cert_path).unwrap(), first);
        // Made anew when it ends within 30 days.
        let soon = (unix_days_now() + 10) * 86_400;
        std::fs::write(dir.join("tls").join(EXPIRY_FILE), soon.to_string()).unwrap();
        let c = load_or_create_tls(&dir, "mail.example.org", None, None).unwrap();
        assert_ne!(std::fs::read(&c.cert_path).unwrap(), first);
        assert!(!self_signed_due(&dir.join("tls")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_key_that_cannot_be_read_says_why() {
        let dir =
            std::env::temp_dir().join(format!("casella-tls-unreadable-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let made = load_or_create_tls(&dir, "mail.example.org", None, None).unwrap();
        let missing = dir.join("no-such-key.pem");
        let err = load_or_create_tls(&dir, "x", Some(&made.cert_path), Some(&missing))
            .err()
            .expect("a missing key is an error");
        assert!(
            matches!(&err, TlsError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
            "{err}"
        );
        // A file that is there but holds no key still says so.
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "not a key").unwrap();
        let err = load_or_create_tls(&dir, "x", Some(&made.cert_path), Some(&garbage))
            .err()
            .expect("no key is an error");
        assert!(
            matches!(
                err,
                TlsError::Pem {
                    what: "private key",
                    ..
                }
            ),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("casella-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
