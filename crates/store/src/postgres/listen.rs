//! Change notification across nodes: every committing transaction sends
//! `NOTIFY casella_changes` (delivered by PostgreSQL on commit, in commit order),
//! and each node keeps one connection LISTENing that turns the other nodes'
//! notifications into [`Change::MailboxChanged`] (or [`Change::MailboxList`]) on
//! its own feed.
//!
//! Payload: `<instance>:<account>:<mailbox>:<kind>:<uid>:<modseq>`, one per
//! (mailbox, kind) of a transaction, with the highest UID and MODSEQ; kind is `a`
//! (appended), `f` (flags), `x` (expunged), `c` (changed otherwise) or `l` (the
//! mailbox list; mailbox, uid and modseq are 0). `instance` is random per
//! `PgStore`: a node skips its own notifications, which it published locally
//! right after commit.
//!
//! Why `MailboxChanged` and not the exact change: a node's local changes and other
//! nodes' notifications interleave in no particular order, so sessions resync from
//! the store instead of trusting an event stream. [`ChangeFeed::observe`] drops a
//! notification whose MODSEQ is not above what the feed announced: per mailbox,
//! MODSEQ order is commit order (the mailbox row lock serialises both), so a resync
//! triggered by a higher MODSEQ saw the lower one already.
//!
//! When the listening connection drops, the task reconnects with backoff and then
//! reads the MODSEQ of every mailbox of the subscribed accounts: anything missed
//! meanwhile is above what was announced and becomes a `MailboxChanged`.

use std::collections::BTreeMap;
use std::sync::Weak;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{AsyncMessage, Config, NoTls, Notification};

use super::Inner;
use crate::changes::Change;
use crate::error::{StoreError, StoreResult};
use crate::types::{AccountId, MailboxId, ModSeq, Uid};

pub const CHANNEL: &str = "casella_changes";

/// How often the listener checks that its connection is alive.
const PING_INTERVAL: Duration = Duration::from_secs(15);
const PING_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The notification payloads for a transaction's changes.
pub fn payloads(instance: &str, account: AccountId, changes: &[Change]) -> Vec<String> {
    // (mailbox, kind) -> (uid, modseq), the highest of each.
    let mut by: BTreeMap<(i64, char), (u32, u64)> = BTreeMap::new();
    for c in changes {
        let (mailbox, kind, uid, modseq) = match c {
            Change::Appended {
                mailbox,
                uid,
                modseq,
            } => (mailbox.0, 'a', uid.0, modseq.0),
            Change::Flags {
                mailbox,
                uid,
                modseq,
                ..
            } => (mailbox.0, 'f', uid.0, modseq.0),
            Change::Expunged {
                mailbox,
                uids,
                modseq,
            } => (
                mailbox.0,
                'x',
                uids.iter().map(|u| u.0).max().unwrap_or(0),
                modseq.0,
            ),
            Change::MailboxChanged { mailbox } => (mailbox.0, 'c', 0, 0),
            Change::MailboxList => (0, 'l', 0, 0),
        };
        let e = by.entry((mailbox, kind)).or_insert((0, 0));
        e.0 = e.0.max(uid);
        e.1 = e.1.max(modseq);
    }
    by.into_iter()
        .map(|((mailbox, kind), (uid, modseq))| {
            format!("{instance}:{}:{mailbox}:{kind}:{uid}:{modseq}", account.0)
        })
        .collect()
}

/// A decoded notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub instance: String,
    pub account: AccountId,
    pub mailbox: MailboxId,
    pub kind: char,
    pub uid: Uid,
    pub modseq: ModSeq,
}

pub fn parse_payload(s: &str) -> Option<Note> {
    let mut it = s.split(':');
    let instance = it.next()?.to_string();
    let account = AccountId(it.next()?.parse().ok()?);
    let mailbox = MailboxId(it.next()?.parse().ok()?);
    let mut kind = it.next()?.chars();
    let k = kind.next()?;
    if kind.next().is_some() {
        return None;
    }
    let uid = Uid(it.next()?.parse().ok()?);
    let modseq = ModSeq(it.next()?.parse().ok()?);
    if it.next().is_some() {
        return None;
    }
    Some(Note {
        instance,
        account,
        mailbox,
        kind: k,
        uid,
        modseq,
    })
}

/// Applies another node's notification to the local feed.
fn apply(inner: &Inner, note: Note) {
    if note.instance == inner.instance || !inner.feed.is_subscribed(note.account) {
        return;
    }
    match note.kind {
        'l' => inner.feed.publish(note.account, [Change::MailboxList]),
        'c' => inner.feed.publish(
            note.account,
            [Change::MailboxChanged {
                mailbox: note.mailbox,
            }],
        ),
        _ => inner.feed.observe(note.account, note.mailbox, note.modseq),
    }
}

/// After a reconnect: whatever changed while nobody listened has a MODSEQ above
/// what this node announced.
async fn resync_hint(inner: &Inner) -> StoreResult<()> {
    let accounts: Vec<i64> = inner
        .feed
        .subscribed_accounts()
        .into_iter()
        .map(|a| a.0)
        .collect();
    if accounts.is_empty() {
        return Ok(());
    }
    let mut conn = inner.pool.get().await?;
    let rows = conn
        .query(
            "SELECT id, account_id, highest_modseq FROM mailboxes WHERE account_id = ANY($1)",
            &[&accounts],
        )
        .await?;
    drop(conn);
    for r in rows {
        let (id, account, modseq): (i64, i64, i64) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        inner
            .feed
            .observe(AccountId(account), MailboxId(id), ModSeq(modseq as u64));
    }
    for a in accounts {
        inner.feed.publish(AccountId(a), [Change::MailboxList]);
    }
    Ok(())
}

/// Connects and LISTENs; notifications arrive on the returned channel, which
/// closes when the connection ends.
async fn listen(
    config: &Config,
) -> StoreResult<(
    tokio_postgres::Client,
    mpsc::UnboundedReceiver<Notification>,
)> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if tx.send(n).is_err() {
                        return;
                    }
                }
                Some(Ok(_notice)) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "store change listener lost its connection");
                    return;
                }
                None => return,
            }
        }
    });
    tokio::time::timeout(
        PING_TIMEOUT,
        client.batch_execute(&format!("LISTEN {CHANNEL}")),
    )
    .await
    .map_err(|_| StoreError::Temporary("LISTEN timed out".into()))??;
    Ok((client, rx))
}

/// The listener task. `ready` is answered once the first LISTEN is in place (or
/// failed); the task ends when `stop` fires or its sender is dropped (the store
/// went away).
pub async fn run(
    inner: Weak<Inner>,
    config: Config,
    ready: oneshot::Sender<StoreResult<()>>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(50);
    loop {
        let connected = tokio::select! {
            _ = &mut stop => return,
            r = listen(&config) => r,
        };
        let (client, mut notes) = match connected {
            Ok(c) => c,
            Err(e) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(Err(e));
                    return;
                }
                tracing::warn!(error = %e, "store change listener cannot reconnect");
                tokio::select! {
                    _ = &mut stop => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        match ready.take() {
            Some(r) => {
                let _ = r.send(Ok(()));
            }
            None => {
                tracing::info!("store change listener reconnected");
                let Some(inner) = inner.upgrade() else { return };
                if let Err(e) = resync_hint(&inner).await {
                    tracing::warn!(error = %e, "store change listener cannot resync");
                }
            }
        }
        let mut ping = tokio::time::interval(PING_INTERVAL);
        ping.tick().await;
        loop {
            tokio::select! {
                _ = &mut stop => return,
                n = notes.recv() => {
                    let Some(n) = n else { break };
                    let Some(inner) = inner.upgrade() else { return };
                    match parse_payload(n.payload()) {
                        Some(note) => apply(&inner, note),
                        None => tracing::debug!(payload = n.payload(), "unknown store notification"),
                    }
                }
                _ = ping.tick() => {
                    let alive = tokio::time::timeout(PING_TIMEOUT, client.check_connection()).await;
                    if !matches!(alive, Ok(Ok(()))) {
                        tracing::warn!("store change listener connection is not answering");
                        break;
                    }
                }
            }
        }
        drop(client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::FlagSet;

    #[test]
    fn payloads_round_trip_and_collapse_per_mailbox() {
        let changes = vec![
            Change::Appended {
                mailbox: MailboxId(7),
                uid: Uid(3),
                modseq: ModSeq(10),
            },
            Change::Appended {
                mailbox: MailboxId(7),
                uid: Uid(4),
                modseq: ModSeq(10),
            },
            Change::Flags {
                mailbox: MailboxId(7),
                uid: Uid(1),
                flags: FlagSet::new(),
                modseq: ModSeq(11),
            },
            Change::MailboxList,
        ];
        let p = payloads("n1", AccountId(5), &changes);
        assert_eq!(p, vec!["n1:5:0:l:0:0", "n1:5:7:a:4:10", "n1:5:7:f:1:11"]);
        assert_eq!(
            parse_payload(&p[1]),
            Some(Note {
                instance: "n1".into(),
                account: AccountId(5),
                mailbox: MailboxId(7),
                kind: 'a',
                uid: Uid(4),
                modseq: ModSeq(10),
            })
        );
        assert_eq!(parse_payload("n1:5:7:a:4"), None);
        assert_eq!(parse_payload("n1:5:7:ab:4:1"), None);
        assert_eq!(parse_payload("n1:x:7:a:4:1"), None);
        assert_eq!(parse_payload("n1:5:7:a:4:1:9"), None);
    }
}
