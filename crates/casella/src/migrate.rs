//! `casella migrate --from DIR --to postgres://…` — moves an embedded store into
//! PostgreSQL, keeping what clients cache: UIDVALIDITY, UIDs, flags, MODSEQs and
//! the expunge history (so IMAP caches, CONDSTORE/QRESYNC state and POP3 UIDLs stay
//! valid). Accounts with their password hashes, switches, settings and aliases,
//! and the outbound queue come along.

use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, bail};
use casella_store::postgres::PgStore;
use casella_store::sqlite::SqliteStore;
use casella_store::{DirectoryStore, MailStore, NewAccount, NewQueued, QueueStore};
use casella_store::{ImportMailbox, ImportMessage, ImportStore};

/// Messages read and written per round trip.
const BATCH: usize = 200;

/// A progress bar on standard error: redrawn in place on a terminal, a line per
/// tenth of the work otherwise (logs).
struct Progress {
    total: u64,
    done: u64,
    tty: bool,
    last_tenth: u64,
}

impl Progress {
    fn new(total: u64) -> Progress {
        Progress {
            total,
            done: 0,
            tty: std::io::stderr().is_terminal(),
            last_tenth: 0,
        }
    }

    fn advance(&mut self, n: u64, what: &str) {
        self.done += n;
        let total = self.total.max(1);
        let width = 30u64;
        let filled = (self.done * width / total).min(width) as usize;
        let bar = format!(
            "[{}{}] {}/{} messages {what}",
            "#".repeat(filled),
            "-".repeat(width as usize - filled),
            self.done,
            self.total
        );
        if self.tty {
            eprint!("\r\x1b[2K{bar}");
            let _ = std::io::stderr().flush();
        } else {
            let tenth = self.done * 10 / total;
            if tenth > self.last_tenth || self.done == self.total {
                self.last_tenth = tenth;
                eprintln!("{bar}");
            }
        }
    }

    fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

pub async fn run(from: &Path, to: &str) -> anyhow::Result<()> {
    // DIR is a casella data directory (with store/) or the store directory itself.
    let store_dir = if from.join("store").join("store.db").exists() {
        from.join("store")
    } else if from.join("store.db").exists() {
        from.to_path_buf()
    } else {
        bail!(
            "{} holds no casella store (no store/store.db)",
            from.display()
        );
    };
    let source = SqliteStore::open(&store_dir).context("opening the embedded store")?;
    let target = PgStore::connect(to)
        .await
        .context("connecting to PostgreSQL")?;

    let accounts = source.list_accounts().await?;
    for a in &accounts {
        if target.account_by_address(&a.address).await?.is_some() {
            bail!(
                "{} exists in the target already; migrate into an empty database",
                a.address
            );
        }
    }
    let mut total = 0u64;
    for a in &accounts {
        for mb in source.list_mailboxes(a.id).await? {
            total += source.list_messages(mb.id).await?.len() as u64;
        }
    }
    eprintln!(
        "migrating {} accounts and {total} messages to {}",
        accounts.len(),
        redact(to)
    );
    let mut progress = Progress::new(total);

    for a in &accounts {
        let mut created = target
            .create_account(NewAccount {
                address: a.address.clone(),
                password_hash: a.password_hash.clone(),
                is_admin: a.is_admin,
            })
            .await
            .with_context(|| format!("creating {}", a.address))?;
        created.pop_enabled = a.pop_enabled;
        created.imap_enabled = a.imap_enabled;
        created.submission_enabled = a.submission_enabled;
        // The target's own revision (see `AccountSettings::revision`).
        let revision = created.settings.revision;
        created.settings = a.settings.clone();
        created.settings.revision = revision;
        target.update_account(&created).await?;
        for alias in source.aliases(a.id).await? {
            target.add_alias(created.id, &alias).await?;
        }
        // The subscription list as the source has it (the new account
        // started with its default folders subscribed).
        let subscribed = source.subscriptions(a.id).await?;
        for name in target.subscriptions(created.id).await? {
            if !subscribed.contains(&name) {
                target.set_subscribed(created.id, &name, false).await?;
            }
        }
        for name in &subscribed {
            target.set_subscribed(created.id, name, true).await?;
        }
        for mb in source.list_mailboxes(a.id).await? {
            let imported = target
                .import_mailbox(
                    created.id,
                    ImportMailbox {
                        name: mb.name.clone(),
                        special_use: mb.special_use,
                        uid_validity: mb.uid_validity,
                        uid_next: mb.uid_next,
                        highest_modseq: mb.highest_modseq,
                    },
                )
                .await
                .with_context(|| format!("{} {}", a.address, mb.name))?;
            let messages = source.list_messages(mb.id).await?;
            for chunk in messages.chunks(BATCH) {
                let mut batch = Vec::with_capacity(chunk.len());
                for m in chunk {
                    batch.push(ImportMessage {
                        uid: m.uid,
                        modseq: m.modseq,
                        internal_date: m.internal_date,
                        flags: m.flags.clone(),
                        raw: source.read_blob(&m.blob).await?,
                    });
                }
                target.import_messages(imported.id, batch).await?;
                progress.advance(chunk.len() as u64, &a.address);
            }
            target
                .import_expunged(imported.id, &source.expunged_log(mb.id).await?)
                .await?;
        }
    }
    progress.finish();

    // The outbound queue, with its attempts and schedule.
    let queued = source.queue_list().await?;
    for q in &queued {
        let account = match q.account {
            Some(id) => {
                let address = source.account(id).await?.address;
                target.account_by_address(&address).await?.map(|a| a.id)
            }
            None => None,
        };
        let id = target
            .enqueue(NewQueued {
                sender: q.sender.clone(),
                account,
                recipients: q.recipients.clone(),
                message: source.queue_message(q.id).await?,
                envid: q.envid.clone(),
                ret: q.ret.clone(),
                expires: q.expires,
            })
            .await?;
        let mut entry = q.clone();
        entry.id = id;
        entry.account = account;
        target.queue_update(&entry).await?;
    }
    println!(
        "migrated {} accounts, {total} messages and {} queued messages; set store = \"{}\" in casella.toml",
        accounts.len(),
        queued.len(),
        redact(to)
    );
    Ok(())
}

/// The URL without a password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:****{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_not_printed() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:****@h/db"
        );
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
