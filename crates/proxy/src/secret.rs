//! The cluster secret front ends and back ends share (`[cluster] secret-file`).
//! It is only ever used as an HMAC key; `Debug` prints `***`.

use std::fmt;
use std::path::{Path, PathBuf};

use ring::hmac;

/// Fewer bytes than this are refused: the secret must not be guessable.
pub const MIN_SECRET_LEN: usize = 16;

pub struct ClusterSecret {
    key: hmac::Key,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("reading the cluster secret {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the cluster secret in {path} is too short: at least {MIN_SECRET_LEN} bytes \
         (e.g. `head -c 32 /dev/urandom | base64 > FILE`)"
    )]
    TooShort { path: PathBuf },
}

impl ClusterSecret {
    /// A secret from its bytes; `None` when shorter than [`MIN_SECRET_LEN`].
    pub fn from_bytes(bytes: &[u8]) -> Option<ClusterSecret> {
        (bytes.len() >= MIN_SECRET_LEN).then(|| ClusterSecret {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        })
    }

    /// Reads the secret file: its content without surrounding whitespace (so a
    /// trailing newline does not matter). Warns when others may read it.
    pub fn load(path: &Path) -> Result<ClusterSecret, SecretError> {
        let raw = std::fs::read(path).map_err(|source| SecretError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        warn_if_readable_by_others(path);
        ClusterSecret::from_bytes(raw.trim_ascii()).ok_or_else(|| SecretError::TooShort {
            path: path.to_path_buf(),
        })
    }

    pub(crate) fn key(&self) -> &hmac::Key {
        &self.key
    }
}

fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            "the cluster secret file may be read by other users; chmod 600 it"
        );
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_secrets_are_refused_and_the_value_never_prints() {
        assert!(ClusterSecret::from_bytes(b"short").is_none());
        let s = ClusterSecret::from_bytes(b"0123456789abcdef").unwrap();
        assert_eq!(format!("{s:?}"), "ClusterSecret(***)");
        let dir = std::env::temp_dir().join(format!("casella-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        std::fs::write(&file, b"  0123456789abcdef\n").unwrap();
        assert!(ClusterSecret::load(&file).is_ok());
        std::fs::write(&file, b"0123456789\n").unwrap();
        assert!(matches!(
            ClusterSecret::load(&file),
            Err(SecretError::TooShort { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
