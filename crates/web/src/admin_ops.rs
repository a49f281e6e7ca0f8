//! What an administrator can do to accounts, shared by the admin API and the
//! admin pages.

use casella_directory::password_rules::{self, SetPasswordError};
use casella_directory::{Directory, Secret, hash_password, options, scram};
use casella_store::{NewAccount, StoreError};
use serde_json::{Value, json};

use crate::Web;

#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "admin operation failed in the store");
        OpError::Internal("the store failed; try again".into())
    }
}

fn account_json(a: &casella_store::Account, aliases: Vec<String>) -> Value {
    let mut o = serde_json::Map::new();
    o.insert("address".into(), json!(a.address));
    o.insert("admin".into(), json!(a.is_admin));
    for (k, v) in options::values(a) {
        o.insert(k.into(), json!(v));
    }
    o.insert("aliases".into(), json!(aliases));
    Value::Object(o)
}

pub async fn list_accounts(web: &Web) -> Result<Vec<Value>, OpError> {
    let store = web.directory.store();
    let mut out = Vec::new();
    for a in store.list_accounts().await? {
        let aliases = store.aliases(a.id).await?;
        out.push(account_json(&a, aliases));
    }
    Ok(out)
}

async fn find(web: &Web, address: &str) -> Result<casella_store::Account, OpError> {
    web.directory
        .store()
        .account_by_address(&Directory::normalize(address))
        .await?
        .ok_or_else(|| OpError::NotFound(format!("no account {address}")))
}

pub async fn show_account(web: &Web, address: &str) -> Result<Value, OpError> {
    let a = find(web, address).await?;
    let aliases = web.directory.store().aliases(a.id).await?;
    let usage = web.directory.store().usage(a.id).await?;
    let mut json = account_json(&a, aliases);
    json["usage"] = json!({"bytes": usage.bytes, "messages": usage.messages});
    Ok(json)
}

/// The argon2id hash and the SCRAM keys of the new password of `address`,
/// once it meets the password rules.
async fn hash(
    address: &str,
    password: String,
) -> Result<(String, casella_store::ScramSecret), OpError> {
    password_rules::check(address, &password).map_err(|e| OpError::Invalid(e.to_string()))?;
    let secret = Secret::new(password);
    tokio::task::spawn_blocking(move || {
        hash_password(&secret).map(|h| (h, scram::derive(secret.expose())))
    })
    .await
    .map_err(|e| OpError::Internal(e.to_string()))?
    .map_err(OpError::Internal)
}

/// Gives `account` a new password (the rules apply; its web sessions end).
/// Not saved.
pub async fn set_password(
    mut account: casella_store::Account,
    password: String,
) -> Result<casella_store::Account, OpError> {
    let secret = Secret::new(password);
    tokio::task::spawn_blocking(move || {
        password_rules::set_password(&mut account, &secret).map(|()| account)
    })
    .await
    .map_err(|e| OpError::Internal(e.to_string()))?
    .map_err(|e| match e {
        SetPasswordError::Rule(r) => OpError::Invalid(r.to_string()),
        SetPasswordError::Hash(h) => OpError::Internal(h),
    })
}

pub async fn create_account(
    web: &Web,
    address: &str,
    password: String,
    admin: bool,
) -> Result<Value, OpError> {
    let address = options::new_address(address).map_err(|e| OpError::Invalid(e.0))?;
    let (password_hash, scram_secret) = hash(&address, password).await?;
    match web
        .directory
        .store()
        .create_account(NewAccount {
            address: address.clone(),
            password_hash,
            is_admin: admin,
        })
        .await
    {
        Ok(mut a) => {
            a.settings.scram = Some(scram_secret);
            web.directory.store().update_account(&a).await?;
            Ok(account_json(&a, Vec::new()))
        }
        Err(StoreError::Exists(_)) => Err(OpError::Conflict(format!("{address} exists already"))),
        Err(e) => Err(e.into()),
    }
}

/// Applies `options::set` pairs (and `password`) all or nothing.
pub async fn update_account(
    web: &Web,
    address: &str,
    pairs: &[(String, String)],
) -> Result<(), OpError> {
    let mut a = find(web, address).await?;
    let was_disabled = a.settings.disabled;
    let mut password = None;
    for (k, v) in pairs {
        if k.eq_ignore_ascii_case("password") {
            password = Some(v.clone());
            continue;
        }
        options::set(&mut a, k, v).map_err(|e| OpError::Invalid(e.0))?;
    }
    let reset = password.is_some();
    if let Some(p) = password {
        a = set_password(a, p).await?;
        web.directory.forget_remembered_passwords(a.id);
        tracing::info!(user = %a.address, "password reset by an administrator");
    }
    web.directory.store().update_account(&a).await?;
    // Switched off, or its password reset (it may have been stolen): its open
    // mail sessions end too, here and on every node.
    if reset || (a.settings.disabled && !was_disabled) {
        end_mail_sessions(web, &a.address).await;
    }
    Ok(())
}

/// Records a sign-out for every node and ends the account's mail sessions
/// here at once.
async fn end_mail_sessions(web: &Web, address: &str) {
    match web.directory.store().record_signout(address, now()).await {
        Ok(seq) => web.signouts.mark_seen(seq, now()),
        Err(e) => tracing::warn!(error = %e, "recording a sign-out failed"),
    }
    casella_net::LiveSessions::global().end_user(address);
}

/// Removes the account and its mail, and ends its open sessions.
pub async fn delete_account(web: &Web, address: &str) -> Result<(), OpError> {
    let a = find(web, address).await?;
    web.directory.store().delete_account(a.id).await?;
    // Its web sessions end at their next request (the account is gone); its
    // mail sessions here and on the other nodes end now.
    end_mail_sessions(web, &a.address).await;
    tracing::info!(user = %a.address, "account removed");
    Ok(())
}

/// "Sign out of all devices" for the account; returns how many mail sessions
/// on this node ended.
pub async fn sign_out(web: &Web, address: &str) -> Result<usize, OpError> {
    crate::signout::sign_out_everywhere(web, address)
        .await?
        .ok_or_else(|| OpError::NotFound(format!("no account {address}")))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The account's recoverable items as JSON (subject and sender from what was
/// parsed at delivery).
pub async fn recoverable(
    web: &Web,
    address: &str,
    filter: &casella_store::RecoverFilter,
) -> Result<Vec<Value>, OpError> {
    let a = find(web, address).await?;
    let store = web.directory.store();
    let items = store.recoverable(a.id, filter).await?;
    let blobs: Vec<_> = items.iter().map(|i| i.blob.clone()).collect();
    let fields = store.search_fields(&blobs, false).await?;
    Ok(items
        .iter()
        .zip(fields)
        .map(|(i, f)| {
            let flags: Vec<&str> = i.flags.iter().map(|f| f.as_str()).collect();
            json!({
                "id": i.id,
                "folder": i.folder,
                "size": i.size,
                "deleted_at": i.deleted_at,
                "internal_date": i.internal_date,
                "flags": flags,
                "subject": f.as_deref().map(|f| f.subject.clone()),
                "from": f.as_deref().map(|f| f.from.clone()),
            })
        })
        .collect())
}

/// Restores the account's recoverable items `ids`.
pub async fn restore(web: &Web, address: &str, ids: &[i64]) -> Result<Vec<Value>, OpError> {
    let a = find(web, address).await?;
    let done = web.directory.store().restore_recoverable(a.id, ids).await?;
    Ok(done
        .iter()
        .map(|r| json!({"id": r.id, "folder": r.folder, "uid": r.uid.0}))
        .collect())
}
