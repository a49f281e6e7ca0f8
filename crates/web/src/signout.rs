//! "Sign out of all devices" for one account (the user's security page, the
//! admin pages and API, `casella account signout`):
//! 1. the account's session generation goes up, so every web session of it ends
//!    at its next request (`pages::SignedIn` compares it);
//! 2. the sign-out is recorded in the store, so every node — and the running
//!    server when the CLI, a separate process, recorded it — ends the account's
//!    open IMAP, POP3 and submission sessions and forgets its remembered
//!    passwords: each server polls the record every second ([`SignoutFeed`]);
//! 3. in the process that did it, that happens at once.
//!
//! Why a poll: it is how nodes already share login blocks (a small indexed read
//! per second); PostgreSQL's LISTEN/NOTIFY would not reach the embedded store,
//! and the CLI cannot reach a running server's memory.
//!
//! Mail programs that know the password sign in again at once: the pages say
//! so, and point to "change password" for a lost device.

use std::collections::HashMap;
use std::sync::Mutex;

use casella_directory::Directory;
use casella_net::LiveSessions;
use casella_store::{Account, Store, StoreError};

use crate::Web;

/// How far back a poll reads: far more than the one-second poll interval, so
/// a slow poll or a clock a few minutes off still sees every record.
const WINDOW_SECS: i64 = 600;
/// A recorded sign-out also ends sessions accepted up to this long after its
/// time: the nodes' clocks differ a little and times are whole seconds.
const SLACK_SECS: i64 = 2;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Steps 1 and 2 for `address` (the part the CLI does too): a new session
/// generation saved with the account, and the sign-out recorded for every
/// node. Returns the account as saved and the record's number; `None` when
/// there is no such account.
pub async fn record(
    store: &dyn Store,
    address: &str,
) -> Result<Option<(Account, u64)>, StoreError> {
    let address = Directory::normalize(address);
    let Some(mut account) = store.account_by_address(&address).await? else {
        return Ok(None);
    };
    account.settings.end_web_sessions();
    store.update_account(&account).await?;
    let seq = store.record_signout(&account.address, now()).await?;
    Ok(Some((account, seq)))
}

/// The whole sign-out, from this process: returns how many open mail
/// sessions on this node were told to end (other nodes end theirs within a
/// second); `None` when there is no such account.
pub async fn sign_out_everywhere(web: &Web, address: &str) -> Result<Option<usize>, StoreError> {
    let Some((account, seq)) = record(&**web.directory.store(), address).await? else {
        return Ok(None);
    };
    web.signouts.mark_seen(seq, now());
    let ended = LiveSessions::global().end_user(&account.address);
    web.directory.forget_remembered_passwords(account.id);
    tracing::info!(user = %account.address, sessions = ended, "signed out of all devices");
    Ok(Some(ended))
}

/// The sign-outs this process has acted on (or made), by number.
#[derive(Default)]
pub struct SignoutFeed {
    seen: Mutex<HashMap<u64, i64>>,
}

impl SignoutFeed {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, i64>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn mark_seen(&self, seq: u64, at: i64) {
        self.lock().insert(seq, at);
    }

    /// Acts on the sign-outs recorded since the last poll (by the CLI or
    /// another node): ends the account's sessions that were open then, and
    /// forgets its remembered passwords. Returns how many sessions it ended.
    pub async fn poll(&self, directory: &Directory) -> usize {
        let now = now();
        let records = match directory.store().signouts_since(now - WINDOW_SECS).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "reading the sign-outs failed");
                return 0;
            }
        };
        let fresh: Vec<_> = {
            let mut seen = self.lock();
            seen.retain(|_, at| *at >= now - 2 * WINDOW_SECS);
            records
                .into_iter()
                .filter(|r| seen.insert(r.seq, r.at).is_none())
                .collect()
        };
        let mut ended = 0;
        for r in fresh {
            let until = u64::try_from(r.at + SLACK_SECS).unwrap_or(0);
            let n = LiveSessions::global().end_user_started_by(&r.address, until);
            ended += n;
            match directory.store().account_by_address(&r.address).await {
                Ok(Some(a)) => directory.forget_remembered_passwords(a.id),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "account lookup failed"),
            }
            if n > 0 {
                tracing::info!(user = %r.address, sessions = n, "signed out of all devices (recorded elsewhere)");
            }
        }
        ended
    }
}
