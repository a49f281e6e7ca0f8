//! Admin API tokens (`casella admin token create`): random, shown once, kept
//! only as SHA-256 hashes in `DIR/admin-tokens`, one per line:
//! `HASH NAME CREATED`. The server reads the file when a request comes, so a new
//! token works at once and a removed line stops working at once.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

pub const TOKENS_FILE: &str = "admin-tokens";
/// Every token starts with this, so secret scanners can spot a leaked one.
const PREFIX: &str = "casella_admin_";

pub struct AdminTokens {
    data: PathBuf,
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl AdminTokens {
    pub fn new(data: PathBuf) -> AdminTokens {
        AdminTokens { data }
    }

    fn path(&self) -> PathBuf {
        self.data.join(TOKENS_FILE)
    }

    /// Makes a new token named `name` and returns it (the only time it is shown).
    pub fn create(&self, name: &str) -> std::io::Result<String> {
        let mut raw = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut raw);
        let token = format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
        );
        let name: String = name
            .chars()
            .map(|c| {
                if c.is_whitespace() || c.is_control() {
                    '-'
                } else {
                    c
                }
            })
            .collect();
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let path = self.path();
        let mut f = open_private(&path)?;
        writeln!(f, "{} {} {created}", hash(&token), name)?;
        f.sync_all()?;
        Ok(token)
    }

    /// The name of the token, when it is valid.
    pub fn check(&self, token: &str) -> Option<String> {
        if !token.starts_with(PREFIX) {
            return None;
        }
        let text = std::fs::read_to_string(self.path()).ok()?;
        let h = hash(token);
        text.lines().find_map(|line| {
            let mut parts = line.split_whitespace();
            (parts.next() == Some(h.as_str())).then(|| parts.next().unwrap_or("").to_string())
        })
    }

    /// (name, created) of every token.
    pub fn list(&self) -> Vec<(String, u64)> {
        let text = std::fs::read_to_string(self.path()).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let mut p = l.split_whitespace();
                let _hash = p.next()?;
                Some((p.next()?.to_string(), p.next()?.parse().ok()?))
            })
            .collect()
    }

    /// Removes every token named `name`; returns how many.
    pub fn revoke(&self, name: &str) -> std::io::Result<usize> {
        let path = self.path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let (gone, kept): (Vec<&str>, Vec<&str>) = text
            .lines()
            .partition(|l| l.split_whitespace().nth(1) == Some(name));
        let tmp = path.with_extension("tmp");
        {
            let mut f = open_private(&tmp)?;
            f.set_len(0)?;
            for l in &kept {
                writeln!(f, "{l}")?;
            }
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        Ok(gone.len())
    }
}

/// Opens for appending, readable by the owner only.
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_by_hash_and_revoked_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let t = AdminTokens::new(dir.path().to_path_buf());
        let a = t.create("ops team").unwrap();
        let b = t.create("ci").unwrap();
        assert_eq!(t.check(&a).as_deref(), Some("ops-team"));
        assert_eq!(t.check(&b).as_deref(), Some("ci"));
        assert_eq!(t.check("casella_admin_nope"), None);
        assert_eq!(t.check(""), None);
        let stored = std::fs::read_to_string(dir.path().join(TOKENS_FILE)).unwrap();
        assert!(
            !stored.contains(&a[PREFIX.len()..]),
            "only hashes are stored"
        );
        assert_eq!(t.list().len(), 2);
        assert_eq!(t.revoke("ci").unwrap(), 1);
        assert_eq!(t.check(&b), None);
        assert!(t.check(&a).is_some());
    }
}
