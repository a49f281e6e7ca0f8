//! [`DirectoryStore`] written once for every backend: accounts, aliases, login
//! history, login blocks and sign-outs as SQL over [`SqlTx`], in the
//! backend's transactions ([`MailBackend::transact`], the same that carry the
//! mail model, so an account and its default mailboxes commit together) and
//! its reads ([`MailBackend::read_records`]).
//!
//! Addresses, aliases and domains are stored in lower case and compared as
//! stored (the embedded schema also compares them without case; the shared
//! one indexes them as they are since its migration 9).

use async_trait::async_trait;

use super::sql::{ReadCost, SqlRow, SqlTx, SqlValue};
use super::{read_row, read_rows};
use crate::directory_store::DirectoryStore;
use crate::error::{StoreError, StoreResult};
use crate::model::{
    MailBackend, create_default_mailboxes_in_tx, forget_recoverable_in_tx, job,
    remove_mailboxes_in_tx,
};
use crate::now_unix;
use crate::types::*;

/// `SELECT` of an account's columns (in [`account_from_row`]'s order) and `$rest`.
macro_rules! select_account {
    ($rest:literal) => {
        concat!(
            "SELECT id, address, password_hash, is_admin, pop_enabled, imap_enabled, \
             submission_enabled, settings FROM accounts ",
            $rest
        )
    };
}

fn account_from_row(r: &SqlRow) -> StoreResult<Account> {
    Ok(Account {
        id: AccountId(r.int(0)?),
        address: r.text(1)?,
        password_hash: r.text(2)?,
        is_admin: r.bool(3)?,
        pop_enabled: r.bool(4)?,
        imap_enabled: r.bool(5)?,
        submission_enabled: r.bool(6)?,
        // A settings document this version cannot read falls back to defaults
        // rather than locking the user out.
        settings: serde_json::from_str(&r.text(7)?).unwrap_or_default(),
    })
}

/// `address` trimmed and in lower case, with its domain; `Invalid` when it is
/// not `local@domain`.
fn address_parts(address: &str) -> StoreResult<(String, String)> {
    let address = address.trim().to_ascii_lowercase();
    match address.rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
            let domain = domain.to_string();
            Ok((address, domain))
        }
        _ => Err(StoreError::Invalid(format!("{address} is not an address"))),
    }
}

/// Whether an account or an alias has `address`. Called with the address's
/// key held ([`SqlTx::lock_key`]): accounts and aliases share one name space
/// across two tables, which no unique index covers.
async fn address_taken(tx: &mut dyn SqlTx, address: &str) -> StoreResult<bool> {
    tx.query_one(
        "SELECT EXISTS(SELECT 1 FROM accounts WHERE address = $1)
             OR EXISTS(SELECT 1 FROM aliases WHERE alias = $1)",
        &[SqlValue::text(address)],
    )
    .await?
    .bool(0)
}

/// The revision stored in an account's settings document (0 when it has none).
fn stored_revision(settings: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(settings)
        .ok()
        .and_then(|v| v.get("revision").and_then(serde_json::Value::as_u64))
        .unwrap_or(0)
}

#[async_trait]
impl<B: MailBackend> DirectoryStore for B {
    async fn create_account(&self, new: NewAccount) -> StoreResult<Account> {
        let address = new.address.to_ascii_lowercase();
        let Some((_, domain)) = address.rsplit_once('@') else {
            return Err(StoreError::Invalid(format!("{address} is not an address")));
        };
        let domain = domain.to_string();
        let settings =
            serde_json::to_string(&AccountSettings::default()).map_err(StoreError::internal)?;
        self.transact(job(move |tx| {
            Box::pin(async move {
                tx.lock_key(&address).await?;
                if address_taken(tx, &address).await? {
                    return Err(StoreError::Exists(format!("account {address}")));
                }
                let id = tx
                    .query_one(
                        "INSERT INTO accounts(address, domain, password_hash, is_admin,
                             settings, created)
                         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                        &[
                            SqlValue::text(&address),
                            SqlValue::text(&domain),
                            SqlValue::text(&new.password_hash),
                            SqlValue::Bool(new.is_admin),
                            SqlValue::text(&settings),
                            SqlValue::Int(now_unix()),
                        ],
                    )
                    .await?
                    .int(0)?;
                create_default_mailboxes_in_tx(tx, AccountId(id)).await?;
                let row = tx
                    .query_one(select_account!("WHERE id = $1"), &[SqlValue::Int(id)])
                    .await?;
                account_from_row(&row)
            })
        }))
        .await
    }

    async fn delete_account(&self, id: AccountId) -> StoreResult<()> {
        self.transact(job(move |tx| {
            Box::pin(async move {
                let account = id;
                let id = SqlValue::Int(account.0);
                // The account row first: no mailbox or alias can be added
                // meanwhile (they refer to it).
                if tx
                    .query_opt(
                        "SELECT id FROM accounts WHERE id = $1 FOR UPDATE",
                        std::slice::from_ref(&id),
                    )
                    .await?
                    .is_none()
                {
                    return Err(StoreError::NotFound(format!("account {}", account.0)));
                }
                let boxes = tx
                    .query(
                        "SELECT id FROM mailboxes WHERE account_id = $1 ORDER BY id",
                        std::slice::from_ref(&id),
                    )
                    .await?
                    .iter()
                    .map(|r| Ok(MailboxId(r.int(0)?)))
                    .collect::<StoreResult<Vec<_>>>()?;
                remove_mailboxes_in_tx(tx, &boxes).await?;
                forget_recoverable_in_tx(tx, account).await?;
                for sql in [
                    "DELETE FROM logins WHERE account_id = $1",
                    "DELETE FROM aliases WHERE account_id = $1",
                    "DELETE FROM subscriptions WHERE account_id = $1",
                    "DELETE FROM accounts WHERE id = $1",
                ] {
                    tx.execute(sql, std::slice::from_ref(&id)).await?;
                }
                Ok(())
            })
        }))
        .await?;
        self.collect_garbage().await
    }

    async fn account(&self, id: AccountId) -> StoreResult<Account> {
        read_row(
            self,
            select_account!("WHERE id = $1"),
            vec![SqlValue::Int(id.0)],
            account_from_row,
        )
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("account {}", id.0)))
    }

    async fn account_by_address(&self, address: &str) -> StoreResult<Option<Account>> {
        read_row(
            self,
            select_account!("WHERE address = $1"),
            vec![SqlValue::owned(address.to_ascii_lowercase())],
            account_from_row,
        )
        .await
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        read_rows(
            self,
            ReadCost::Large,
            select_account!("ORDER BY address"),
            Vec::new(),
            account_from_row,
        )
        .await
    }

    async fn update_account(&self, account: &Account) -> StoreResult<()> {
        let a = account.clone();
        let settings = a
            .settings
            .next_revision_json()
            .map_err(StoreError::internal)?;
        self.transact(job(move |tx| {
            Box::pin(async move {
                // Only over the revision this copy was read with (see
                // `AccountSettings::revision`): the row held while it is
                // compared and written.
                let Some(row) = tx
                    .query_opt(
                        "SELECT settings FROM accounts WHERE id = $1 FOR UPDATE",
                        &[SqlValue::Int(a.id.0)],
                    )
                    .await?
                else {
                    return Err(StoreError::NotFound(format!("account {}", a.address)));
                };
                if stored_revision(&row.text(0)?) != a.settings.revision {
                    return Err(StoreError::account_changed(&a.address));
                }
                tx.execute(
                    "UPDATE accounts SET password_hash = $2, is_admin = $3, pop_enabled = $4,
                         imap_enabled = $5, submission_enabled = $6, settings = $7
                     WHERE id = $1",
                    &[
                        SqlValue::Int(a.id.0),
                        SqlValue::text(&a.password_hash),
                        SqlValue::Bool(a.is_admin),
                        SqlValue::Bool(a.pop_enabled),
                        SqlValue::Bool(a.imap_enabled),
                        SqlValue::Bool(a.submission_enabled),
                        SqlValue::text(&settings),
                    ],
                )
                .await?;
                Ok(())
            })
        }))
        .await
    }

    async fn is_local_domain(&self, domain: &str) -> StoreResult<bool> {
        let found = read_row(
            self,
            "SELECT EXISTS(SELECT 1 FROM accounts WHERE domain = $1)
                 OR EXISTS(SELECT 1 FROM aliases WHERE domain = $1)",
            vec![SqlValue::owned(domain.to_ascii_lowercase())],
            |r| r.bool(0),
        )
        .await?;
        Ok(found == Some(true))
    }

    async fn add_alias(&self, account: AccountId, alias: &str) -> StoreResult<()> {
        let (alias, domain) = address_parts(alias)?;
        self.transact(job(move |tx| {
            Box::pin(async move {
                tx.lock_key(&alias).await?;
                if address_taken(tx, &alias).await? {
                    return Err(StoreError::Exists(format!("address {alias}")));
                }
                if tx
                    .query_opt(
                        "SELECT id FROM accounts WHERE id = $1",
                        &[SqlValue::Int(account.0)],
                    )
                    .await?
                    .is_none()
                {
                    return Err(StoreError::NotFound(format!("account {}", account.0)));
                }
                tx.execute(
                    "INSERT INTO aliases(alias, domain, account_id) VALUES ($1, $2, $3)",
                    &[
                        SqlValue::text(&alias),
                        SqlValue::text(&domain),
                        SqlValue::Int(account.0),
                    ],
                )
                .await?;
                Ok(())
            })
        }))
        .await
    }

    async fn remove_alias(&self, alias: &str) -> StoreResult<()> {
        let alias = alias.trim().to_ascii_lowercase();
        self.transact(job(move |tx| {
            Box::pin(async move {
                let n = tx
                    .execute(
                        "DELETE FROM aliases WHERE alias = $1",
                        &[SqlValue::text(&alias)],
                    )
                    .await?;
                if n == 0 {
                    return Err(StoreError::NotFound(format!("alias {alias}")));
                }
                Ok(())
            })
        }))
        .await
    }

    async fn aliases(&self, account: AccountId) -> StoreResult<Vec<String>> {
        read_rows(
            self,
            ReadCost::Small,
            "SELECT alias FROM aliases WHERE account_id = $1 ORDER BY alias",
            vec![SqlValue::Int(account.0)],
            |r| r.text(0),
        )
        .await
    }

    async fn account_for_address(&self, address: &str) -> StoreResult<Option<Account>> {
        let address = address.trim().to_ascii_lowercase();
        let direct = read_row(
            self,
            select_account!("WHERE address = $1"),
            vec![SqlValue::owned(address.clone())],
            account_from_row,
        )
        .await?;
        if direct.is_some() {
            return Ok(direct);
        }
        read_row(
            self,
            select_account!("WHERE id = (SELECT account_id FROM aliases WHERE alias = $1)"),
            vec![SqlValue::owned(address)],
            account_from_row,
        )
        .await
    }

    async fn record_logins(&self, logins: Vec<(AccountId, LoginRecord)>) -> StoreResult<()> {
        self.transact(job(move |tx| {
            Box::pin(async move {
                let mut accounts = std::collections::BTreeSet::new();
                for (account, login) in &logins {
                    tx.execute(
                        "INSERT INTO logins(account_id, at, protocol, remote, success, client)
                         VALUES ($1, $2, $3, $4, $5, $6)",
                        &[
                            SqlValue::Int(account.0),
                            SqlValue::Int(login.at),
                            SqlValue::text(&login.protocol),
                            SqlValue::text(&login.remote),
                            SqlValue::Bool(login.success),
                            SqlValue::opt_text(login.client.as_deref()),
                        ],
                    )
                    .await?;
                    accounts.insert(account.0);
                }
                // Keep the newest LOGIN_HISTORY of each account.
                for account in accounts {
                    tx.execute(
                        "DELETE FROM logins WHERE account_id = $1 AND id <= (
                             SELECT id FROM logins WHERE account_id = $1
                             ORDER BY id DESC LIMIT 1 OFFSET $2)",
                        &[SqlValue::Int(account), SqlValue::Int(LOGIN_HISTORY as i64)],
                    )
                    .await?;
                }
                Ok(())
            })
        }))
        .await
    }

    async fn recent_logins(&self, account: AccountId) -> StoreResult<Vec<LoginRecord>> {
        read_rows(
            self,
            ReadCost::Small,
            "SELECT at, protocol, remote, success, client FROM logins
             WHERE account_id = $1 ORDER BY id DESC LIMIT $2",
            vec![
                SqlValue::Int(account.0),
                SqlValue::Int(LOGIN_HISTORY as i64),
            ],
            |r| {
                Ok(LoginRecord {
                    at: r.int(0)?,
                    protocol: r.text(1)?,
                    remote: r.text(2)?,
                    success: r.bool(3)?,
                    client: r.opt_text(4)?,
                })
            },
        )
        .await
    }

    async fn save_block(&self, block: StoredBlock) -> StoreResult<()> {
        self.transact(job(move |tx| {
            Box::pin(async move {
                // A block already in force is extended, never shortened.
                tx.execute(
                    "INSERT INTO login_blocks(key, until, reason) VALUES ($1, $2, $3)
                     ON CONFLICT (key) DO UPDATE SET
                         until = CASE WHEN excluded.until > login_blocks.until
                                      THEN excluded.until ELSE login_blocks.until END,
                         reason = excluded.reason",
                    &[
                        SqlValue::text(&block.key),
                        SqlValue::Int(block.until),
                        SqlValue::text(&block.reason),
                    ],
                )
                .await?;
                Ok(())
            })
        }))
        .await
    }

    async fn blocks(&self, now: i64) -> StoreResult<Vec<StoredBlock>> {
        read_rows(
            self,
            ReadCost::Large,
            "SELECT key, until, reason FROM login_blocks WHERE until > $1 ORDER BY until",
            vec![SqlValue::Int(now)],
            |r| {
                Ok(StoredBlock {
                    key: r.text(0)?,
                    until: r.int(1)?,
                    reason: r.text(2)?,
                })
            },
        )
        .await
    }

    async fn delete_block(&self, key: &str) -> StoreResult<bool> {
        let key = key.to_string();
        self.transact(job(move |tx| {
            Box::pin(async move {
                let n = tx
                    .execute(
                        "DELETE FROM login_blocks WHERE key = $1",
                        &[SqlValue::text(&key)],
                    )
                    .await?;
                Ok(n > 0)
            })
        }))
        .await
    }

    async fn record_signout(&self, address: &str, at: i64) -> StoreResult<u64> {
        let address = address.to_ascii_lowercase();
        self.transact(job(move |tx| {
            Box::pin(async move {
                tx.execute(
                    "DELETE FROM signouts WHERE at < $1",
                    &[SqlValue::Int(at - crate::SIGNOUT_KEPT_SECS)],
                )
                .await?;
                let seq = tx
                    .query_one(
                        "INSERT INTO signouts(address, at) VALUES ($1, $2) RETURNING seq",
                        &[SqlValue::text(&address), SqlValue::Int(at)],
                    )
                    .await?
                    .int(0)?;
                Ok(seq as u64)
            })
        }))
        .await
    }

    async fn signouts_since(&self, since: i64) -> StoreResult<Vec<Signout>> {
        read_rows(
            self,
            ReadCost::Small,
            "SELECT seq, address, at FROM signouts WHERE at >= $1 ORDER BY seq",
            vec![SqlValue::Int(since)],
            |r| {
                Ok(Signout {
                    seq: r.int(0)? as u64,
                    address: r.text(1)?,
                    at: r.int(2)?,
                })
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_and_lower_cased() {
        assert_eq!(
            address_parts(" Bob@Example.ORG ").unwrap(),
            ("bob@example.org".to_string(), "example.org".to_string())
        );
        for bad in ["bob", "@example.org", "bob@", ""] {
            assert!(address_parts(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_stored_revision_is_read_from_the_settings_document() {
        assert_eq!(stored_revision(r#"{"revision":7,"x":1}"#), 7);
        assert_eq!(stored_revision("{}"), 0);
        assert_eq!(stored_revision("not json"), 0);
    }
}
