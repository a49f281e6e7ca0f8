//! Password hashes: argon2id in PHC string form. Hashing and verifying run on the
//! blocking pool (tens of milliseconds each by design).
//!
//! Each verification needs argon2's working memory (19 MiB with the default
//! parameters), so only as many run at once as there are cores: memory stays
//! bounded however many clients log in together, and a flood of logins queues
//! instead of exhausting the machine.

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::Secret;

/// Hashes a password with argon2id and a random salt (default parameters:
/// m=19 MiB, t=2, p=1, as OWASP recommends).
pub fn hash_password(password: &Secret<String>) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing failed: {e}"))
}

/// Verifications allowed to run at once.
fn verify_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(cores.max(1))
    })
}

/// True when `password` matches the PHC string `hash`. A malformed hash never matches.
pub async fn verify_password(hash: String, password: Secret<String>) -> bool {
    let Ok(_slot) = verify_slots().acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        let Ok(parsed) = PasswordHash::new(&hash) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.expose().as_bytes(), &parsed)
            .is_ok()
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_then_verify() {
        let pw = Secret::new("correct horse".to_string());
        let h = hash_password(&pw).unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(!h.contains("correct horse"));
        assert!(verify_password(h.clone(), pw).await);
        assert!(!verify_password(h, Secret::new("wrong".into())).await);
        assert!(!verify_password("garbage".into(), Secret::new("x".into())).await);
    }

    #[tokio::test]
    async fn dummy_hash_is_well_formed() {
        // The dummy must be a real argon2id hash, or unknown users answer faster.
        assert!(PasswordHash::new(crate::DUMMY_HASH).is_ok());
        assert!(!verify_password(crate::DUMMY_HASH.into(), Secret::new("x".into())).await);
    }
}
