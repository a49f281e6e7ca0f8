//! `casella localserve`: every service on 127.0.0.1 high ports, with an
//! account ready to use and its password printed — a mail server to try
//! casella or to test a mail program against, reachable from this machine
//! only. `serve` stays the production command on the standard ports.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};
use casella_directory::{Secret, hash_password};
use casella_store::{NewAccount, StoreError};

use crate::{config, serve};

/// The ready account.
pub const ADDRESS: &str = "me@localhost";
/// Where its password is kept between runs (mode 0600).
const PASSWORD_FILE: &str = "localserve-password";

/// The services and their offsets from the base port (the standard port
/// plus the base: 1143 for IMAP with the default base of 1000).
const SERVICES: &[(&str, u16)] = &[
    ("imap", 143),
    ("imaps", 993),
    ("pop3", 110),
    ("pop3s", 995),
    ("submission", 587),
    ("submissions", 465),
    ("smtp", 25),
    ("lmtp", 24),
    ("http", 80),
    ("https", 443),
];

/// The `--listen` arguments for `base`; an error when a port would be
/// privileged (below 1024) or past 65535.
pub fn listen_args(base: u16) -> anyhow::Result<Vec<String>> {
    SERVICES
        .iter()
        .map(|(proto, offset)| {
            let port = u32::from(base) + u32::from(*offset);
            if !(1024..=65535).contains(&port) {
                let highest = SERVICES.iter().map(|(_, o)| *o).max().unwrap_or(0);
                bail!(
                    "--base-port {base}: {proto} would be on port {port}; choose a base from \
                     1000 to {}",
                    65535 - highest
                );
            }
            Ok(format!("{proto}=127.0.0.1:{port}"))
        })
        .collect()
}

/// Sixteen random lower-case letters.
fn new_password() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for a password")?;
    Ok(bytes.iter().map(|b| (b'a' + b % 26) as char).collect())
}

/// The ready account's password: the one kept from an earlier run, or a new
/// one (the account is made, or its password set, to match).
async fn ready_account(data: &Path) -> anyhow::Result<String> {
    let file = data.join(PASSWORD_FILE);
    let kept = std::fs::read_to_string(&file)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let store = config::open_store(data).await?;
    let account = store.account_by_address(ADDRESS).await?;
    if let (Some(password), Some(_)) = (&kept, &account) {
        return Ok(password.clone());
    }
    let password = new_password()?;
    let secret = Secret::new(password.clone());
    let mut account = match account {
        Some(a) => a,
        None => {
            let hash = hash_password(&secret).map_err(anyhow::Error::msg)?;
            match store
                .create_account(NewAccount {
                    address: ADDRESS.to_string(),
                    password_hash: hash,
                    is_admin: false,
                })
                .await
            {
                Ok(a) => a,
                Err(StoreError::Exists(_)) => store
                    .account_by_address(ADDRESS)
                    .await?
                    .context("the ready account vanished")?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    casella_directory::password_rules::set_password(&mut account, &secret)?;
    store.update_account(&account).await?;
    casella_net::write_owner_only(&file, format!("{password}\n").as_bytes())
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(password)
}

pub async fn run(data: &Path, base: u16) -> anyhow::Result<()> {
    let listen = listen_args(base)?;
    let password = ready_account(data).await?;
    let port = |proto: &str| {
        SERVICES
            .iter()
            .find(|(p, _)| *p == proto)
            .map_or(0, |(_, offset)| base + offset)
    };
    println!(
        "casella localserve: a mail server for this machine only (127.0.0.1), data in {}\n\
         \n\
         account   {ADDRESS}\n\
         password  {password}   (kept in {})\n\
         \n\
         In your mail program (the certificate is self-signed: accept it once):\n\
         IMAP        127.0.0.1 port {} with SSL/TLS, or {} with STARTTLS\n\
         POP3        127.0.0.1 port {} with SSL/TLS, or {} with STARTTLS\n\
         SMTP        127.0.0.1 port {} with SSL/TLS, or {} with STARTTLS (sending)\n\
         user name   {ADDRESS}, password as above\n\
         \n\
         Incoming mail: SMTP on 127.0.0.1:{}, LMTP on 127.0.0.1:{}.\n\
         Your settings page: https://127.0.0.1:{}/  (http on {})\n",
        data.display(),
        data.join(PASSWORD_FILE).display(),
        port("imaps"),
        port("imap"),
        port("pop3s"),
        port("pop3"),
        port("submissions"),
        port("submission"),
        port("smtp"),
        port("lmtp"),
        port("https"),
        port("http"),
    );
    serve::run(data, &listen).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_the_standard_ones_plus_the_base_and_never_privileged() {
        let args = listen_args(1000).unwrap();
        assert!(args.contains(&"imap=127.0.0.1:1143".to_string()));
        assert!(args.contains(&"lmtp=127.0.0.1:1024".to_string()));
        assert!(args.contains(&"https=127.0.0.1:1443".to_string()));
        assert!(listen_args(999).is_err());
        assert!(listen_args(65535 - 995).is_ok());
        assert!(listen_args(65535 - 994).is_err());
    }

    #[test]
    fn passwords_are_sixteen_letters() {
        let p = new_password().unwrap();
        assert_eq!(p.len(), 16);
        assert!(p.bytes().all(|b| b.is_ascii_lowercase()));
        assert_ne!(p, new_password().unwrap());
    }
}
