//! The shared store's directory data: accounts, aliases, login history,
//! login blocks and sign-outs.

use async_trait::async_trait;

use super::mail_tx::PgTx;
use super::{PgStore, account_from_row, address_parts, address_taken, lock_address, rows};
use crate::directory_store::DirectoryStore;
use crate::error::{StoreError, StoreResult};
use crate::model::{create_default_mailboxes_in_tx, remove_mailboxes_in_tx};
use crate::now_unix;
use crate::types::*;

#[async_trait]
impl DirectoryStore for PgStore {
    async fn create_account(&self, new: NewAccount) -> StoreResult<Account> {
        let address = new.address.to_ascii_lowercase();
        let Some((_, domain)) = address.rsplit_once('@') else {
            return Err(StoreError::Invalid(format!("{address} is not an address")));
        };
        let domain = domain.to_string();
        write_tx!(self, |tx| {
            lock_address(&mut tx, &address).await?;
            if address_taken(&mut tx, &address).await? {
                return Err(StoreError::Exists(format!("account {address}")));
            }
            let settings =
                serde_json::to_string(&AccountSettings::default()).map_err(StoreError::internal)?;
            let id: i64 = tx
                .query_one(
                    "INSERT INTO accounts(address, domain, password_hash, is_admin, settings, created)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                    &[
                        &address,
                        &domain,
                        &new.password_hash,
                        &new.is_admin,
                        &settings,
                        &now_unix(),
                    ],
                )
                .await?
                .try_get(0)?;
            let mut mail = PgTx {
                tx: &mut tx,
                instance: &self.inner.instance,
            };
            create_default_mailboxes_in_tx(&mut mail, AccountId(id)).await?;
            let row = tx
                .query_one(
                    concat!(
                        "SELECT ",
                        account_columns!(),
                        " FROM accounts WHERE id = $1"
                    ),
                    &[&id],
                )
                .await?;
            account_from_row(&row)
        })
    }

    async fn delete_account(&self, id: AccountId) -> StoreResult<()> {
        write_tx!(self, |tx| {
            // The account row first: no mailbox or alias can be added meanwhile.
            let found = tx
                .query_opt("SELECT id FROM accounts WHERE id = $1 FOR UPDATE", &[&id.0])
                .await?;
            if found.is_none() {
                return Err(StoreError::NotFound(format!("account {}", id.0)));
            }
            let boxes: Vec<MailboxId> = tx
                .query(
                    "SELECT id FROM mailboxes WHERE account_id = $1 ORDER BY id FOR UPDATE",
                    &[&id.0],
                )
                .await?
                .iter()
                .map(|r| Ok(MailboxId(r.try_get(0)?)))
                .collect::<StoreResult<_>>()?;
            let mut mail = PgTx {
                tx: &mut tx,
                instance: &self.inner.instance,
            };
            remove_mailboxes_in_tx(&mut mail, &boxes).await?;
            tx.execute("DELETE FROM logins WHERE account_id = $1", &[&id.0])
                .await?;
            tx.execute("DELETE FROM aliases WHERE account_id = $1", &[&id.0])
                .await?;
            tx.execute("DELETE FROM subscriptions WHERE account_id = $1", &[&id.0])
                .await?;
            tx.execute("DELETE FROM accounts WHERE id = $1", &[&id.0])
                .await?;
            Ok(())
        })
    }

    async fn account(&self, id: AccountId) -> StoreResult<Account> {
        let row = self
            .conn()
            .await?
            .query_opt(
                concat!(
                    "SELECT ",
                    account_columns!(),
                    " FROM accounts WHERE id = $1"
                ),
                &[&id.0],
            )
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("account {}", id.0)))?;
        account_from_row(&row)
    }

    async fn account_by_address(&self, address: &str) -> StoreResult<Option<Account>> {
        let address = address.to_ascii_lowercase();
        let row = self
            .conn()
            .await?
            .query_opt(
                concat!(
                    "SELECT ",
                    account_columns!(),
                    " FROM accounts WHERE lower(address) = $1"
                ),
                &[&address],
            )
            .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        let r = self
            .conn()
            .await?
            .query(
                concat!(
                    "SELECT ",
                    account_columns!(),
                    " FROM accounts ORDER BY address"
                ),
                &[],
            )
            .await?;
        rows(r, account_from_row)
    }

    async fn update_account(&self, account: &Account) -> StoreResult<()> {
        let a = account;
        let settings = a
            .settings
            .next_revision_json()
            .map_err(StoreError::internal)?;
        let expected = a.settings.revision as i64;
        let mut conn = self.conn().await?;
        // One statement: only over the revision this copy was read with (see
        // `AccountSettings::revision`).
        let n = conn
            .execute(
                "UPDATE accounts SET password_hash = $2, is_admin = $3, pop_enabled = $4,
                 imap_enabled = $5, submission_enabled = $6, settings = $7
                 WHERE id = $1 AND coalesce((settings::jsonb ->> 'revision')::bigint, 0) = $8",
                &[
                    &a.id.0,
                    &a.password_hash,
                    &a.is_admin,
                    &a.pop_enabled,
                    &a.imap_enabled,
                    &a.submission_enabled,
                    &settings,
                    &expected,
                ],
            )
            .await?;
        if n == 0 {
            let exists = conn
                .query_opt("SELECT 1 FROM accounts WHERE id = $1", &[&a.id.0])
                .await?
                .is_some();
            return Err(if exists {
                StoreError::account_changed(&a.address)
            } else {
                StoreError::NotFound(format!("account {}", a.address))
            });
        }
        Ok(())
    }

    async fn is_local_domain(&self, domain: &str) -> StoreResult<bool> {
        let domain = domain.to_ascii_lowercase();
        Ok(self
            .conn()
            .await?
            .query_one(
                "SELECT EXISTS(SELECT 1 FROM accounts WHERE lower(domain) = $1)
                     OR EXISTS(SELECT 1 FROM aliases WHERE lower(domain) = $1)",
                &[&domain],
            )
            .await?
            .try_get(0)?)
    }

    async fn add_alias(&self, account: AccountId, alias: &str) -> StoreResult<()> {
        let (alias, domain) = address_parts(alias)?;
        write_tx!(self, |tx| {
            lock_address(&mut tx, &alias).await?;
            if address_taken(&mut tx, &alias).await? {
                return Err(StoreError::Exists(format!("address {alias}")));
            }
            let found = tx
                .query_opt("SELECT id FROM accounts WHERE id = $1", &[&account.0])
                .await?;
            if found.is_none() {
                return Err(StoreError::NotFound(format!("account {}", account.0)));
            }
            tx.execute(
                "INSERT INTO aliases(alias, domain, account_id) VALUES ($1, $2, $3)",
                &[&alias, &domain, &account.0],
            )
            .await?;
            Ok(())
        })
    }

    async fn remove_alias(&self, alias: &str) -> StoreResult<()> {
        let alias = alias.trim().to_ascii_lowercase();
        let n = self
            .conn()
            .await?
            .execute("DELETE FROM aliases WHERE lower(alias) = $1", &[&alias])
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("alias {alias}")));
        }
        Ok(())
    }

    async fn record_logins(&self, logins: Vec<(AccountId, LoginRecord)>) -> StoreResult<()> {
        write_tx!(self, |tx| {
            let mut accounts = std::collections::BTreeSet::new();
            for (account, login) in &logins {
                tx.execute(
                    "INSERT INTO logins(account_id, at, protocol, remote, success, client)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[
                        &account.0,
                        &login.at,
                        &login.protocol,
                        &login.remote,
                        &login.success,
                        &login.client,
                    ],
                )
                .await?;
                accounts.insert(account.0);
            }
            for account in accounts {
                tx.execute(
                    "DELETE FROM logins WHERE account_id = $1 AND id <= (
                         SELECT id FROM logins WHERE account_id = $1
                         ORDER BY id DESC LIMIT 1 OFFSET $2)",
                    &[&account, &(LOGIN_HISTORY as i64)],
                )
                .await?;
            }
            Ok(())
        })
    }

    async fn recent_logins(&self, account: AccountId) -> StoreResult<Vec<LoginRecord>> {
        let rows = self
            .conn()
            .await?
            .query(
                "SELECT at, protocol, remote, success, client FROM logins
                 WHERE account_id = $1 ORDER BY id DESC LIMIT $2",
                &[&account.0, &(LOGIN_HISTORY as i64)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(LoginRecord {
                    at: r.try_get(0)?,
                    protocol: r.try_get(1)?,
                    remote: r.try_get(2)?,
                    success: r.try_get(3)?,
                    client: r.try_get(4)?,
                })
            })
            .collect()
    }

    async fn save_block(&self, block: StoredBlock) -> StoreResult<()> {
        self.conn()
            .await?
            .execute(
                "INSERT INTO login_blocks(key, until, reason) VALUES ($1, $2, $3)
                 ON CONFLICT (key) DO UPDATE SET until = greatest(login_blocks.until, excluded.until),
                                                 reason = excluded.reason",
                &[&block.key, &block.until, &block.reason],
            )
            .await?;
        Ok(())
    }

    async fn blocks(&self, now: i64) -> StoreResult<Vec<StoredBlock>> {
        let rows = self
            .conn()
            .await?
            .query(
                "SELECT key, until, reason FROM login_blocks WHERE until > $1 ORDER BY until",
                &[&now],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredBlock {
                    key: r.try_get(0)?,
                    until: r.try_get(1)?,
                    reason: r.try_get(2)?,
                })
            })
            .collect()
    }

    async fn delete_block(&self, key: &str) -> StoreResult<bool> {
        let n = self
            .conn()
            .await?
            .execute("DELETE FROM login_blocks WHERE key = $1", &[&key])
            .await?;
        Ok(n > 0)
    }

    async fn record_signout(&self, address: &str, at: i64) -> StoreResult<u64> {
        let address = address.to_ascii_lowercase();
        let mut conn = self.conn().await?;
        conn.execute(
            "DELETE FROM signouts WHERE at < $1",
            &[&(at - crate::SIGNOUT_KEPT_SECS)],
        )
        .await?;
        let row = conn
            .query_one(
                "INSERT INTO signouts(address, at) VALUES ($1, $2) RETURNING seq",
                &[&address, &at],
            )
            .await?;
        Ok(row.try_get::<_, i64>(0)? as u64)
    }

    async fn signouts_since(&self, since: i64) -> StoreResult<Vec<Signout>> {
        let rows = self
            .conn()
            .await?
            .query(
                "SELECT seq, address, at FROM signouts WHERE at >= $1 ORDER BY seq",
                &[&since],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Signout {
                    seq: r.try_get::<_, i64>(0)? as u64,
                    address: r.try_get(1)?,
                    at: r.try_get(2)?,
                })
            })
            .collect()
    }

    async fn aliases(&self, account: AccountId) -> StoreResult<Vec<String>> {
        let r = self
            .conn()
            .await?
            .query(
                "SELECT alias FROM aliases WHERE account_id = $1 ORDER BY alias",
                &[&account.0],
            )
            .await?;
        Ok(r.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?)
    }

    async fn account_for_address(&self, address: &str) -> StoreResult<Option<Account>> {
        let address = address.trim().to_ascii_lowercase();
        let row = self
            .conn()
            .await?
            .query_opt(
                concat!(
                    "SELECT ",
                    account_columns!(),
                    " FROM accounts WHERE lower(address) = $1
                     UNION ALL
                     SELECT ",
                    account_columns!(),
                    " FROM accounts WHERE id =
                         (SELECT account_id FROM aliases WHERE lower(alias) = $1)
                     LIMIT 1"
                ),
                &[&address],
            )
            .await?;
        row.as_ref().map(account_from_row).transpose()
    }
}
