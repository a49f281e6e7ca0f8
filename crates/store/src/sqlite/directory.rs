//! The embedded store's directory data: accounts, aliases, login history,
//! login blocks and sign-outs.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::mail_tx::{SqliteTx, run_ready};
use super::{ACCOUNT_COLUMNS, ReadSize, SqliteStore, account_from_row};
use crate::directory_store::DirectoryStore;
use crate::error::{StoreError, StoreResult};
use crate::model::{create_default_mailboxes_in_tx, remove_mailboxes_in_tx};
use crate::now_unix;
use crate::types::*;

#[async_trait]
impl DirectoryStore for SqliteStore {
    async fn create_account(&self, new: NewAccount) -> StoreResult<Account> {
        let address = new.address.to_ascii_lowercase();
        let Some((_, domain)) = address.rsplit_once('@') else {
            return Err(StoreError::Invalid(format!("{address} is not an address")));
        };
        let domain = domain.to_string();
        let account = self
            .write(move |tx, inner| {
                let exists: Option<i64> = tx
                    .prepare_cached("SELECT id FROM accounts WHERE address = ?1")?
                    .query_row([&address], |r| r.get(0))
                    .optional()?;
                let alias: Option<String> = tx
                    .prepare_cached("SELECT alias FROM aliases WHERE alias = ?1")?
                    .query_row([&address], |r| r.get(0))
                    .optional()?;
                if exists.is_some() || alias.is_some() {
                    return Err(StoreError::Exists(format!("account {address}")));
                }
                let settings = serde_json::to_string(&AccountSettings::default())
                    .map_err(StoreError::internal)?;
                tx.prepare_cached(
                    "INSERT INTO accounts(address, domain, password_hash, is_admin, settings,
                     created)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    address,
                    domain,
                    new.password_hash,
                    new.is_admin,
                    settings,
                    now_unix()
                ])?;
                let id = AccountId(tx.last_insert_rowid());
                let mut mail = SqliteTx::new(tx, inner);
                run_ready(create_default_mailboxes_in_tx(&mut mail, id))?;
                tx.query_row(
                    &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?1"),
                    [id.0],
                    account_from_row,
                )
                .map_err(Into::into)
            })
            .await?;
        Ok(account)
    }

    async fn delete_account(&self, id: AccountId) -> StoreResult<()> {
        self.write(move |tx, inner| {
            let mut stmt = tx.prepare("SELECT id FROM mailboxes WHERE account_id = ?1")?;
            let boxes: Vec<MailboxId> = stmt
                .query_map([id.0], |r| Ok(MailboxId(r.get(0)?)))?
                .collect::<Result<_, _>>()?;
            let mut mail = SqliteTx::new(tx, inner);
            run_ready(remove_mailboxes_in_tx(&mut mail, &boxes))?;
            tx.prepare_cached("DELETE FROM aliases WHERE account_id = ?1")?
                .execute([id.0])?;
            tx.prepare_cached("DELETE FROM subscriptions WHERE account_id = ?1")?
                .execute([id.0])?;
            tx.prepare_cached("DELETE FROM logins WHERE account_id = ?1")?
                .execute([id.0])?;
            let n = tx
                .prepare_cached("DELETE FROM accounts WHERE id = ?1")?
                .execute([id.0])?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("account {}", id.0)));
            }
            Ok(())
        })
        .await?;
        self.collect_blobs().await
    }

    async fn account(&self, id: AccountId) -> StoreResult<Account> {
        self.read(ReadSize::Small, move |c| {
            c.query_row(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?1"),
                [id.0],
                account_from_row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("account {}", id.0)))
        })
        .await
    }

    async fn account_by_address(&self, address: &str) -> StoreResult<Option<Account>> {
        let address = address.to_string();
        self.read(ReadSize::Small, move |c| {
            Ok(c.query_row(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE address = ?1"),
                [address],
                account_from_row,
            )
            .optional()?)
        })
        .await
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        self.read(ReadSize::Large, |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY address"
            ))?;
            Ok(stmt
                .query_map([], account_from_row)?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn update_account(&self, account: &Account) -> StoreResult<()> {
        let a = account.clone();
        self.write(move |tx, _| {
            let settings = a
                .settings
                .next_revision_json()
                .map_err(StoreError::internal)?;
            let expected = a.settings.revision as i64;
            // Only over the revision this copy was read with (see
            // `AccountSettings::revision`).
            let n = tx
                .prepare_cached(
                    "UPDATE accounts SET password_hash = ?2, is_admin = ?3, pop_enabled = ?4,
                 imap_enabled = ?5, submission_enabled = ?6, settings = ?7
                 WHERE id = ?1 AND coalesce(json_extract(settings, '$.revision'), 0) = ?8",
                )?
                .execute(params![
                    a.id.0,
                    a.password_hash,
                    a.is_admin,
                    a.pop_enabled,
                    a.imap_enabled,
                    a.submission_enabled,
                    settings,
                    expected
                ])?;
            if n == 0 {
                let exists = tx
                    .prepare_cached("SELECT 1 FROM accounts WHERE id = ?1")?
                    .exists([a.id.0])?;
                return Err(if exists {
                    StoreError::account_changed(&a.address)
                } else {
                    StoreError::NotFound(format!("account {}", a.address))
                });
            }
            Ok(())
        })
        .await
    }

    async fn is_local_domain(&self, domain: &str) -> StoreResult<bool> {
        let domain = domain.to_string();
        self.read(ReadSize::Small, move |c| {
            Ok(c.prepare_cached(
                "SELECT EXISTS(SELECT 1 FROM accounts WHERE domain = ?1)
                     OR EXISTS(SELECT 1 FROM aliases WHERE domain = ?1)",
            )?
            .query_row([domain], |r| r.get(0))?)
        })
        .await
    }

    async fn add_alias(&self, account: AccountId, alias: &str) -> StoreResult<()> {
        let alias = alias.trim().to_ascii_lowercase();
        let Some((local, domain)) = alias.rsplit_once('@') else {
            return Err(StoreError::Invalid(format!("{alias} is not an address")));
        };
        if local.is_empty() || domain.is_empty() {
            return Err(StoreError::Invalid(format!("{alias} is not an address")));
        }
        let domain = domain.to_string();
        self.write(move |tx, _| {
            let taken: bool = tx
                .prepare_cached(
                    "SELECT EXISTS(SELECT 1 FROM accounts WHERE address = ?1)
                     OR EXISTS(SELECT 1 FROM aliases WHERE alias = ?1)",
                )?
                .query_row([&alias], |r| r.get(0))?;
            if taken {
                return Err(StoreError::Exists(format!("address {alias}")));
            }
            let found: Option<i64> = tx
                .prepare_cached("SELECT id FROM accounts WHERE id = ?1")?
                .query_row([account.0], |r| r.get(0))
                .optional()?;
            if found.is_none() {
                return Err(StoreError::NotFound(format!("account {}", account.0)));
            }
            tx.prepare_cached(
                "INSERT INTO aliases(alias, domain, account_id) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![alias, domain, account.0])?;
            Ok(())
        })
        .await
    }

    async fn remove_alias(&self, alias: &str) -> StoreResult<()> {
        let alias = alias.trim().to_ascii_lowercase();
        self.write(move |tx, _| {
            if tx
                .prepare_cached("DELETE FROM aliases WHERE alias = ?1")?
                .execute([&alias])?
                == 0
            {
                return Err(StoreError::NotFound(format!("alias {alias}")));
            }
            Ok(())
        })
        .await
    }

    async fn record_logins(&self, logins: Vec<(AccountId, LoginRecord)>) -> StoreResult<()> {
        self.write(move |tx, _| {
            let mut accounts = std::collections::BTreeSet::new();
            for (account, login) in &logins {
                tx.prepare_cached(
                    "INSERT INTO logins(account_id, at, protocol, remote, success, client)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(rusqlite::params![
                    account.0,
                    login.at,
                    login.protocol,
                    login.remote,
                    login.success,
                    login.client
                ])?;
                accounts.insert(account.0);
            }
            for account in accounts {
                tx.prepare_cached(
                    "DELETE FROM logins WHERE account_id = ?1 AND id <= (
                         SELECT id FROM logins WHERE account_id = ?1
                         ORDER BY id DESC LIMIT 1 OFFSET ?2)",
                )?
                .execute(rusqlite::params![account, LOGIN_HISTORY as i64])?;
            }
            Ok(())
        })
        .await
    }

    async fn recent_logins(&self, account: AccountId) -> StoreResult<Vec<LoginRecord>> {
        self.read(ReadSize::Small, move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT at, protocol, remote, success, client FROM logins
                 WHERE account_id = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            Ok(stmt
                .query_map(rusqlite::params![account.0, LOGIN_HISTORY as i64], |r| {
                    Ok(LoginRecord {
                        at: r.get(0)?,
                        protocol: r.get(1)?,
                        remote: r.get(2)?,
                        success: r.get(3)?,
                        client: r.get(4)?,
                    })
                })?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn save_block(&self, block: StoredBlock) -> StoreResult<()> {
        self.write(move |tx, _| {
            tx.prepare_cached(
                "INSERT INTO login_blocks(key, until, reason) VALUES (?1, ?2, ?3)
                 ON CONFLICT(key) DO UPDATE SET until = max(until, excluded.until),
                                                reason = excluded.reason",
            )?
            .execute(rusqlite::params![block.key, block.until, block.reason])?;
            Ok(())
        })
        .await
    }

    async fn blocks(&self, now: i64) -> StoreResult<Vec<StoredBlock>> {
        self.read(ReadSize::Large, move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT key, until, reason FROM login_blocks WHERE until > ?1 ORDER BY until",
            )?;
            Ok(stmt
                .query_map([now], |r| {
                    Ok(StoredBlock {
                        key: r.get(0)?,
                        until: r.get(1)?,
                        reason: r.get(2)?,
                    })
                })?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn delete_block(&self, key: &str) -> StoreResult<bool> {
        let key = key.to_string();
        self.write(move |tx, _| {
            let n = tx
                .prepare_cached("DELETE FROM login_blocks WHERE key = ?1")?
                .execute([&key])?;
            Ok(n > 0)
        })
        .await
    }

    async fn record_signout(&self, address: &str, at: i64) -> StoreResult<u64> {
        let address = address.to_ascii_lowercase();
        self.write(move |tx, _| {
            tx.prepare_cached("DELETE FROM signouts WHERE at < ?1")?
                .execute([at - crate::SIGNOUT_KEPT_SECS])?;
            tx.prepare_cached("INSERT INTO signouts(address, at) VALUES (?1, ?2)")?
                .execute(rusqlite::params![address, at])?;
            Ok(tx.last_insert_rowid() as u64)
        })
        .await
    }

    async fn signouts_since(&self, since: i64) -> StoreResult<Vec<Signout>> {
        self.read(ReadSize::Small, move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, address, at FROM signouts WHERE at >= ?1 ORDER BY seq",
            )?;
            Ok(stmt
                .query_map([since], |r| {
                    Ok(Signout {
                        seq: r.get::<_, i64>(0)? as u64,
                        address: r.get(1)?,
                        at: r.get(2)?,
                    })
                })?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn aliases(&self, account: AccountId) -> StoreResult<Vec<String>> {
        self.read(ReadSize::Small, move |c| {
            let mut stmt =
                c.prepare_cached("SELECT alias FROM aliases WHERE account_id = ?1 ORDER BY alias")?;
            Ok(stmt
                .query_map([account.0], |r| r.get(0))?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn account_for_address(&self, address: &str) -> StoreResult<Option<Account>> {
        let address = address.trim().to_ascii_lowercase();
        self.read(ReadSize::Small, move |c| {
            let direct = c
                .query_row(
                    &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE address = ?1"),
                    [&address],
                    account_from_row,
                )
                .optional()?;
            if direct.is_some() {
                return Ok(direct);
            }
            Ok(c.query_row(
                &format!(
                    "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id =
                     (SELECT account_id FROM aliases WHERE alias = ?1)"
                ),
                [&address],
                account_from_row,
            )
            .optional()?)
        })
        .await
    }
}
