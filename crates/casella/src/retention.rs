//! Retention by folder role and the end of recoverable items: messages saved
//! to Deleted Items more than 30 days ago and to Junk more than 10 days ago
//! (RFC 8514 SAVEDATE, so a message moved there yesterday has a day, however
//! old it is) are expunged, which keeps them recoverable; recoverable items
//! older than 14 days are removed for good and their bytes freed. The
//! durations are live settings (`casella settings retention get|set`, `0`
//! keeps), Deleted Items and Junk overridable per account (`casella account
//! set ADDRESS retention-junk=30`). The job runs in the server every
//! `interval`, in batches (one short transaction each, so deliveries and
//! sessions wait at most one batch), and records each pass (`casella
//! retention status`); `casella retention run` runs a pass now.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use casella_net::{Live, ShutdownSignal};
use casella_store::{Account, MessageRef, RetentionRun, SpecialUse, Store};

use crate::settings::{Overrides, format_duration, parse_duration};

pub const SECTION: &str = "retention";

/// The keys, in the order `get` lists them.
pub const KEYS: &[&str] = &["deleted-items", "junk", "recoverable", "interval", "batch"];

const DAY: Duration = Duration::from_secs(86_400);

/// The retention section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// How long Deleted Items keeps a message; `None` keeps it.
    pub deleted_items: Option<Duration>,
    /// How long Junk keeps a message; `None` keeps it.
    pub junk: Option<Duration>,
    /// How long an expunged message stays recoverable; zero removes it at the
    /// next pass.
    pub recoverable: Duration,
    /// How often the server runs a pass.
    pub interval: Duration,
    /// Messages per transaction.
    pub batch: usize,
}

impl Default for RetentionPolicy {
    /// Exchange's and the seeds': Deleted Items 30 days, Junk 10, recoverable
    /// items 14 (Exchange's RetainDeletedItemsFor).
    fn default() -> Self {
        RetentionPolicy {
            deleted_items: Some(30 * DAY),
            junk: Some(10 * DAY),
            recoverable: 14 * DAY,
            interval: Duration::from_secs(3600),
            batch: 500,
        }
    }
}

impl RetentionPolicy {
    /// How long `account`'s folder of `role` keeps messages (its own days
    /// first); `None` keeps them.
    pub fn keep_for(&self, account: &Account, role: SpecialUse) -> Option<Duration> {
        let (own, default) = match role {
            SpecialUse::Trash => (account.settings.retention.deleted_items, self.deleted_items),
            SpecialUse::Junk => (account.settings.retention.junk, self.junk),
            _ => return None,
        };
        match own {
            Some(0) => None,
            Some(days) => Some(days * DAY),
            None => default,
        }
    }
}

/// A duration in days by default (`30`, `30d`, `12h`); `0` keeps.
fn keep(v: &str) -> anyhow::Result<Option<Duration>> {
    let d = days_or_duration(v)?;
    Ok((!d.is_zero()).then_some(d))
}

fn days_or_duration(v: &str) -> anyhow::Result<Duration> {
    let v = v.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        let n: u64 = v.parse().context("a number of days")?;
        return Ok(Duration::from_secs(n.saturating_mul(86_400)));
    }
    parse_duration(v)
}

fn format_keep(d: Option<Duration>) -> String {
    d.map_or_else(|| "0 (kept)".to_string(), format_duration)
}

/// The effective retention settings.
pub fn config(o: &Overrides) -> RetentionPolicy {
    let mut c = RetentionPolicy::default();
    if let Some(map) = o.0.get(SECTION) {
        for (k, v) in map {
            let _ = apply(&mut c, k, v);
        }
    }
    c
}

fn apply(c: &mut RetentionPolicy, key: &str, value: &str) -> anyhow::Result<()> {
    match key {
        "deleted-items" => c.deleted_items = keep(value)?,
        "junk" => c.junk = keep(value)?,
        "recoverable" => c.recoverable = days_or_duration(value)?,
        "interval" => {
            let d = parse_duration(value)?;
            if d < Duration::from_secs(1) {
                bail!("at least 1s");
            }
            c.interval = d;
        }
        "batch" => {
            let n: usize = value.trim().parse().context("a number")?;
            if !(1..=10_000).contains(&n) {
                bail!("from 1 to 10000");
            }
            c.batch = n;
        }
        other => bail!(
            "retention has no setting {other:?}; known: {}",
            KEYS.join(", ")
        ),
    }
    Ok(())
}

/// Every key with its effective value.
pub fn values(o: &Overrides) -> Vec<(&'static str, String)> {
    let c = config(o);
    vec![
        ("deleted-items", format_keep(c.deleted_items)),
        ("junk", format_keep(c.junk)),
        ("recoverable", format_duration(c.recoverable)),
        ("interval", format_duration(c.interval)),
        ("batch", c.batch.to_string()),
    ]
}

/// Validates and records `key=value`.
pub fn set(o: &mut Overrides, key: &str, value: &str) -> anyhow::Result<()> {
    let key = key.trim().to_ascii_lowercase();
    apply(&mut RetentionPolicy::default(), &key, value)
        .with_context(|| format!("{key}={value}"))?;
    o.0.entry(SECTION.to_string())
        .or_default()
        .insert(key, value.trim().to_string());
    Ok(())
}

/// One pass: Deleted Items and Junk of every account, then the recoverable
/// items past their window. An error stops the pass and is recorded with it.
pub async fn pass(store: &dyn Store, policy: &RetentionPolicy, node: &str) -> RetentionRun {
    let started = store.time_source().now();
    let mut run = RetentionRun {
        node: node.to_string(),
        started,
        finished: started,
        expired: 0,
        purged: 0,
        error: None,
    };
    if let Err(e) = expire_and_purge(store, policy, &mut run).await {
        tracing::warn!(error = %e, "retention pass stopped");
        run.error = Some(e.to_string());
    }
    run.finished = store.time_source().now();
    if let Err(e) = store.record_retention_run(&run).await {
        tracing::warn!(error = %e, "recording the retention pass");
    }
    run
}

async fn expire_and_purge(
    store: &dyn Store,
    policy: &RetentionPolicy,
    run: &mut RetentionRun,
) -> anyhow::Result<()> {
    let now = run.started;
    let batch = policy.batch.max(1);
    for account in store.list_accounts().await? {
        let mailboxes = store.list_mailboxes(account.id).await?;
        for role in [SpecialUse::Trash, SpecialUse::Junk] {
            let Some(keep) = policy.keep_for(&account, role) else {
                continue;
            };
            let cutoff = now.saturating_sub(keep.as_secs() as i64);
            for mailbox in mailboxes.iter().filter(|m| m.special_use == Some(role)) {
                loop {
                    // Found with a reader; each batch expunged in its own
                    // transaction (and kept recoverable).
                    let due = store.saved_before(mailbox.id, cutoff, batch).await?;
                    if due.is_empty() {
                        break;
                    }
                    let refs: Vec<MessageRef> = due
                        .iter()
                        .map(|&uid| MessageRef {
                            mailbox: mailbox.id,
                            uid,
                        })
                        .collect();
                    run.expired += store.expunge(account.id, &refs).await?.len() as u64;
                    if due.len() < batch {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
            }
        }
    }
    let cutoff = now.saturating_sub(policy.recoverable.as_secs() as i64);
    loop {
        let n = store.purge_recoverable(cutoff, batch).await?;
        run.purged += n;
        if (n as usize) < batch {
            break;
        }
        tokio::task::yield_now().await;
    }
    Ok(())
}

/// The server's job: a pass a minute after start, then every `interval`.
/// Every node of a shared store runs it; their passes may overlap safely
/// (an expunge of what another took finds nothing, a purge removes each
/// item once).
pub async fn run_job(
    store: Arc<dyn Store>,
    policy: Live<RetentionPolicy>,
    node: String,
    mut signal: ShutdownSignal,
) {
    let mut wait = Duration::from_secs(60);
    loop {
        tokio::select! {
            _ = signal.wait() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let p = policy.get();
        let run = pass(&*store, &p, &node).await;
        if run.expired > 0 || run.purged > 0 {
            tracing::info!(expired = run.expired, purged = run.purged, "retention pass");
        }
        wait = p.interval;
    }
}

/// `casella retention status` / `casella retention run`.
pub async fn command(data: &Path, command: crate::cli::RetentionCommand) -> anyhow::Result<()> {
    let store = crate::config::open_store(data).await?;
    let policy = config(&Overrides::load(data)?);
    match command {
        crate::cli::RetentionCommand::Status => {
            for (k, v) in values(&Overrides::load(data)?) {
                println!("{k} = {v}");
            }
            let runs = store.retention_runs(5).await?;
            if runs.is_empty() {
                println!("last run: never");
            }
            for (i, r) in runs.iter().enumerate() {
                let label = if i == 0 { "last run" } else { "earlier" };
                println!(
                    "{label}: {} on {}, {}s, expired {}, purged {}{}",
                    crate::dates::format_utc(r.started),
                    r.node,
                    (r.finished - r.started).max(0),
                    r.expired,
                    r.purged,
                    r.error
                        .as_deref()
                        .map(|e| format!(", error: {e}"))
                        .unwrap_or_default()
                );
            }
        }
        crate::cli::RetentionCommand::Run => {
            let config = crate::config::load_or_create(data)?;
            let run = pass(&*store, &policy, &config.hostname).await;
            println!("expired {}, purged {}", run.expired, run.purged);
            if let Some(e) = run.error {
                bail!("the pass stopped: {e}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use casella_store::sqlite::SqliteStore;
    use casella_store::{AccountId, NewAccount, NewMessage, RecoverFilter};

    fn message(subject: &str) -> NewMessage {
        NewMessage {
            raw: format!("From: a@example.org\r\nSubject: {subject}\r\n\r\n{subject}\r\n")
                .into_bytes(),
            internal_date: Some(1_600_000_000),
            flags: Default::default(),
            binary: false,
        }
    }

    async fn folder(store: &dyn Store, a: AccountId, name: &str) -> casella_store::Mailbox {
        store.mailbox_by_name(a, name).await.unwrap().unwrap()
    }

    const D: i64 = 86_400;

    /// The clock is the store's, moved by the test: a message deleted 31
    /// days ago leaves Deleted Items and is recoverable; one 9 days in Junk
    /// stays; an account's own days win; after the recovery window the bytes
    /// are gone.
    #[tokio::test]
    async fn a_pass_follows_the_folders_days_by_savedate() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let t0 = 2_000_000_000;
        store.time_source().set(t0);
        let new = |address: &str| NewAccount {
            address: address.into(),
            password_hash: "x".into(),
            is_admin: false,
        };
        let a = store.create_account(new("a@example.org")).await.unwrap();
        let mut b = store.create_account(new("b@example.org")).await.unwrap();
        b.settings.retention.deleted_items = Some(60);
        store.update_account(&b).await.unwrap();
        for acc in [a.id, b.id] {
            let inbox = folder(&*store, acc, "INBOX").await;
            let trash = folder(&*store, acc, "Deleted Items").await;
            // Bytes of its own (equal messages share theirs).
            let subject = format!("deleted by {}", acc.0);
            let m = store.append(inbox.id, message(&subject)).await.unwrap();
            store
                .move_messages(inbox.id, &[m.uid], trash.id)
                .await
                .unwrap();
        }
        store.time_source().advance(22 * D);
        let junk = folder(&*store, a.id, "Junk Email").await;
        store.append(junk.id, message("spam")).await.unwrap();
        store.time_source().advance(9 * D);
        // Now: 31 days after the delete, 9 after the spam.
        let policy = RetentionPolicy::default();
        let run = pass(&*store, &policy, "test").await;
        assert_eq!(run.error, None);
        assert_eq!(run.expired, 1, "a's Deleted Items only");
        assert_eq!(run.purged, 0);
        let a_trash = folder(&*store, a.id, "Deleted Items").await;
        assert!(store.list_messages(a_trash.id).await.unwrap().is_empty());
        assert_eq!(store.list_messages(junk.id).await.unwrap().len(), 1);
        let b_trash = folder(&*store, b.id, "Deleted Items").await;
        assert_eq!(store.list_messages(b_trash.id).await.unwrap().len(), 1);
        let items = store
            .recoverable(a.id, &RecoverFilter::default())
            .await
            .unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].folder, "Deleted Items");
        let blob = items[0].blob.clone();
        // Junk's tenth day passes; the recovery window (14 days) not yet.
        store.time_source().advance(2 * D);
        let run = pass(&*store, &policy, "test").await;
        assert_eq!((run.expired, run.purged), (1, 0));
        assert!(store.list_messages(junk.id).await.unwrap().is_empty());
        store.time_source().advance(13 * D);
        let run = pass(&*store, &policy, "test").await;
        assert_eq!(run.purged, 1, "the first, 15 days recoverable");
        assert!(store.read_blob(&blob).await.is_err(), "its bytes are freed");
        let runs = store.retention_runs(10).await.unwrap();
        assert_eq!(runs.len(), 3);
        assert_eq!(runs[0].purged, 1);
    }

    #[test]
    fn settings_take_days_and_durations() {
        let mut o = Overrides::default();
        set(&mut o, "deleted-items", "45").unwrap();
        set(&mut o, "junk", "0").unwrap();
        set(&mut o, "recoverable", "7d").unwrap();
        assert!(set(&mut o, "junk", "soon").is_err());
        assert!(set(&mut o, "batch", "0").is_err());
        assert!(set(&mut o, "colour", "1").is_err());
        let c = config(&o);
        assert_eq!(c.deleted_items, Some(45 * DAY));
        assert_eq!(c.junk, None);
        assert_eq!(c.recoverable, 7 * DAY);
        let v = values(&o);
        assert!(v.contains(&("junk", "0 (kept)".to_string())));
        assert!(v.contains(&("deleted-items", "45d".to_string())));
    }
}
